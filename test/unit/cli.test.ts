import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const cli = (...args: string[]) => {
  const r = spawnSync(process.execPath, ['ci/src/cli.ts', ...args], { encoding: 'utf8', env: { ...process.env, CANARY_SECRET: 'canary-8f2c' } });
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
    expect(cli('tags', '--version', 'v1.0.0', '--colour', 'red').err).toMatch(/tags has no argument --colour; it takes --version, --ref, --date/);
    expect(cli('tags', '--help').out).toMatch(/--version\s+string\s+\(required\)/);
    expect(cli('--help').out).toMatch(/catalog[\s\S]*tags[\s\S]*generate/);
  });

  it('reports drift of generated files as up to date on a clean checkout', () => {
    const r = cli('generate', '--check');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
  });
});
