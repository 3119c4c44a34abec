/**
 * The release's caches (ci/src/build/cache.ts: build inputs → image digests; ci/src/release/
 * cache.ts: verified referrers), against a throwaway registry behind a recording proxy, on a
 * scratch copy of the checkout (so one service's source can change):
 *
 *   - a second release with nothing changed is a cache hit: no JavaScript build, no image
 *     assembled, nothing pushed, no blob read (nothing re-verified), only digest checks;
 *   - one service changed: only it is bundled and built again, only its digests change, only
 *     its repository is written to, and only it gets new referrers;
 *   - the registry lost an image and its referrers: it is built, attested and verified again
 *     (same digest: the build is reproducible), the other image is still confirmed;
 *   - the signing key changed: every image is signed and verified again (the cache is keyed
 *     by the trust), nothing rebuilt;
 *   - --no-cache: everything bundled, built and verified again, and (idempotent) nothing pushed.
 */
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { skipUnless } from '../helpers/tools.ts';
import { makeFixtureBase } from '../build/fixtures.ts';
import { release, type ReleaseOptions, type ReleaseRecord } from '../../ci/src/release/pipeline.ts';
import { ATTESTED_CACHE_FILE, BUILD_CACHE_FILE, LAYERS_CACHE_FILE } from '../../ci/src/release/cache.ts';
import { Registries } from '../../ci/src/release/context.ts';
import { verifyImage } from '../../ci/src/release/verify.ts';
import { RegistryClient } from '../../ci/src/registry/index.ts';
import { generateKeyPair, legacySignatureTag } from '../../ci/src/sign/index.ts';
import { COMMIT, SOURCE_DATE_EPOCH, scratchSource } from './fixture.ts';

const NS = 'cache';
const SERVICES = ['api', 'conseiller'];

let reg: TestRegistry;
let proxy: FaultProxy;
let dir: string;
let source: string;
let base: string;
let out: string;
let key = generateKeyPair('');
let first: ReleaseRecord;
let log: string[] = [];

function run(more: Partial<ReleaseOptions> = {}): Promise<ReleaseRecord> {
  log = [];
  return release(
    { source, version: 'edge', services: SERVICES.join(','), registry: proxy.host, namespace: NS, base, key: key.privateKeyPem, keyPassword: '', out, gitCommit: COMMIT, sourceDateEpoch: SOURCE_DATE_EPOCH, supportImages: 'skip', ...more },
    { progress: (l) => log.push(l) },
  ) as Promise<ReleaseRecord>;
}

const step = (r: ReleaseRecord, name: string) => r.steps!.find((s) => s.step === name)!;
/** The images by digest, without their referrers (which a re-attestation changes). */
const digests = (r: ReleaseRecord) => r.images.map(({ referrers: _r, ...i }) => i);
let latest: ReleaseRecord;
const writes = () => proxy.requests.filter((q) => q.method === 'PUT' || q.method === 'PATCH' || q.method === 'POST' || q.method === 'DELETE');
const blobReads = () => proxy.requests.filter((q) => q.method === 'GET' && /\/blobs\/sha256:/.test(q.path));
const client = () => new RegistryClient({ registry: reg.host });

/** Every referrer digest of an image (its index and each platform manifest). */
async function referrersOf(i: ReleaseRecord['images'][number]): Promise<string[]> {
  const repo = `${NS}/stella-${i.service}`;
  const all: string[] = [];
  for (const subject of [i.digest, ...Object.values(i.platforms)]) for (const d of await client().referrers(repo, subject)) all.push(d.digest);
  return all.sort();
}

async function verified(i: ReleaseRecord['images'][number]): Promise<string[]> {
  return (await verifyImage({ images: { images: [] }, registries: new Registries(), trust: { publicKeyPem: key.publicKeyPem } }, i)).problems as string[];
}

beforeAll(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy({ upstream: reg.host });
  dir = mkdtempSync(join(tmpdir(), 'stella-cache-'));
  source = scratchSource(join(dir, 'src'));
  base = `oci:${join(dir, 'base')}@${await makeFixtureBase(join(dir, 'base'))}`;
  out = join(dir, 'dist');
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(skipUnless(['docker-registry'], 'release caches against a throwaway registry'))('release: the build and attestation caches', () => {
  it('a first release builds, attests and verifies everything, and records the caches', async () => {
    first = await run();
    expect(first.images.map((i) => i.service)).toEqual(SERVICES);
    expect(step(first, 'build').did).toMatch(/^2 images × 2 platforms, by digest: 2 built, 0 unchanged/);
    for (const s of ['sbom', 'sign', 'provenance', 'verify']) expect(step(first, s).status, s).toBe('done');
    expect(step(first, 'verify').did).toBe('2 images: signatures, SBOMs, provenance verified by digest');
    for (const f of [BUILD_CACHE_FILE, ATTESTED_CACHE_FILE, LAYERS_CACHE_FILE]) expect(existsSync(join(out, f)), f).toBe(true);
    // Never on the release page.
    expect(readFileSync(join(out, 'checksums.txt'), 'utf8')).not.toContain('.stella-cache');
    // release.json names every image's referrers, per subject (index, each platform), as the registry lists them.
    for (const i of first.images) {
      expect(Object.keys(i.referrers ?? {}).sort(), i.service).toEqual([i.digest, ...Object.values(i.platforms)].sort());
      expect(Object.values(i.referrers!).flat().sort(), i.service).toEqual(await referrersOf(i));
      expect(Object.values(i.referrers!).every((l) => l.length > 0)).toBe(true);
    }
  }, 300_000);

  it('a second release with nothing changed is a cache hit: nothing bundled, built, pushed, signed or re-verified', async () => {
    const page = ['release.json', 'checksums.txt', 'checksums.txt.sigstore.json'].map((f) => [f, readFileSync(join(out, f))] as const);
    proxy.reset();
    const again = await run();
    // The release page is left byte for byte (checksums.txt not re-signed); the run's own steps are in last-run.json.
    for (const [f, bytes] of page) expect(readFileSync(join(out, f)).equals(bytes), f).toBe(true);
    expect(step(again, 'record').did).toMatch(/^release\.json unchanged \(this run: last-run\.json\); .*checksums unchanged \(not re-signed\)$/);
    const lastRun = JSON.parse(readFileSync(join(out, 'last-run.json'), 'utf8')) as { releaseJson: string; steps: { step: string }[]; tags: { action: string }[] };
    expect(lastRun.releaseJson).toBe('unchanged');
    expect(lastRun.steps.map((x) => x.step)).toEqual(again.steps!.map((x) => x.step));
    expect(lastRun.tags.map((t) => t.action)).toEqual(['unchanged', 'unchanged']);
    expect(readFileSync(join(out, 'checksums.txt'), 'utf8')).not.toContain('last-run.json');
    expect(again.images).toEqual(first.images);
    expect(writes().map((q) => `${q.method} ${q.path}`)).toEqual([]);
    // Verifying would read the signed bundles, making SBOMs would read layers: no blob is read at all.
    expect(blobReads().map((q) => q.path)).toEqual([]);
    // What it did read: digest checks (HEAD) and referrer lists (the referrers API, else the `sha256-<hex>` fallback index); no manifest by digest.
    const gets = proxy.requests.filter((q) => q.method === 'GET' && q.path !== '/v2/');
    expect(gets.filter((q) => !/\/(manifests\/sha256-|referrers\/sha256:)[0-9a-f]{64}$/.test(q.path)).map((q) => q.path)).toEqual([]);
    expect(log).toContain('javascript: 2 bundle(s) unchanged (same inputs, bundle as recorded in ' + join(out, BUILD_CACHE_FILE) + '): not rebuilt');
    expect(log.some((l) => /^javascript: \d+ service bundle\(s\) in/.test(l))).toBe(false);
    expect(step(again, 'build').did).toBe('2 images × 2 platforms, by digest: 0 built, 2 unchanged (input cache); 2 with the referrers verified before');
    for (const s of ['sbom', 'sign', 'provenance']) expect([step(again, s).status, step(again, s).did], s).toEqual(['skipped', expect.stringMatching(/^2 image\(s\) unchanged/)]);
    expect(step(again, 'verify')).toMatchObject({ status: 'done', did: '2 images confirmed by digest (verified before; referrers unchanged)' });
    expect(again.tags.map((t) => t.action)).toEqual(['unchanged', 'unchanged']);
  }, 300_000);

  it('one service changed: only it is rebuilt, only its digests change, and only it gets new referrers', async () => {
    const [api, conseiller] = first.images;
    const apiReferrers = await referrersOf(api!);
    appendFileSync(join(source, 'services/src/conseiller/main.ts'), '\n(globalThis as Record<string, unknown>).stellaCacheTest = 1;\n');
    proxy.reset();
    const changed = await run();
    expect(changed.images[0]).toEqual(api);
    expect(changed.images[1]!.digest).not.toBe(conseiller!.digest);
    for (const p of Object.keys(conseiller!.platforms)) expect(changed.images[1]!.platforms[p]).not.toBe(conseiller!.platforms[p]);
    expect(log.some((l) => /^javascript: 1 service bundle\(s\) in/.test(l)), log.join('\n')).toBe(true);
    expect(log.some((l) => l.startsWith('javascript: 1 bundle(s) unchanged'))).toBe(true);
    expect(step(changed, 'build').did).toMatch(/: 1 built, 1 unchanged \(input cache\); 1 with the referrers verified before$/);
    expect(step(changed, 'record').did).toMatch(/^release\.json written; .*checksums signed$/);
    expect((JSON.parse(readFileSync(join(out, 'release.json'), 'utf8')) as ReleaseRecord).images[1]!.digest).toBe(changed.images[1]!.digest);
    expect(step(changed, 'verify').did).toBe('1 images: signatures, SBOMs, provenance verified by digest; 1 images confirmed by digest (verified before; referrers unchanged)');
    // Every write went to the changed service's repository: blobs, manifests, referrers, its tag.
    const written = writes().map((q) => q.path);
    expect(written.length).toBeGreaterThan(0);
    expect(written.filter((p) => !p.startsWith(`/v2/${NS}/stella-conseiller/`))).toEqual([]);
    expect(await referrersOf(api!)).toEqual(apiReferrers);
    expect((await referrersOf(changed.images[1]!)).length).toBeGreaterThan(0);
    expect(await verified(changed.images[1]!)).toEqual([]);
    first = changed;
  }, 300_000);

  it('is safe when the registry lost an image and its referrers: built, attested and verified again', async () => {
    const [api, conseiller] = first.images;
    const c = client();
    const repo = `${NS}/stella-api`;
    for (const subject of [api!.digest, ...Object.values(api!.platforms)]) {
      const fallback = await c.resolve(repo, `sha256-${subject.slice(7)}`);
      if (fallback) await c.deleteManifest(repo, fallback);
    }
    const sig = await c.resolve(repo, legacySignatureTag(api!.digest));
    if (sig) await c.deleteManifest(repo, sig);
    for (const d of [api!.digest, ...Object.values(api!.platforms)]) await c.deleteManifest(repo, d);
    expect(await c.hasManifest(repo, api!.digest)).toBe(false);
    proxy.reset();
    const again = await run();
    expect(digests(again)).toEqual(digests(first));
    // api attested anew (new referrers), conseiller's the same.
    expect(again.images[0]!.referrers).not.toEqual(api!.referrers);
    expect(again.images[1]!.referrers).toEqual(conseiller!.referrers);
    latest = again;
    expect(log.some((l) => l.startsWith(`stella-api: recorded index ${api!.digest} is not in`))).toBe(true);
    expect(step(again, 'build').did).toMatch(/: 1 built, 1 unchanged \(input cache\); 1 with the referrers verified before$/);
    expect(step(again, 'verify').did).toMatch(/^1 images: signatures, SBOMs, provenance verified by digest; 1 images confirmed/);
    expect(proxy.count('PUT', new RegExp(`^/v2/${repo}/manifests/${api!.digest}$`))).toBe(1);
    expect(writes().filter((q) => q.path.startsWith(`/v2/${NS}/stella-conseiller/`))).toEqual([]);
    expect(await verified(api!)).toEqual([]);
    expect(await verified(conseiller!)).toEqual([]);
  }, 300_000);

  it('a new signing key: nothing rebuilt, every image signed, attested and verified again under it', async () => {
    key = generateKeyPair('');
    proxy.reset();
    const again = await run();
    expect(digests(again)).toEqual(digests(first));
    // Signed anew: every image has referrers it did not have.
    for (const [n, i] of again.images.entries()) expect(Object.values(i.referrers!).flat().some((d) => !Object.values(latest.images[n]!.referrers!).flat().includes(d))).toBe(true);
    latest = again;
    expect(step(again, 'build').did).toMatch(/: 0 built, 2 unchanged \(input cache\); 0 with the referrers verified before$/);
    expect(step(again, 'verify').did).toBe('2 images: signatures, SBOMs, provenance verified by digest');
    expect(proxy.count('PUT', /\/manifests\/sha256:/)).toBeGreaterThan(0);
    for (const i of again.images) expect(await verified(i)).toEqual([]);
  }, 300_000);

  it('--no-cache bundles, builds and verifies everything again; being idempotent, it pushes nothing', async () => {
    proxy.reset();
    const again = await run({ noCache: true });
    // Idempotent: the same digests and the same referrers as the run before.
    expect(again.images).toEqual(latest.images);
    expect(log.some((l) => /^javascript: 2 service bundle\(s\) in/.test(l))).toBe(true);
    expect(step(again, 'build').did).toBe('2 images × 2 platforms, by digest (--no-cache)');
    expect(step(again, 'verify').did).toBe('2 images: signatures, SBOMs, provenance verified by digest');
    expect(blobReads().length).toBeGreaterThan(0);
    expect(writes().map((q) => `${q.method} ${q.path}`)).toEqual([]);
    // And the caches are recorded anew: the next run is a hit again.
    proxy.reset();
    const hit = await run();
    expect(step(hit, 'verify').did).toBe('2 images confirmed by digest (verified before; referrers unchanged)');
    expect(writes()).toEqual([]);
  }, 300_000);
});
