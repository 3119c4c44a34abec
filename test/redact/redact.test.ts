/**
 * The shared redaction module: short, long and URL-embedded canaries; ordinary words survive;
 * secret-named keys and URL passwords are hidden whatever their length; the document check
 * (SBOM, provenance) and the CLI's error text use the same rules.
 */
import { describe, expect, it } from 'vitest';
import {
  MIN_SECRET_LENGTH, REDACTED, Redactor, assertNoSecrets, findSecrets, isSecretKeyName, redactError, redactObject, redactText, urlPasswords,
} from '../../ci/src/redact/index.ts';
import { appSbom } from '../../ci/src/sbom/index.ts';
import { provenanceStatement } from '../../ci/src/provenance/index.ts';
import { assertNoSecrets as provenanceAssert, MIN_SECRET_LENGTH as PROVENANCE_MIN } from '../../ci/src/provenance/secrets.ts';
import { Logger } from '../../services/src/runtime/log.ts';
import { StellaError } from '../../ci/src/errors.ts';
import { COMMIT, DIGESTS, REPOSITORY, SOURCE_DATE_EPOCH, serviceNpmPackages } from '../sbom/fixtures.ts';

const SHORT = 'p';
const LONG = 'CANARY-long-pass-6f1e93';
const WORDS = ['service', 'api', 'attempt', 'startup', 'start-up', 'work', 'failed', 'retrying', 'postgres', 'password', 'authentication', 'user'];

function words(s: string): string[] {
  return s.split(/[^A-Za-z-]+/).filter(Boolean);
}

describe('Redactor', () => {
  it('keeps every ordinary word with a short secret (a password "p"), and hides it where it is known to be', () => {
    const r = new Redactor([SHORT], { secretKeys: ['STELLA_DATABASE_URL'] });
    const line = 'start-up work failed (attempt 3, retrying) for service api: password authentication failed for user "u" at postgres://u:p@127.0.0.9:5432/x; STELLA_DATABASE_URL=postgres://u:p@127.0.0.9:5432/x';
    const out = r.text(line);
    expect(out).toBe(`start-up work failed (attempt 3, retrying) for service api: password authentication failed for user "u" at postgres://u:${REDACTED}@127.0.0.9:5432/x; STELLA_DATABASE_URL=${REDACTED}`);
    for (const w of WORDS) if (line.includes(w)) expect(words(out)).toContain(w);
    expect(out).not.toContain('u:p@');
  });

  it('replaces a long secret in every form it travels in (plain, percent-encoded, JSON-escaped, base64)', () => {
    const secret = `${LONG}/"+ x`;
    const r = new Redactor([secret]);
    const b64 = Buffer.from(secret).toString('base64');
    const out = r.text(`a ${secret} b ${encodeURIComponent(secret)} c ${JSON.stringify(secret)} d ${b64} e`);
    expect(out).not.toContain(LONG);
    expect(out).not.toContain(b64);
    expect(out.split(REDACTED)).toHaveLength(5);
    expect(out.startsWith('a ')).toBe(true);
    expect(out.endsWith(' e')).toBe(true);
  });

  it('ignores secrets below MIN_SECRET_LENGTH for substring matching, at any position', () => {
    expect(MIN_SECRET_LENGTH).toBe(8);
    const seven = 'abcdefg';
    const r = new Redactor([seven, 'a', 'ap', 'api']);
    expect(r.text(`service api abcdefg x`)).toBe('service api abcdefg x');
    expect(new Redactor(['abcdefgh']).text('x abcdefgh y')).toBe(`x ${REDACTED} y`);
  });

  it('value(): secret keys by name (catalog keys given), errors as { name, message, code }, other strings redacted', () => {
    const r = new Redactor([LONG], { secretKeys: ['STELLA_DATABASE_URL'] });
    const e = Object.assign(new Error(`connect to redis://:${SHORT}@cache:6379 failed: ${LONG}`), { code: 'ECONNREFUSED' });
    expect(r.value({ STELLA_DATABASE_URL: 'postgres://x', password: SHORT, apiToken: 42, nested: { authorization: ['Bearer x'], maxTokens: 2048, service: 'api' }, err: e, ok: true })).toEqual({
      STELLA_DATABASE_URL: REDACTED,
      password: REDACTED,
      apiToken: REDACTED,
      nested: { authorization: [REDACTED], maxTokens: 2048, service: 'api' },
      err: { name: 'Error', message: `connect to redis://:${REDACTED}@cache:6379 failed: ${REDACTED}`, code: 'ECONNREFUSED' },
      ok: true,
    });
  });

  it('a services log line built with it keeps the service name and words, and carries no canary', () => {
    const lines: string[] = [];
    const r = new Redactor([SHORT, LONG], { secretKeys: ['STELLA_DATABASE_URL'] });
    const log = new Logger({ service: 'api', version: 'v1', redactor: r, write: (l) => lines.push(l) });
    log.warn('start-up work failed; retrying', { attempt: 3, error: new Error(`password authentication failed for user "u" (${LONG})`), url: 'postgres://u:p@db/x' });
    const rec = JSON.parse(lines[0]!) as { service: string; msg: string; fields: { attempt: number; error: { message: string }; url: string } };
    expect(rec.service).toBe('api');
    expect(rec.msg).toBe('start-up work failed; retrying');
    expect(rec.fields).toEqual({ attempt: 3, error: { name: 'Error', message: `password authentication failed for user "u" (${REDACTED})` }, url: `postgres://u:${REDACTED}@db/x` });
    expect(lines[0]).not.toContain(LONG);
  });
});

describe('redactText (structure, no known secrets)', () => {
  it.each([
    ['postgres://u:p@127.0.0.9:5432/x down', `postgres://u:${REDACTED}@127.0.0.9:5432/x down`],
    ['malformed postgres://u:p@ss@host:port/x', `malformed postgres://u:${REDACTED}@host:port/x`],
    ['redis://:pw@cache:6379/0 and mail@example.com', `redis://:${REDACTED}@cache:6379/0 and mail@example.com`],
    ['nats://user@queue:4222 (no password)', 'nats://user@queue:4222 (no password)'],
    ['Authorization: Bearer abc.def.ghi', `Authorization: ${REDACTED}`],
    ['curl -H "authorization: Basic dXNlcjpwYXNz" http://x', `curl -H "authorization: ${REDACTED}" http://x`],
    ['got Bearer eyJhbGciOi.JIUzI1NiJ9 and Basic credentials', `got Bearer ${REDACTED} and Basic credentials`],
    ['GET https://reg/v2/?service=x&token=abc123&scope=y', `GET https://reg/v2/?service=x&token=${REDACTED}&scope=y`],
    ['password=hunter2; api_key: xyz STELLA_AI_MAX_TOKENS=2048', `password=${REDACTED}; api_key: ${REDACTED} STELLA_AI_MAX_TOKENS=2048`],
    ['{"password":"a\\"b","user":"u","tokens":5}', `{"password":"${REDACTED}","user":"u","tokens":5}`],
    ['Authorization failed: 401 for service api', 'Authorization failed: 401 for service api'],
  ])('%s', (input, expected) => {
    expect(redactText(input)).toBe(expected);
  });

  it('values of keys the caller marks secret (the catalog secret config keys)', () => {
    expect(redactText('STELLA_REDIS_URL=redis://cache:6379 STELLA_API_URL=http://api:8081', { secretKeys: new Set(['STELLA_REDIS_URL']) })).toBe(`STELLA_REDIS_URL=${REDACTED} STELLA_API_URL=http://api:8081`);
  });

  it('names secret keys by segment, not by substring', () => {
    for (const n of ['password', 'STELLA_ADMIN_PASSWORD', 'STELLA_AI_API_KEY', 'STELLA_OBJECT_STORE_SECRET_KEY', 'identitytoken', 'registryPassword', 'x-api-key', 'auth', 'Authorization']) expect(isSecretKeyName(n), n).toBe(true);
    for (const n of ['STELLA_AI_MAX_TOKENS', 'STELLA_AUTHORITY_ISSUER', 'key', 'sha256', 'service', 'attempt', 'passage']) expect(isSecretKeyName(n), n).toBe(false);
  });

  it('urlPasswords finds the raw and decoded password, also of a URL that does not parse', () => {
    expect(urlPasswords('postgres://stella:p%40ss@db:5432/x')).toEqual(['p%40ss', 'p@ss']);
    expect(urlPasswords('not a url postgres://u:se cret@x')).toEqual([]);
    expect(urlPasswords('postgres://u:pw@host:notaport/x')).toEqual(['pw']);
  });

  it('redactObject without a redactor: keys by name, strings structurally', () => {
    expect(redactObject({ headers: { Authorization: 'Bearer x', accept: 'json' }, url: 'http://u:p@h/' })).toEqual({ headers: { Authorization: REDACTED, accept: 'json' }, url: `http://u:${REDACTED}@h/` });
  });
});

describe('redactError (the CLI error output)', () => {
  it('hides the known secrets (long) and the structural ones (short), keeps the message', () => {
    const msg = `publish: registry 127.0.0.1:5000 answered 401 for https://ci:${SHORT}@127.0.0.1:5000/v2/ (password ${LONG} rejected; Authorization: Basic Y2k6cA==)`;
    expect(redactError(msg, [LONG, SHORT, undefined])).toBe(`publish: registry 127.0.0.1:5000 answered 401 for https://ci:${REDACTED}@127.0.0.1:5000/v2/ (password ${REDACTED} rejected; Authorization: ${REDACTED}`); // a header's value runs to the end of the line
    expect(redactError('build: no such service "apx"', [SHORT])).toBe('build: no such service "apx"');
  });
});

describe('document check (SBOM, provenance)', () => {
  it('finds a long canary in any encoding, and a URL password of any length; a short secret alone matches nothing', () => {
    expect(PROVENANCE_MIN).toBe(MIN_SECRET_LENGTH);
    expect(provenanceAssert).toBe(assertNoSecrets);
    expect(findSecrets({ a: `x ${Buffer.from(`u:${LONG}`).toString('base64')}` }, [LONG])).toEqual([{ path: '$.a', secret: 1, encoding: 'base64' }]);
    expect(findSecrets({ a: 'service api', b: ['git+https://ci:p@github.com/stellaops/stella'], c: 'git+ssh://git@github.com/x' }, [SHORT])).toEqual([{ path: '$.b[0]', encoding: 'url-password' }]);
    let err: unknown;
    try {
      assertNoSecrets({ downloadLocation: 'https://ci:p@h/x' }, [SHORT], 'SBOM x');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StellaError);
    expect((err as StellaError).code).toBe('SECRET_LEAK');
    expect((err as StellaError).message).toBe('SBOM x: a secret appears at $.downloadLocation (a password in a URL); expected no secret in a published document (the values are not shown)');
  });

  it('an app SBOM whose source URL carries a short password is refused, even without known secrets', () => {
    const o = { service: 'api', version: 'v1.4.0', gitCommit: COMMIT, npmPackages: serviceNpmPackages(), created: SOURCE_DATE_EPOCH };
    expect(() => appSbom({ ...o, sourceRepository: 'git+https://ci:p@github.com/stellaops/stella' })).toThrow(/app SBOM of stella-api v1\.4\.0: a secret appears at \$\.packages\[0\]\.downloadLocation \(a password in a URL\)/);
    const ok = JSON.stringify(appSbom({ ...o, sourceRepository: 'git+https://github.com/stellaops/stella', secrets: [SHORT, LONG] }));
    expect(ok).not.toContain(LONG);
  });

  it('a provenance statement holding a URL with a short password is refused', () => {
    const opts = {
      subjects: [{ name: REPOSITORY, digest: DIGESTS.index }],
      source: { repository: 'git+https://ci:p@github.com/stellaops/stella', commit: COMMIT, ref: 'refs/tags/v1.4.0' },
      build: { version: 'v1.4.0', services: ['api'], platforms: ['linux/amd64'], sourceDateEpoch: SOURCE_DATE_EPOCH, baseImage: { uri: 'registry.example.com/base', digest: DIGESTS.base }, parameters: {} },
      builder: { id: 'https://example.com/builder' },
      invocation: { id: 'https://example.com/run/1', startedOn: '2026-01-02T03:04:05Z', finishedOn: '2026-01-02T03:05:05Z' },
      toolVersions: { 'stella-release': '0.0.0' },
      secrets: [SHORT],
    };
    expect(() => provenanceStatement(opts as Parameters<typeof provenanceStatement>[0])).toThrow(/a password in a URL/);
  });
});

describe('public keys', () => {
  it('a key the caller knows is not secret keeps its value although its name says token', () => {
    const r = new Redactor([], { secretKeys: ['STELLA_DATABASE_URL'], publicKeys: ['STELLA_TOKEN_TTL'] });
    expect(r.text('STELLA_TOKEN_TTL=1h token=abc')).toBe(`STELLA_TOKEN_TTL=1h token=${REDACTED}`);
    expect(r.value({ STELLA_TOKEN_TTL: '1h (default)', STELLA_DATABASE_URL: 'x' })).toEqual({ STELLA_TOKEN_TTL: '1h (default)', STELLA_DATABASE_URL: REDACTED });
    expect(new Redactor().value({ STELLA_TOKEN_TTL: '1h' })).toEqual({ STELLA_TOKEN_TTL: REDACTED });
  });
});
