/**
 * What every page must say, checked without running anything: the marker
 * convention (docs/README.md), shell syntax, names of scripts, functions and
 * flags, and the values that come from the code.
 */
import { BUNDLE_FORMAT, BundlePath } from '../../ci/src/bundle/format.ts';
import { OFFLINE_DOCS } from '../../ci/src/bundle/create.ts';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HEALTHCHECK } from '../../ci/src/build/dockerfiles.ts';
import { functions, kebab } from '../../ci/src/functions.ts';
import { IMPOSED_RULE, ROOT, acceptedFlags, blocks, inlineCode, invocations, logicalLines, pages, read, shellBlocks } from './pages.ts';

const scripts = Object.keys((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts);
const where = (b: { page: string; line: number }) => `${b.page}:${b.line}`;

/** Every command text the docs show: shell blocks and inline code in prose. */
function commandTexts(): { at: string; text: string }[] {
  const out: { at: string; text: string }[] = [];
  for (const b of shellBlocks()) for (const l of logicalLines(b.code)) out.push({ at: where(b), text: l });
  for (const p of pages()) for (const c of inlineCode(p)) out.push({ at: `${p}:${c.line}`, text: c.code });
  return out;
}

describe('docs pages', () => {
  it('are README.md and the pages of the seed §6 that exist, each found', () => {
    const all = pages();
    expect(all).toContain('README.md');
    expect(all).toContain('docs/README.md');
    for (const p of ['docs/install/overview.md', 'docs/install/configuration-reference.md', 'docs/security/supply-chain.md', 'docs/operations/health-and-readiness.md', 'docs/release/image-catalog.md', 'docs/console/onboarding.md']) {
      expect(all).toContain(p);
    }
  });

  it('each start with the Imposed rule line', () => {
    const bad = pages().filter((p) => read(p).split('\n')[0] !== IMPOSED_RULE);
    expect(bad).toEqual([]);
  });

  it('mark every shell block runnable or not-here with a reason', () => {
    const bad = shellBlocks()
      .filter((b) => !b.marker || (b.marker === 'not-here' && !b.reason) || b.lang !== 'sh')
      .map((b) => `${where(b)} \`\`\`${b.info}`);
    expect(bad).toEqual([]);
  });

  it('have shell blocks that parse (bash -n)', () => {
    const bad: string[] = [];
    for (const b of shellBlocks()) {
      const r = spawnSync('bash', ['-n'], { input: b.code, encoding: 'utf8' });
      if (r.status !== 0) bad.push(`${where(b)}: ${r.stderr.trim()}`);
    }
    expect(bad).toEqual([]);
  });

  it('never run a .ts file with the bare `node` (Node 20 on a fresh host): npm scripts or node_modules/.bin/node', () => {
    const bad = commandTexts().filter((c) => /(^|[\s;&|("'`])node\s+(?!-)[^\s]*\.ts\b/.test(c.text)).map((c) => `${c.at}: ${c.text}`);
    expect(bad).toEqual([]);
  });

  it('call stella-release through npm with -s, so that stdout is the JSON alone', () => {
    const bad = commandTexts().filter((c) => /npm run (?!-s )[^\n]*stella-release|npm run stella-release/.test(c.text)).map((c) => `${c.at}: ${c.text}`);
    expect(bad).toEqual([]);
  });

  it('name only npm scripts that package.json has', () => {
    const bad: string[] = [];
    for (const c of commandTexts()) {
      for (const m of c.text.matchAll(/npm run\s+(?:-s\s+)?([\w:.-]+)/g)) if (!scripts.includes(m[1]!)) bad.push(`${c.at}: npm run ${m[1]}`);
    }
    expect(bad).toEqual([]);
  });

  it('name only functions and flags that exist (the functions definitions, in kebab-case)', () => {
    const names = functions.map((f) => kebab(f.name));
    const bad: string[] = [];
    let seen = 0;
    for (const c of commandTexts()) {
      for (const inv of invocations(c.text)) {
        seen++;
        if (inv.fn !== undefined && !names.includes(inv.fn)) {
          bad.push(`${c.at}: ${inv.via} ${inv.fn}: no such function (${names.join(', ')})`);
          continue;
        }
        const ok = acceptedFlags(inv.fn, inv.via)!;
        for (const f of inv.flags) if (!ok.has(f)) bad.push(`${c.at}: ${inv.via} ${inv.fn ?? ''} --${f}: no such flag`);
      }
    }
    expect(bad).toEqual([]);
    expect(seen).toBeGreaterThan(10);
  });

  it('the flag check itself rejects an unknown function and flag', () => {
    const [a] = invocations('npm run -s stella-release -- build --version v1 --base x --outptu dist/x.json');
    expect(a!.fn).toBe('build');
    expect(acceptedFlags(a!.fn, a!.via)!.has('outptu')).toBe(false);
    const [b] = invocations('dagger call relase --version v1 export --path dist');
    expect(functions.map((f) => kebab(f.name))).not.toContain(b!.fn);
    expect(b!.flags).toEqual(['version']);
  });

  it('name only repository files that exist (dist/ is checked against a release by docs.test.ts)', () => {
    const bad: string[] = [];
    for (const b of shellBlocks()) {
      for (const m of b.code.matchAll(/(?<![\w./:@-])(?:\.\/)?((?:ci|services|docker|scripts|test|bench|deploy|tools)\/[\w.\/-]*[\w-])/g)) {
        if (m[1]!.startsWith('deploy/') && !/^deploy\/(compose|helm)/.test(m[1]!)) continue; // kubectl's deploy/<name>
        if (!existsSync(join(ROOT, m[1]!))) bad.push(`${where(b)}: ${m[1]}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('do not write into dist/ from a block that is meant to be run (it holds a release)', () => {
    const bad: string[] = [];
    for (const b of shellBlocks()) {
      if (b.marker === 'not-here' && /dist/.test(b.reason ?? '')) continue;
      for (const l of logicalLines(b.code)) {
        if (/--(output|oci-layout|out|out-dir)[= ]+\.?\/?dist\b|>\s*\.?\/?dist\//.test(l)) bad.push(`${where(b)}: ${l}`);
        if (/stella-release\b.*\bbuild-base\b/.test(l) && !/--oci-layout/.test(l)) bad.push(`${where(b)}: build-base without --oci-layout writes dist/base-layout: ${l}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('write loops that stop on a failure (|| exit 1 in the body, or set -e first)', () => {
    const bad: string[] = [];
    for (const b of shellBlocks()) {
      const lines = logicalLines(b.code);
      if (/^set -[a-z]*e/.test(lines[0] ?? '')) continue;
      const text = lines.join('\n');
      for (const m of text.matchAll(/\bfor\b[^\n]*?;\s*do\b([\s\S]*?)\bdone\b/g)) {
        const body = m[1]!.split(/\n|;/).map((x) => x.trim()).filter((x) => x && x !== 'do');
        const unchecked = body.filter((x) => !/\|\|\s*exit 1$/.test(x) && !/^echo\b/.test(x));
        if (unchecked.length) bad.push(`${where(b)}: loop body does not stop on failure: ${unchecked.join(' ; ')}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('query the local registry over plain HTTP and by the tag a local release writes (edge)', () => {
    const bad: string[] = [];
    let skopeo = 0;
    for (const b of shellBlocks()) {
      for (const l of logicalLines(b.code)) {
        if (/\bskopeo\b/.test(l) && /127\.0\.0\.1:5000/.test(l)) {
          skopeo++;
          if (!/--tls-verify=false/.test(l)) bad.push(`${where(b)}: skopeo against the plain-HTTP local registry needs --tls-verify=false: ${l}`);
        }
        for (const m of l.matchAll(/127\.0\.0\.1:5000\/[\w/-]+:([\w.-]+)/g)) if (m[1] !== 'edge') bad.push(`${where(b)}: a local release has only the tag edge, not ${m[1]}: ${l}`);
      }
    }
    expect(bad).toEqual([]);
    const catalogPage = blocks('docs/release/image-catalog.md').filter((b) => b.marker === 'runnable' && /skopeo/.test(b.code));
    expect(catalogPage.length).toBe(1);
    expect(skopeo).toBeGreaterThan(0);
  });

  it('show the HEALTHCHECK timings the Dockerfile generator writes', () => {
    const bad: string[] = [];
    const want: Record<string, string> = { interval: HEALTHCHECK.interval, timeout: HEALTHCHECK.timeout, 'start-period': HEALTHCHECK.startPeriod, retries: String(HEALTHCHECK.retries) };
    let seen = 0;
    for (const p of pages()) {
      read(p).split('\n').forEach((l, i) => {
        if (!/HEALTHCHECK\s+--/.test(l)) return;
        for (const m of l.matchAll(/--(interval|timeout|start-period|retries)=(\S+)/g)) {
          seen++;
          if (want[m[1]!] !== m[2]) bad.push(`${p}:${i + 1}: --${m[1]}=${m[2]}, the images have --${m[1]}=${want[m[1]!]}`);
        }
      });
    }
    expect(bad).toEqual([]);
    expect(seen).toBeGreaterThanOrEqual(4);
    expect(read('docker/stella-api.Dockerfile')).toContain(`--timeout=${HEALTHCHECK.timeout} --start-period=${HEALTHCHECK.startPeriod}`);
  });

  it('say the quickstart publishes the ports the catalog gives, nowhere fewer', () => {
    const bad: string[] = [];
    for (const p of pages()) {
      read(p).split('\n').forEach((l, i) => {
        if (/publishes only the console \(8080\) and the api \(8081\)/.test(l)) bad.push(`${p}:${i + 1}: ${l}`);
      });
    }
    expect(bad).toEqual([]);
    const health = read('docs/operations/health-and-readiness.md');
    for (const port of ['8080', '8081', '9000', '4222']) expect(health).toMatch(new RegExp(`quickstart[^\\n]*\\(${port}\\)`));
  });

  it('describe the console wizard outside quickstart mode as the API answers it (404; test/services/platform.test.ts runs it)', () => {
    const page = read('docs/console/onboarding.md');
    expect(page).not.toContain('`GET /welcome` answers 200');
    expect(page).toMatch(/Outside quickstart mode `GET \/welcome`,\s+the steps and the sample scan import answer 404/);
    expect(read('test/services/platform.test.ts')).toContain("expect((await api.get('/welcome')).status).toBe(404);");
  });

  it('the air-gap page states the bundle format as the code has it (every name of ci/src/bundle/format.ts)', () => {
    const page = read('docs/install/airgap.md');
    const missing = Object.values(BundlePath).filter((p) => !page.includes(`\`${p}`));
    expect(missing).toEqual([]);
    expect(page).toContain(BUNDLE_FORMAT);
    // The offline docs the bundle carries exist.
    expect(OFFLINE_DOCS.filter((d) => !existsSync(join(ROOT, 'docs', d)))).toEqual([]);
  });

  it('README: the layout table lists only paths that exist; Node 24 is reached through npm scripts or node_modules/.bin/node', () => {
    const readme = read('README.md');
    const layout = readme.slice(readme.indexOf('## Layout'), readme.indexOf('## Functions'));
    const rows = layout.split('\n').filter((l) => l.startsWith('| `'));
    expect(rows.length).toBeGreaterThan(8);
    const missing = rows.flatMap((r) => [...r.split('|')[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!)).filter((p) => !existsSync(join(ROOT, p)));
    expect(missing).toEqual([]);
    expect(readme).toContain('node_modules/.bin/node');
    expect(readme).not.toMatch(/Node\.js ≥ 20 with npm 11 to bootstrap;/);
    for (const p of ['deploy/compose/', 'deploy/helm/stella/']) {
      if (!existsSync(join(ROOT, p))) expect(readme.split('\n').filter((l) => l.includes(p)).every((l) => /coming/i.test(l))).toBe(true);
    }
  });

  it('configuration reference: the matrix has a required column and a table of what happens without each required key', () => {
    const page = read('docs/install/configuration-reference.md');
    expect(page).toMatch(/\| group \| key \| type \| default \| secret \| required \|/);
    expect(page).toMatch(/\| `STELLA_DATABASE_URL` \|[^\n]*\| \*\*yes\*\* \(api,/);
    expect(page).toMatch(/BEGIN GENERATED required[\s\S]*`STELLA_DATABASE_URL`[\s\S]*exit code 2[\s\S]*END GENERATED required/);
  });
});
