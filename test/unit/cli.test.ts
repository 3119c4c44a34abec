import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { functions } from '../../ci/src/functions.ts';
import { kebab } from '../../ci/src/dagger/names.ts';

const CANARY = 'canary-8f2c';
const cli = (...args: string[]) => {
  const r = spawnSync(process.execPath, ['ci/src/cli.ts', ...args], { encoding: 'utf8', env: { ...process.env, CANARY_SECRET: CANARY } });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('stella-release CLI', () => {
  it('prints the catalog as JSON with the 11 services', () => {
    const r = cli('catalog');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out);
    expect(doc.services).toHaveLength(11);
    expect(doc.support.map((s: { name: string }) => s.name)).toContain('postgres');
  });

  it('prints the tags of a version', () => {
    const r = cli('tags', '--version', 'v1.4.0-rc.1', '--ref', 'refs/tags/v1.4.0-rc.1');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ channel: 'rc', tags: ['v1.4.0-rc.1'], immutable: true });
    expect(JSON.parse(cli('tags', '--version=nightly', '--date', '2026-11-28').out).tags).toEqual(['nightly-20261128']);
  });

  it('refuses a bad version with exit 1 and the accepted forms', () => {
    const r = cli('tags', '--version', 'v1.4.0-beta.1');
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/\[INVALID_VERSION\].*Accepted forms: vX\.Y\.Z/);
  });

  it('names what is wrong with the invocation', () => {
    expect(cli('frobnicate').code).toBe(2);
    expect(cli('frobnicate').err).toMatch(/unknown function "frobnicate"/);
    expect(cli('tags').err).toMatch(/tags needs --version/);
    expect(cli('tags', '--version', 'v1.0.0', '--colour', 'red').err).toMatch(/tags has no argument --colour; it takes --version, --ref, --date, --output/);
    expect(cli('tags', '--help').out).toMatch(/--version\s+string\s+\(required\)/);
    expect(cli('--help').out).toMatch(/catalog[\s\S]*tags[\s\S]*generate/);
  });

  it.each(functions.map((f) => [kebab(f.name), f] as const))('%s --help lists every flag it accepts, CLI-only ones included', (name, f) => {
    const r = cli(name, '--help');
    expect(r.code).toBe(0);
    const flags = [...r.out.matchAll(/^ {2}(--[a-z-]+) /gm)].map((m) => m[1]);
    expect(flags).toEqual([...f.args.map((a) => `--${kebab(a.name)}`), '--help']);
    expect(flags).toContain('--output');
    for (const a of f.args) expect(r.out).toMatch(new RegExp(`--${kebab(a.name)} +${a.type} +${a.required ? '\\(required\\) ' : ''}`));
    expect(r.out).toContain(`stella-release ${name}`);
  });

  it('never prints a secret it resolved, even when an error message carries it', () => {
    // A secret where an error would show it: here in a path that cannot be read.
    const dir = join(mkdtempSync(join(tmpdir(), 'stella-cli-')), `build-${CANARY}`);
    mkdirSync(dir);
    const r = cli('sign', '--images', join(dir, 'build.json'), '--key', 'env:CANARY_SECRET');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/sign: error \[NOT_FOUND\].*build-\[REDACTED\]\/build\.json/);
    // The secret as a (bad) key: the failure names the problem, never the value.
    const bad = cli('provenance', '--images', 'ci/src/base/base.lock.json', '--version', 'v1.4.0', '--base', `r.example/b@sha256:${'4d'.repeat(32)}`, '--key', 'env:CANARY_SECRET', '--git-commit', 'c', '--source-date-epoch', '1');
    expect(bad.code).toBe(1);
    for (const run of [r, bad]) {
      expect(run.out).not.toContain(CANARY);
      expect(run.err).not.toContain(CANARY);
    }
  });

  it('reports drift of generated files as up to date on a clean checkout', () => {
    const r = cli('generate', '--check');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
  });
});
