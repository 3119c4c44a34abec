/**
 * The docs, followed word for word: every ```sh runnable block of README.md and
 * of each page under docs/ runs, in page order, with bash -euo pipefail, against
 * a local release this test makes into a scratch directory (the repository's
 * dist/ is never touched). Each page runs in a scratch checkout of its own:
 * symlinks to the repository's top-level entries, and `dist` pointing at that
 * release. See docs/README.md for the convention.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, blocks, fileArguments, logicalLines, pages, read, shellBlocks, type Block } from './pages.ts';
import { runForStatus, type Exit } from '../../ci/src/base/exec.ts';

const NODE = join(ROOT, 'node_modules', '.bin', 'node');
/** Enough of a release for every page (api and console); a full one takes minutes on two shared cores. */
const SERVICES = 'api,console';

let scratch: string;
let dist: string;
const env: NodeJS.ProcessEnv = {
  ...process.env,
  PATH: `/usr/local/bin:${process.env.PATH}`,
  STELLA_BASE_LOCK_POLICY: 'refresh-if-unavailable',
};

function run(cmd: string, args: string[], cwd: string, timeoutMs: number, extraEnv: NodeJS.ProcessEnv = {}): Promise<Exit> {
  return runForStatus(cmd, args, { cwd, env: { ...env, ...extraEnv }, timeoutMs });
}

/** A directory that looks like the checkout, with `dist` being the scratch release. */
function workdir(name: string): string {
  const dir = join(scratch, 'pages', name.replace(/[^\w.-]+/g, '_'));
  mkdirSync(dir, { recursive: true });
  for (const e of readdirSync(ROOT)) {
    if (e === 'dist' || existsSync(join(dir, e))) continue;
    symlinkSync(join(ROOT, e), join(dir, e));
  }
  if (!existsSync(join(dir, 'dist'))) symlinkSync(dist, join(dir, 'dist'));
  return dir;
}

function fingerprint(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of ['build.json', 'release.json', 'base-layout/index.json', 'keys/cosign.pub', 'docs/release/image-catalog.md']) {
    out[f] = createHash('sha256').update(readFileSync(join(dist, f))).digest('hex');
  }
  return out;
}

async function runBlock(b: Block, cwd: string, opts: { shell?: string[]; extraEnv?: NodeJS.ProcessEnv } = {}) {
  const file = join(scratch, `block-${b.page.replace(/\W+/g, '_')}-${b.line}.sh`);
  writeFileSync(file, b.code);
  return run('bash', [...(opts.shell ?? ['-euo', 'pipefail']), file], cwd, 240_000, opts.extraEnv);
}

let before: Record<string, string>;
const repoDistBefore = existsSync(join(ROOT, 'dist', 'build.json')) ? readFileSync(join(ROOT, 'dist', 'build.json'), 'utf8') : undefined;

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'stella-docs-'));
  dist = join(scratch, 'dist');
  const r = await run(NODE, ['ci/src/cli.ts', 'release', '--version', 'edge', '--services', SERVICES, '--out', dist], ROOT, 540_000);
  if (r.status !== 0) throw new Error(`the docs test's local release failed (exit ${r.status}):\n${r.stderr.slice(-4000)}`);
  before = fingerprint();
}, 600_000);

afterAll(() => {
  if (scratch) {
    // Containers started by blocks are removed by the blocks' own traps; the scratch files go here.
    spawnSync('chmod', ['-R', 'u+w', scratch]);
    rmSync(scratch, { recursive: true, force: true });
  }
});

describe('runnable blocks', () => {
  const all = pages();
  it('exist on the pages that have something to run here', () => {
    const withRunnable = new Set(shellBlocks().filter((b) => b.marker === 'runnable').map((b) => b.page));
    for (const p of ['README.md', 'docs/install/overview.md', 'docs/install/configuration-reference.md', 'docs/security/supply-chain.md', 'docs/release/image-catalog.md']) expect(withRunnable).toContain(p);
  });

  for (const page of all) {
    const runnable = blocks(page).filter((b) => b.marker === 'runnable');
    if (!runnable.length) continue;
    it(`${page}: every runnable block exits 0, in order`, async () => {
      const cwd = workdir(page);
      for (const b of runnable) {
        const r = await runBlock(b, cwd);
        if (r.status !== 0) {
          throw new Error(`${page}:${b.line}: the block exited ${r.status}\n--- block\n${b.code}--- stderr\n${r.stderr.slice(-3000)}\n--- stdout (tail)\n${r.stdout.slice(-1500)}`);
        }
      }
    }, 600_000);
  }

  it('left the release in dist/ as it was, and never touched the repository dist/', () => {
    expect(fingerprint()).toEqual(before);
    const now = existsSync(join(ROOT, 'dist', 'build.json')) ? readFileSync(join(ROOT, 'dist', 'build.json'), 'utf8') : undefined;
    expect(now).toBe(repoDistBefore);
  });
});

describe('against the release', () => {
  it('every dist/ path and every file argument a block names exists (or its not-here reason names it)', () => {
    const bad: string[] = [];
    for (const b of shellBlocks()) {
      for (const l of logicalLines(b.code)) {
        for (const m of l.matchAll(/(?<![\w./:@-])(?:\.\/)?dist\/([\w.\/-]*[\w-])/g)) {
          if (!existsSync(join(dist, m[1]!))) bad.push(`${b.page}:${b.line}: dist/${m[1]} is not in a local release`);
        }
        for (const f of fileArguments(l)) {
          const named = b.marker === 'not-here' && (b.reason ?? '').includes(f.value);
          const exists = f.value.startsWith('dist/') ? existsSync(join(dist, f.value.slice(5))) : existsSync(join(ROOT, f.value));
          if (!exists && !named) bad.push(`${b.page}:${b.line}: ${f.fn} --${f.flag} ${f.value}: no such file`);
        }
      }
    }
    expect(bad).toEqual([]);
  });

  it('README describes every top-level entry of dist/ a release writes', () => {
    const readme = read('README.md');
    const table = readme.slice(readme.indexOf('It writes to `dist/`'), readme.indexOf('## Prerequisites'));
    const described = [...table.matchAll(/^\| `([^`/]+)/gm)].map((m) => m[1]!);
    const entries = readdirSync(dist);
    const missing = entries.filter((e) => !described.includes(e));
    expect(missing).toEqual([]);
    expect(described).toEqual(expect.arrayContaining(['app', 'base-layout', 'build.json', 'release.json']));
  });

  it('the overview\'s catalog command prints JSON alone on stdout', async () => {
    const line = logicalLines(blocks('docs/install/overview.md').filter((b) => b.marker === 'runnable').map((b) => b.code).join('\n')).find((l) => /stella-release -- catalog/.test(l));
    expect(line).toBeDefined();
    const r = await run('bash', ['-c', line!], workdir('catalog-json'), 60_000);
    expect(r.status).toBe(0);
    const parsed = JSON.parse(r.stdout) as { services: unknown[] };
    expect(parsed.services.length).toBe(11);
  });

  it('the cosign verification block fails, even without set -e, when one check fails', async () => {
    const b = blocks('docs/security/supply-chain.md').find((x) => /verify-attestation/.test(x.code) && x.marker === 'runnable');
    expect(b).toBeDefined();
    const shim = join(scratch, 'shim');
    mkdirSync(shim, { recursive: true });
    // A cosign whose SBOM check fails; every other call goes to the real one.
    writeFileSync(join(shim, 'cosign'), `#!/bin/bash\nfor a in "$@"; do [ "$a" = spdxjson ] && { echo "no matching attestations" >&2; exit 1; }; done\nexec /usr/local/bin/cosign "$@"\n`);
    chmodSync(join(shim, 'cosign'), 0o755);
    const cwd = workdir('supply-chain-failing');
    const good = await runBlock(b!, cwd, { shell: [] });
    expect(good.status, good.stderr).toBe(0);
    const bad = await runBlock(b!, cwd, { shell: [], extraEnv: { PATH: `${shim}:/usr/local/bin:${process.env.PATH}` } });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain('no matching attestations');
  }, 300_000);

  it('the skopeo example reads the index the release tagged edge', async () => {
    const b = blocks('docs/release/image-catalog.md').find((x) => x.marker === 'runnable' && /skopeo/.test(x.code))!;
    const r = await runBlock(b, workdir('skopeo'));
    expect(r.status, r.stderr).toBe(0);
    const api = (JSON.parse(readFileSync(join(dist, 'build.json'), 'utf8')) as { images: { service: string; platforms: Record<string, string> }[] }).images.find((i) => i.service === 'api')!;
    const index = JSON.parse(r.stdout.slice(r.stdout.indexOf('\n{') + 1)) as { manifests: { digest: string }[] };
    expect(index.manifests.map((m) => m.digest).sort()).toEqual(Object.values(api.platforms).sort());
  });
});
