/** The registry client's pure parts: name grammar, challenges, Retry-After, backoff, redaction. */
import { describe, expect, it } from 'vitest';
import { Redactor, REDACTED } from '../../ci/src/redact/index.ts';
import {
  assertReference,
  assertRepository,
  backoffDelay,
  isRepository,
  isTag,
  parseChallenges,
  parseRetryAfter,
  credentialsFromDockerConfig,
} from '../../ci/src/registry/index.ts';
import { StellaError } from '../../ci/src/errors.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('names', () => {
  it.each(['a', 'stellaops/stella-api', 'a.b_c__d--e/f', 'x/y/z', 'a0', '0a', 'library/node'])('accepts repository %s', (r) => {
    expect(isRepository(r)).toBe(true);
  });
  it.each(['A', 'a_', '_a', 'a___b', 'a/', '/a', 'a//b', 'a..b', '../a', 'a:b', 'a@b', 'a b', ''])('refuses repository %j', (r) => {
    expect(isRepository(r)).toBe(false);
    expect(() => assertRepository(r)).toThrow(StellaError);
  });
  it('tags and references', () => {
    for (const t of ['v1.4.0', 'v1.4.0-rc.2', 'edge', 'nightly-20250101', '_x', 'A'.repeat(128)]) expect(isTag(t)).toBe(true);
    for (const t of ['.x', '-x', 'a/b', 'A'.repeat(129), 'a+b', '']) expect(isTag(t)).toBe(false);
    expect(assertReference(`sha256:${'a'.repeat(64)}`)).toMatch(/^sha256:/);
    expect(() => assertReference('sha256:../../x')).toThrow(/is not a digest/);
    expect(() => assertReference('latest:x')).toThrow(StellaError);
  });
});

describe('WWW-Authenticate', () => {
  it('parses a Bearer challenge whose scope holds commas', () => {
    expect(parseChallenges('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' } },
    ]);
  });
  it('parses several challenges, unquoted values and escapes', () => {
    expect(parseChallenges('Basic realm="x y", Bearer realm=https://a/t, error="insufficient_scope", scope="a \\"b\\""')).toEqual([
      { scheme: 'basic', params: { realm: 'x y' } },
      { scheme: 'bearer', params: { realm: 'https://a/t', error: 'insufficient_scope', scope: 'a "b"' } },
    ]);
    expect(parseChallenges(null)).toEqual([]);
    expect(parseChallenges('')).toEqual([]);
  });
});

describe('retries', () => {
  it('reads Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    expect(parseRetryAfter('1', now)).toBe(1000);
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Tue, 31 Dec 2024 00:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(null, now)).toBeUndefined();
  });
  it('backs off exponentially with jitter, never above the cap; Retry-After wins but is capped', () => {
    const p = { attempts: 5, baseMs: 100, maxMs: 1000 };
    expect(backoffDelay(p, 1, undefined, () => 0)).toBe(50);
    expect(backoffDelay(p, 1, undefined, () => 1)).toBe(100);
    expect(backoffDelay(p, 3, undefined, () => 1)).toBe(400);
    expect(backoffDelay(p, 10, undefined, () => 1)).toBe(1000);
    for (let i = 1; i < 20; i++) expect(backoffDelay(p, i)).toBeLessThanOrEqual(1000);
    expect(backoffDelay(p, 1, 700)).toBe(700);
    expect(backoffDelay(p, 1, 60_000)).toBe(1000);
  });
});

describe('redaction', () => {
  it('removes the credentials the client holds in plain, base64, URL-encoded and JSON-escaped forms, and any long Basic/Bearer value', () => {
    // The registry client registers its credentials in the shared redactor (ci/src/redact).
    const r = new Redactor();
    r.addBasic('user', 'p@ss w"rd!');
    r.add(['tok-123456']);
    const b64 = Buffer.from('user:p@ss w"rd!').toString('base64');
    const text = `a p@ss w"rd! b ${b64} c ${encodeURIComponent('p@ss w"rd!')} d ${JSON.stringify('p@ss w"rd!')} e tok-123456 f Bearer eyJhbGciOi.JIUzI1NiJ9.x g Basic credentials`;
    const out = r.text(text);
    for (const s of ['p@ss', b64, 'tok-123456', 'eyJhbGciOi']) expect(out).not.toContain(s);
    expect(out).toContain('Basic credentials');
    expect(r.value({ a: ['tok-123456', 1], b: { c: 'x tok-123456' } })).toEqual({ a: [REDACTED, 1], b: { c: `x ${REDACTED}` } });
  });
});

describe('Docker config', () => {
  it('reads auth, username/password and identitytoken entries under the keys docker uses', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stella-dockercfg-'));
    try {
      const f = join(dir, 'config.json');
      writeFileSync(
        f,
        JSON.stringify({
          auths: {
            'reg.one:5000': { auth: Buffer.from('u1:p:w1').toString('base64') },
            'https://reg.two': { username: 'u2', password: 'p2' },
            'reg.three': { identitytoken: 'refresh-3' },
            'https://index.docker.io/v1/': { auth: Buffer.from('hub:hp').toString('base64') },
          },
        }),
      );
      expect(credentialsFromDockerConfig(f, 'reg.one:5000')).toEqual({ kind: 'basic', username: 'u1', password: 'p:w1' });
      expect(credentialsFromDockerConfig(f, 'reg.two')).toEqual({ kind: 'basic', username: 'u2', password: 'p2' });
      expect(credentialsFromDockerConfig(f, 'reg.three')).toEqual({ kind: 'identity', username: '<token>', identityToken: 'refresh-3' });
      expect(credentialsFromDockerConfig(f, 'docker.io')).toEqual({ kind: 'basic', username: 'hub', password: 'hp' });
      expect(credentialsFromDockerConfig(f, 'reg.four')).toBeUndefined();
      expect(() => credentialsFromDockerConfig(join(dir, 'missing.json'), 'x')).toThrow(/cannot be read as JSON \(ENOENT\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
