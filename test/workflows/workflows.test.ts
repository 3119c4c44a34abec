/**
 * The GitHub Actions workflows (.github/workflows), checked here since they cannot run here:
 *
 *   - actionlint (built from its Go module github.com/rhysd/actionlint by scripts/build-go-tool.sh,
 *     with shellcheck for the `run:` scripts) reports nothing at all;
 *   - every action is pinned by a full commit SHA with a `# vX…` comment naming its version;
 *   - every pipeline function a workflow calls (`dagger call <fn>`, `stella-release -- <fn>`)
 *     exists in ci/src/functions.ts and takes every flag given (Dagger: no CLI-only flag);
 *   - publishing waits for the tests, signing fails without a key or an OIDC identity, and no
 *     private key is ever uploaded.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { daggerArgs, functions, kebab } from '../../ci/src/functions.ts';
import { findTool, skipUnless } from '../helpers/tools.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const DIR = join(ROOT, '.github/workflows');
const files = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f)).sort();
const text = (f: string) => readFileSync(join(DIR, f), 'utf8');

interface Step { uses?: string; run?: string; with?: Record<string, unknown>; env?: Record<string, string>; if?: string; name?: string }
interface Job { steps?: Step[]; needs?: string | string[]; uses?: string; permissions?: Record<string, string> }
interface Workflow { on: unknown; permissions?: Record<string, string>; jobs: Record<string, Job> }
const workflow = (f: string) => parse(text(f)) as Workflow;

const needsGo = skipUnless(['go', 'shellcheck'], 'actionlint over .github/workflows (built from its Go module)');

describe('workflows', () => {
  it('are there: ci, release, nightly, smoke, promote', () => {
    expect(files).toEqual(expect.arrayContaining(['ci.yml', 'release.yml', 'nightly.yml', 'smoke.yml', 'promote.yml']));
  });

  describe.skipIf(needsGo)('actionlint', () => {
    let actionlint = '';
    beforeAll(() => {
      const r = spawnSync('bash', [join(ROOT, 'scripts/build-go-tool.sh'), 'actionlint', 'github.com/rhysd/actionlint'], { encoding: 'utf8', timeout: 900_000 });
      expect(r.status, r.stderr).toBe(0);
      actionlint = r.stdout.trim().split('\n').pop()!;
    }, 900_000);

    it('reports nothing on any workflow (shellcheck included)', () => {
      const r = spawnSync(actionlint, ['-shellcheck', findTool('shellcheck')!, '-no-color', ...files.map((f) => join(DIR, f))], { cwd: ROOT, encoding: 'utf8' });
      expect(r.stdout + r.stderr).toBe('');
      expect(r.status).toBe(0);
    });

    it('does find a planted mistake (the linter really runs)', () => {
      const bad = 'on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.event.pull_request.title }}\n      - uses: actions/checkout@v4\n        with:\n          no-such-input: 1\n';
      const r = spawnSync(actionlint, ['-shellcheck', findTool('shellcheck')!, '-no-color', '-'], { input: bad, encoding: 'utf8' });
      expect(r.status).toBe(1);
      expect(r.stdout).toMatch(/potentially untrusted/);
    });
  });

  for (const f of files) {
    it(`${f}: every action is pinned by commit SHA with a version comment`, () => {
      const lines = text(f).split('\n').filter((l) => /^\s*-?\s*uses:\s/.test(l));
      for (const l of lines) {
        const ref = /uses:\s*(\S+)/.exec(l)![1]!;
        if (ref.startsWith('./')) continue;
        expect(ref, l).toMatch(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.\/-]+@[0-9a-f]{40}$/);
        expect(l, l).toMatch(/ # v\d+(\.\d+)*$/);
      }
    });
  }

  it('pins each action at one SHA everywhere (one version per action)', () => {
    const pins = new Map<string, Set<string>>();
    for (const f of files) for (const m of text(f).matchAll(/uses:\s*([^@\s]+)@([0-9a-f]{40}) # (v\S+)/g)) {
      pins.set(m[1]!, (pins.get(m[1]!) ?? new Set()).add(`${m[2]} ${m[3]}`));
    }
    for (const [action, set] of pins) expect([...set], action).toHaveLength(1);
    expect(pins.size).toBeGreaterThanOrEqual(6);
  });

  describe('every pipeline function called exists and takes the flags given', () => {
    /** `dagger call` args (one folded line) and `stella-release -- <fn> …` commands in run scripts. */
    function invocations(f: string): { via: 'dagger' | 'cli'; fn: string; flags: string[]; where: string }[] {
      const out: { via: 'dagger' | 'cli'; fn: string; flags: string[]; where: string }[] = [];
      const flagsOf = (tokens: string[]) => {
        const end = tokens.indexOf('export');
        return (end >= 0 ? tokens.slice(0, end) : tokens).filter((t) => /^--[a-z]/.test(t)).map((t) => t.slice(2).split('=')[0]!);
      };
      for (const [name, job] of Object.entries(workflow(f).jobs)) {
        for (const step of job.steps ?? []) {
          if (step.uses?.startsWith('dagger/dagger-for-github@') && step.with?.verb === 'call') {
            const tokens = String(step.with.args).trim().split(/\s+/);
            out.push({ via: 'dagger', fn: tokens[0]!, flags: flagsOf(tokens.slice(1)), where: `${f} ${name}: ${step.name ?? ''}` });
          }
          if (step.run) {
            const script = step.run.replace(/\\\n\s*/g, ' ').replace(/>-?\n/g, ' ');
            for (const m of script.matchAll(/stella-release -- ([a-z-]+)([^\n]*)/g)) {
              out.push({ via: 'cli', fn: m[1]!, flags: flagsOf(m[2]!.trim().split(/\s+/)), where: `${f} ${name}: ${step.name ?? step.run.split('\n')[0]}` });
            }
          }
        }
      }
      return out;
    }
    const all = files.flatMap(invocations);

    it('finds the calls (release, promote, smoke-compose, smoke-helm, bundle …)', () => {
      expect(new Set(all.map((c) => c.fn))).toEqual(new Set(['release', 'generate', 'promote', 'smoke-compose', 'smoke-helm', 'bundle', 'bundle-verify', 'bundle-load']));
    });

    for (const c of all) {
      it(`${c.where} → ${c.via === 'dagger' ? 'dagger call' : 'stella-release'} ${c.fn}`, () => {
        const spec = functions.find((x) => kebab(x.name) === c.fn);
        expect(spec, `no function ${c.fn}`).toBeDefined();
        // The CLI's global options (--source, --json) go with any function.
        const accepted = [...(c.via === 'dagger' ? daggerArgs(spec!) : spec!.args).map((a) => kebab(a.name)), ...(c.via === 'cli' ? ['source', 'json'] : [])];
        for (const flag of c.flags) expect(accepted, `${c.fn} --${flag}`).toContain(flag);
        for (const a of spec!.args.filter((x) => x.required)) expect(c.flags, `${c.fn} needs --${kebab(a.name)}`).toContain(kebab(a.name));
      });
    }
  });

  describe('publishing', () => {
    it('release.yml publishes only after the tests pass (ci.yml), and nightly.yml goes through it', () => {
      const w = workflow('release.yml');
      expect(w.jobs.test!.uses).toBe('./.github/workflows/ci.yml');
      expect(w.jobs.release!.needs).toBe('test');
      expect(w.jobs.smoke!.needs).toBe('release');
      expect(workflow('nightly.yml').jobs.nightly!.uses).toBe('./.github/workflows/release.yml');
      expect(JSON.stringify(workflow('ci.yml').on)).toContain('workflow_call');
    });

    it('release.yml signs with the key from secrets or keyless OIDC, and fails when neither is there', () => {
      const steps = workflow('release.yml').jobs.release!.steps!;
      const decide = steps.find((s) => s.run?.includes('mode=keyless'))!;
      expect(decide.run).toMatch(/COSIGN_KEY[\s\S]*mode=key[\s\S]*ACTIONS_ID_TOKEN_REQUEST_URL[\s\S]*mode=keyless[\s\S]*exit 1/);
      // Run the decision script as the runner does (`bash --noprofile --norc -eo pipefail`, the step's
      // env with an unset secret as the empty string): neither configured → it fails.
      expect(decide.env).toEqual({ COSIGN_KEY: '${{ secrets.COSIGN_KEY }}' });
      for (const [envs, status, out] of [[{ COSIGN_KEY: '' }, 1, ''], [{ COSIGN_KEY: 'pem' }, 0, 'mode=key'], [{ COSIGN_KEY: '', ACTIONS_ID_TOKEN_REQUEST_URL: 'u', ACTIONS_ID_TOKEN_REQUEST_TOKEN: 't' }, 0, 'mode=keyless']] as const) {
        const output = join(ROOT, 'test-results', `gha-output-${process.pid}`);
        const r = spawnSync('bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', decide.run!], { env: { PATH: process.env.PATH, GITHUB_OUTPUT: output, ...envs }, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
        expect(r.status, JSON.stringify(envs) + r.stderr).toBe(status);
        if (out) expect(readFileSync(output, 'utf8')).toContain(out);
        spawnSync('rm', ['-f', output]);
      }
      const modes = steps.filter((s) => s.uses?.startsWith('dagger/dagger-for-github@') && / release --version/.test(` ${String(s.with?.args)}`));
      expect(modes.map((s) => s.if)).toEqual(["steps.sign.outputs.mode == 'key'", "steps.sign.outputs.mode == 'keyless'"]);
      expect(String(modes[1]!.with!.args)).toContain('--identity-token env:SIGSTORE_ID_TOKEN');
      expect(workflow('release.yml').jobs.release!.permissions!['id-token']).toBe('write');
    });

    it('no workflow uploads a private key', () => {
      for (const f of files) {
        for (const job of Object.values(workflow(f).jobs)) {
          for (const s of job.steps ?? []) {
            if (!s.uses?.startsWith('actions/upload-artifact@')) continue;
            const path = String(s.with?.path ?? '');
            if (path.includes('dist/')) expect(path, f).toContain('!dist/keys/*.key');
            expect(path, f).not.toMatch(/(^|\s)[^!\s]*\.key(\s|$)/);
          }
        }
      }
    });

    it('every workflow defaults to read-only permissions (jobs ask for more themselves)', () => {
      for (const f of files) {
        const p = workflow(f).permissions!;
        expect(p.contents, f).toBe('read');
        for (const [k, v] of Object.entries(p)) expect(v, `${f} ${k}`).toMatch(/^(read|none)$/);
      }
    });
  });
});
