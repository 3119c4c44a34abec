/**
 * Faults and auth, injected by test/helpers/fault-proxy.ts in front of a real
 * distribution 2.8: each fault is survived, or ends in a clear error after
 * bounded retries; a re-run after a failure pushes nothing new and changes no
 * digest; credentials (canaries) never show in errors or events.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspect } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient, pushLayout, type RegistryEvent, type RegistryClientOptions } from '../../ci/src/registry/index.ts';
import { MediaType, sha256Digest } from '../../ci/src/oci/types.ts';
import { readBlob } from '../../ci/src/oci/layout.ts';
import { StellaError } from '../../ci/src/errors.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { skipUnless } from '../helpers/tools.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { buildTestImage, bytesFrom, type TestImage } from './image-fixture.ts';
import { REDACTED } from '../../ci/src/redact/index.ts';

const FAST = { attempts: 4, baseMs: 20, maxMs: 200 } as const;
const CANARY_PASSWORD = 'canary-pw-5b1f0c7e9a2d4e6f';
const CANARY_TOKEN = 'canary-token-0d9e8f7a6b5c4d3e';
const ISSUED_TOKEN = 'issued-token-3c2b1a0f9e8d7c6b';
// Under CI a missing registry fails the suite instead of skipping it (test/helpers/tools.ts).
const SKIP = skipUnless(['docker-registry'], 'registry faults, retries and auth through a fault proxy');

const writes = (p: FaultProxy) => p.count('PUT') + p.count('POST') + p.count('PATCH');

async function failure(p: Promise<unknown>): Promise<StellaError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, 'expected the call to fail').toBeInstanceOf(StellaError);
  return e as StellaError;
}

/** Everything a user or a log could see of an error. */
function visible(e: unknown): string {
  return [String(e), (e as Error).stack ?? '', inspect(e, { depth: 10 }), JSON.stringify(e)].join('\n');
}

function expectNoSecrets(text: string, ...secrets: string[]): void {
  for (const s of secrets) {
    expect(text).not.toContain(s);
    expect(text).not.toContain(Buffer.from(s).toString('base64'));
    for (const user of ['stella', 'ci']) expect(text).not.toContain(Buffer.from(`${user}:${s}`).toString('base64'));
  }
}

describe.skipIf(SKIP)('registry faults, retries and auth through a fault proxy', () => {
  let registry: TestRegistry;
  let tmp: string;
  let image: TestImage;

  beforeAll(async () => {
    registry = await startRegistry();
    tmp = mkdtempSync(join(tmpdir(), 'stella-faults-test-'));
    // 256 KiB first layers: large enough that a reset after 64 KiB is mid-body.
    image = await buildTestImage(join(tmp, 'layout'), 'faults-test', 256 * 1024);
  });
  afterAll(async () => {
    await registry?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  describe('faults', () => {
    let proxy: FaultProxy;
    let events: RegistryEvent[];
    let client: RegistryClient;
    beforeAll(async () => {
      proxy = await startFaultProxy({ upstream: registry.host });
    });
    afterAll(async () => proxy?.stop());
    const fresh = (opts: Partial<RegistryClientOptions> = {}) => {
      events = [];
      proxy.reset();
      client = new RegistryClient({ registry: proxy.host, retry: FAST, onEvent: (e) => events.push(e), ...opts });
      return client;
    };

    it('survives a 500 once on a manifest PUT', async () => {
      fresh();
      const blob = bytesFrom('500-once', 64);
      await client.pushBlob('faults/a', blob, sha256Digest(blob));
      const empty = new TextEncoder().encode('{}');
      await client.pushBlob('faults/a', empty, sha256Digest(empty));
      const manifest = new TextEncoder().encode(
        JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociEmpty, digest: sha256Digest(empty), size: 2 }, layers: [{ mediaType: 'application/octet-stream', digest: sha256Digest(blob), size: 64 }] }),
      );
      proxy.fault({ method: 'PUT', path: /\/manifests\//, action: { kind: 'status', status: 500, body: 'boom' } });
      expect(await client.putManifest('faults/a', 'v1', manifest, MediaType.ociManifest)).toBe(sha256Digest(manifest));
      expect(proxy.requests.filter((r) => r.method === 'PUT' && r.path.includes('/manifests/')).map((r) => r.status)).toEqual([500, 201]);
      const retry = events.find((e) => e.type === 'retry');
      expect(retry).toMatchObject({ type: 'retry', op: 'put manifest', target: `${proxy.host}/faults/a:v1`, attempt: 1 });
      expect(retry?.type === 'retry' && retry.reason).toContain('HTTP 500');
    });

    it('restarts a blob upload from a new session when the connection is reset mid-body', async () => {
      fresh();
      const layer = image.blobs.find((b) => b.size === 256 * 1024)!;
      const bytes = await readBlob(image.layoutDir, layer.digest);
      proxy.fault({ method: 'PUT', path: /\/blobs\/uploads\//, action: { kind: 'reset', afterBytes: 64 * 1024 } });
      expect(await client.pushBlob('faults/reset', bytes, layer.digest)).toBe('pushed');
      const sessions = proxy.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/blobs/uploads/'));
      expect(sessions).toHaveLength(2);
      const puts = proxy.requests.filter((r) => r.method === 'PUT' && r.path.includes('/blobs/uploads/'));
      expect(puts.map((r) => r.fault ?? r.status)).toEqual(['reset', 201]);
      // The two PUTs went to two different upload sessions.
      expect(new Set(puts.map((r) => r.path)).size).toBe(2);
      expect(events.some((e) => e.type === 'retry' && e.op === 'push blob')).toBe(true);
      expect(sha256Digest(await client.getBlob('faults/reset', layer.digest))).toBe(layer.digest);
    });

    it('restarts a blob download when the connection breaks mid-body, and still verifies the digest', async () => {
      fresh();
      const layer = image.blobs.find((b) => b.size === 256 * 1024)!;
      await client.pushBlob('faults/reset', await readBlob(image.layoutDir, layer.digest), layer.digest);
      proxy.reset();
      proxy.fault({ method: 'GET', path: /\/blobs\/sha256:/, action: { kind: 'reset-response', afterBytes: 1000 } });
      const got = await client.getBlob('faults/reset', layer.digest);
      expect(sha256Digest(got)).toBe(layer.digest);
      expect(proxy.count('GET', /\/blobs\/sha256:/)).toBe(2);
    });

    it('honours 429 with Retry-After: 1', async () => {
      fresh({ retry: { attempts: 3, baseMs: 1, maxMs: 5000 } });
      proxy.fault({ method: 'HEAD', action: { kind: 'status', status: 429, headers: { 'retry-after': '1' } } });
      const t0 = Date.now();
      expect(await client.hasBlob('faults/a', sha256Digest(bytesFrom('500-once', 64)))).toBe(true);
      const retry = events.find((e) => e.type === 'retry');
      expect(retry).toMatchObject({ type: 'retry', delayMs: 1000, attempt: 1 });
      // Waited as asked (a lower bound, not a performance assertion).
      expect(Date.now() - t0).toBeGreaterThanOrEqual(990);
      expect(proxy.requests.map((r) => r.status)).toEqual([429, 200]);
    });

    it('caps a long Retry-After at maxMs', async () => {
      fresh({ retry: { attempts: 2, baseMs: 1, maxMs: 50 } });
      proxy.fault({ method: 'HEAD', action: { kind: 'status', status: 429, headers: { 'retry-after': new Date(Date.now() + 3_600_000).toUTCString() } } });
      expect(await client.hasBlob('faults/a', sha256Digest(bytesFrom('500-once', 64)))).toBe(true);
      expect(events.find((e) => e.type === 'retry')).toMatchObject({ delayMs: 50 });
    });

    it('gives up after the bounded attempts with a message naming operation, repository, digest, status and body', async () => {
      fresh();
      const blob = bytesFrom('always-500', 100);
      const digest = sha256Digest(blob);
      proxy.fault({ method: 'POST', path: /\/blobs\/uploads\/$/, times: 1000, action: { kind: 'status', status: 503, body: 'storage backend unavailable' } });
      const err = await failure(client.pushBlob('faults/b', blob, digest));
      expect(err.code).toBe('REGISTRY_ERROR');
      expect(err.message).toContain('push blob');
      expect(err.message).toContain(`${proxy.host}/faults/b@${digest}`);
      expect(err.message).toContain('HTTP 503');
      expect(err.message).toContain('storage backend unavailable');
      expect(err.message).toContain(`after ${FAST.attempts} attempts`);
      expect(proxy.count('POST')).toBe(FAST.attempts);
      expect(events.filter((e) => e.type === 'retry')).toHaveLength(FAST.attempts - 1);
    });

    it('a connection refused ends in a clear error after bounded retries', async () => {
      const { freePort } = await import('../helpers/net.ts');
      const dead = new RegistryClient({ registry: `127.0.0.1:${await freePort()}`, retry: { attempts: 2, baseMs: 1, maxMs: 5 } });
      const err = await failure(dead.ping());
      expect(err.code).toBe('REGISTRY_ERROR');
      expect(err.message).toMatch(/ping 127\.0\.0\.1:\d+: GET \/v2\/: connection failed: ECONNREFUSED.*gave up after 2 attempts/);
    });

    it('after a failed pushLayout, a re-run pushes only what is missing, then nothing, and no digest changes', async () => {
      fresh();
      // Every upload of one layer fails: the push stops with an error, others may have landed.
      const victim = image.blobs.find((b) => b.size === 256 * 1024)!;
      proxy.fault({ method: 'PUT', path: /\/blobs\/uploads\//, times: 1000, action: { kind: 'reset', afterBytes: 1024 } });
      const err = await failure(pushLayout(client, image.layoutDir, 'faults/layout', image.index.digest, { concurrency: 1 }));
      expect(err.code).toBe('REGISTRY_ERROR');
      expect(err.message).toMatch(/push blob .*faults\/layout@sha256:[a-f0-9]{64}: .*connection failed/);
      expect(await client.resolve('faults/layout', image.index.digest)).toBeUndefined();

      // Let some blobs through, fail the manifests: a partial state.
      fresh();
      proxy.fault({ method: 'PUT', path: /\/manifests\//, times: 1000, action: { kind: 'status', status: 502 } });
      await failure(pushLayout(client, image.layoutDir, 'faults/layout', image.index.digest));
      const blobsAfterFailure = (await Promise.all(image.blobs.map((b) => client.hasBlob('faults/layout', b.digest)))).filter(Boolean).length;
      expect(blobsAfterFailure).toBe(image.blobs.length);

      fresh();
      const second = await pushLayout(client, image.layoutDir, 'faults/layout', image.index.digest);
      expect(second.digest).toBe(image.index.digest);
      expect(second.blobs.pushed).toBe(0);
      expect(second.blobs.skipped).toBe(image.blobs.length);
      expect(second.manifests.pushed).toBe(3);
      expect(proxy.count('PUT', /\/blobs\//)).toBe(0);
      expect(victim.digest).toMatch(/^sha256:/);

      fresh();
      const third = await pushLayout(client, image.layoutDir, 'faults/layout', image.index.digest);
      expect(third.blobs.pushed + third.manifests.pushed).toBe(0);
      expect(writes(proxy)).toBe(0);
      const fetched = await client.getManifest('faults/layout', image.index.digest);
      expect(Buffer.compare(Buffer.from(fetched.bytes), Buffer.from(image.indexBytes))).toBe(0);
    });

    it('refuses a manifest whose Docker-Content-Digest disagrees with its bytes', async () => {
      fresh();
      const wrong = `sha256:${'0'.repeat(64)}`;
      proxy.fault({ method: 'GET', path: /\/manifests\//, action: { kind: 'status', status: 200, headers: { 'content-type': MediaType.ociIndex, 'docker-content-digest': wrong }, body: new TextDecoder().decode(image.indexBytes) } });
      const err = await failure(client.getManifest('faults/layout', 'anytag'));
      expect(err.code).toBe('DIGEST_MISMATCH');
      expect(err.message).toContain(`Docker-Content-Digest is ${wrong}, expected ${image.index.digest}`);
    });
  });

  describe('auth', () => {
    let bearer: FaultProxy;
    let basic: FaultProxy;
    beforeAll(async () => {
      bearer = await startFaultProxy({ upstream: registry.host, auth: { mode: 'bearer', username: 'stella', password: CANARY_PASSWORD, token: ISSUED_TOKEN } });
      basic = await startFaultProxy({ upstream: registry.host, auth: { mode: 'basic', username: 'stella', password: CANARY_PASSWORD, token: ISSUED_TOKEN } });
    });
    afterAll(async () => {
      await bearer?.stop();
      await basic?.stop();
    });

    it('bearer flow: 401 challenge → token from the realm with Basic credentials → retried; tokens cached per scope', async () => {
      const events: RegistryEvent[] = [];
      const client = new RegistryClient({ registry: bearer.host, credentials: { username: 'stella', password: CANARY_PASSWORD }, retry: FAST, onEvent: (e) => events.push(e) });
      const report = await pushLayout(client, image.layoutDir, 'auth/bearer', image.index.digest);
      expect(report.manifests.pushed).toBe(3);
      expect(await client.resolve('auth/bearer', image.index.digest)).toBe(image.index.digest);
      // One token (asked for pull,push as challenged), reused for every later request of either scope.
      expect(bearer.tokenCalls).toEqual({ granted: 1, refused: 0 });
      expect(bearer.count(undefined, /^\/v2\//) - bearer.requests.filter((r) => r.status === 401).length).toBeGreaterThan(10);
      // The first requests run 3 at a time before any token exists: each sees one challenge; none after.
      const challenged = bearer.requests.map((r, i) => (r.status === 401 ? i : -1)).filter((i) => i >= 0);
      expect(challenged.length).toBeGreaterThanOrEqual(1);
      expect(Math.max(...challenged)).toBeLessThan(3);
      expect(events.filter((e) => e.type === 'auth')).toHaveLength(1);
      expectNoSecrets(JSON.stringify(events), CANARY_PASSWORD, ISSUED_TOKEN);
      // A pull-only scope gets its own token.
      const reader = new RegistryClient({ registry: bearer.host, credentials: { username: 'stella', password: CANARY_PASSWORD } });
      expect((await reader.getManifest('auth/bearer', image.index.digest)).digest).toBe(image.index.digest);
    });

    it('reads credentials from a Docker config.json', async () => {
      const cfg = join(tmp, 'config.json');
      writeFileSync(cfg, JSON.stringify({ auths: { [basic.host]: { auth: Buffer.from(`stella:${CANARY_PASSWORD}`).toString('base64') }, [bearer.host]: { auth: Buffer.from(`stella:${CANARY_PASSWORD}`).toString('base64') } } }));
      expect(await new RegistryClient({ registry: basic.host, dockerConfig: cfg }).ping()).toBe(true);
      expect(await new RegistryClient({ registry: bearer.host, dockerConfig: cfg }).hasBlob('auth/bearer', image.blobs[0]!.digest)).toBe(true);
      // No entry for the host: anonymous, and the registry's 401 becomes REGISTRY_AUTH.
      writeFileSync(cfg, JSON.stringify({ auths: { 'other.example:5000': { auth: Buffer.from(`ci:${CANARY_PASSWORD}`).toString('base64') } } }));
      const err = await failure(new RegistryClient({ registry: basic.host, dockerConfig: cfg, retry: FAST }).ping());
      expect(err.code).toBe('REGISTRY_AUTH');
      expectNoSecrets(visible(err), CANARY_PASSWORD);
      // identitytoken entries are exchanged at the realm (POST, refresh_token grant); our realm refuses it.
      writeFileSync(cfg, JSON.stringify({ auths: { [bearer.host]: { auth: Buffer.from('<token>:').toString('base64'), identitytoken: CANARY_TOKEN } } }));
      const idErr = await failure(new RegistryClient({ registry: bearer.host, dockerConfig: cfg, retry: FAST }).ping());
      expect(idErr.code).toBe('REGISTRY_AUTH');
      expectNoSecrets(visible(idErr), CANARY_TOKEN);
      writeFileSync(cfg, '{ not json ' + CANARY_PASSWORD);
      const bad = (() => {
        try {
          new RegistryClient({ registry: basic.host, dockerConfig: cfg });
          return undefined;
        } catch (e) {
          return e;
        }
      })();
      expect((bad as StellaError).code).toBe('REGISTRY_AUTH');
      expectNoSecrets(visible(bad), CANARY_PASSWORD);
    });

    it('basic auth: works with the right password; a wrong one is REGISTRY_AUTH without the password', async () => {
      const ok = new RegistryClient({ registry: basic.host, credentials: { username: 'stella', password: CANARY_PASSWORD } });
      expect(await ok.hasBlob('auth/bearer', image.blobs[0]!.digest)).toBe(true);
      const wrongPw = `${CANARY_PASSWORD}-wrong`;
      const events: RegistryEvent[] = [];
      const bad = new RegistryClient({ registry: basic.host, credentials: { username: 'stella', password: wrongPw }, retry: FAST, onEvent: (e) => events.push(e) });
      const err = await failure(bad.hasBlob('auth/bearer', image.blobs[0]!.digest));
      expect(err.code).toBe('REGISTRY_AUTH');
      expect(err.message).toContain(`check blob ${basic.host}/auth/bearer@${image.blobs[0]!.digest}`);
      expectNoSecrets(visible(err) + JSON.stringify(events), wrongPw, CANARY_PASSWORD);
    });

    it('canary: a wrong password at the token endpoint (which echoes the Authorization header) never leaks', async () => {
      const wrongPw = `${CANARY_PASSWORD}-x`;
      const events: RegistryEvent[] = [];
      const client = new RegistryClient({ registry: bearer.host, credentials: { username: 'stella', password: wrongPw }, retry: FAST, onEvent: (e) => events.push(e) });
      const err = await failure(pushLayout(client, image.layoutDir, 'auth/denied', image.index.digest));
      expect(err.code).toBe('REGISTRY_AUTH');
      expect(err.message).toMatch(/token endpoint http:\/\/127\.0\.0\.1:\d+\/token refused a token for scope repository:auth\/denied:pull,push \(HTTP 401/);
      // The endpoint's body echoed "Basic <base64(user:password)>": it is shown redacted.
      expect(err.message).toContain(`bad credentials: Basic ${REDACTED}`);
      expectNoSecrets(visible(err) + JSON.stringify(events), wrongPw, CANARY_PASSWORD, ISSUED_TOKEN);
    });

    it('canary: a wrong static token is REGISTRY_AUTH and never shown, even when the server echoes it', async () => {
      const events: RegistryEvent[] = [];
      const client = new RegistryClient({ registry: bearer.host, credentials: { token: CANARY_TOKEN }, retry: FAST, onEvent: (e) => events.push(e) });
      const err = await failure(client.getManifest('auth/bearer', image.index.digest));
      expect(err.code).toBe('REGISTRY_AUTH');
      expect(err.message).toContain('refused the given bearer token');
      expectNoSecrets(visible(err) + JSON.stringify(events), CANARY_TOKEN);
      // The right token (as issued) works as a static credential.
      const good = new RegistryClient({ registry: bearer.host, credentials: { token: ISSUED_TOKEN } });
      expect(await good.hasManifest('auth/bearer', image.index.digest)).toBe(true);
    });

    it('canary: an issued token echoed in an error body after a successful login is redacted', async () => {
      const events: RegistryEvent[] = [];
      const client = new RegistryClient({ registry: bearer.host, credentials: { username: 'stella', password: CANARY_PASSWORD }, retry: FAST, onEvent: (e) => events.push(e) });
      expect(await client.hasManifest('auth/bearer', image.index.digest)).toBe(true);
      bearer.fault({ method: 'GET', path: /\/manifests\//, times: 100, action: { kind: 'status', status: 500, body: `internal error for Bearer ${ISSUED_TOKEN} (user stella:${CANARY_PASSWORD}) token=${ISSUED_TOKEN}` } });
      const err = await failure(client.getManifest('auth/bearer', image.index.digest));
      bearer.clearFaults();
      expect(err.code).toBe('REGISTRY_ERROR');
      expect(err.message).toContain(`internal error for Bearer ${REDACTED}`);
      expectNoSecrets(visible(err) + JSON.stringify(events), CANARY_PASSWORD, ISSUED_TOKEN);
    });

    it('anonymous access to a registry that demands auth is a clear REGISTRY_AUTH', async () => {
      const err = await failure(new RegistryClient({ registry: basic.host, retry: FAST }).ping());
      expect(err.code).toBe('REGISTRY_AUTH');
      expect(err.message).toContain('requires Basic authentication');
      const err2 = await failure(new RegistryClient({ registry: bearer.host, retry: FAST }).getManifest('auth/bearer', image.index.digest));
      expect(err2.code).toBe('REGISTRY_AUTH');
      expect(err2.message).toContain('no credentials were given');
    });
  });
});
