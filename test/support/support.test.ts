/**
 * The support images (ci/src/support): built from locked Debian packages and Go
 * modules for linux/amd64 and linux/arm64, pushed by digest to a registry of the
 * test's own; exactly both platforms (our reader and skopeo); bit-reproducible;
 * each real server starts from its image under `docker run --read-only --user
 * <uid> --cap-drop ALL` with only its volume writable, and answers; arm64 runs
 * under qemu; SPDX 2.3 valid; the lock is what the step wrote; resolve mode
 * against a local registry playing "upstream". NATS, SeaweedFS, the collector and nginx carry
 * stella-probe (tools/probe): their image health checks turn healthy under Docker, and the probe
 * fails on a target that does not answer. nginx (the Compose tls profile's sidecar) runs as 101.
 *
 * One build per file (beforeAll). Inputs and Go binaries are cached under
 * ${STELLA_CACHE:-/var/tmp/stella-cache}/support and /var/cache/stella-tools:
 * the first run on a fresh host downloads .debs and compiles SeaweedFS and the
 * collector (long, under nice with -p 1); later runs compile nothing.
 */
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { buildSupportImages, resolveSupportImages, parseImageReference, readSupportLock, RECIPES, parseGoVersionM, SUPPORT_LOCK_FILE, SUPPORT_IMAGE_NAMES, upstreamOf, type BuildSupportImagesResult, type SupportImageName } from '../../ci/src/support/index.ts';
import { catalog } from '../../ci/src/catalog/index.ts';
import { SUPPORT_NAMES } from '../../ci/src/catalog/types.ts';
import { OciLayout } from '../../ci/src/oci/layout.ts';
import { MediaType, PLATFORMS, type ImageIndex, type ImageManifest } from '../../ci/src/oci/types.ts';
import { RegistryClient, pushLayout } from '../../ci/src/registry/index.ts';
import { spdxReport } from '../../ci/src/sbom/validate.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { freePort, waitFor } from '../helpers/net.ts';
import { arm64Emulation, dockerEngine, requireTool, skipUnless } from '../helpers/tools.ts';
import { s3Fetch } from './sigv4.ts';

/** The support images' default epoch (they do not depend on the commit): the committed lock was built with it. */
const EPOCH = 0;
const NAMESPACE = 'stellaops';
const skip = skipUnless(['docker-registry', 'skopeo', 'dpkg-deb', 'apt-get', 'go', dockerEngine()], 'support images');
const arm64Skip = skip || skipUnless([arm64Emulation()], 'support images on arm64 (qemu)');

let work: string;
let registry: TestRegistry;
let first: BuildSupportImagesResult;
let second: BuildSupportImagesResult;
let firstSeconds = 0;
let secondSeconds = 0;
const containers: string[] = [];
const volumes: string[] = [];

function docker(args: readonly string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): string {
  const r = spawnSync('docker', args, { encoding: 'utf8', timeout: opts.timeoutMs ?? 300_000 });
  if (r.status !== 0 && !opts.allowFail) throw new Error(`docker ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return (r.stdout ?? '').trim();
}

function ref(name: SupportImageName, digest?: string): string {
  const img = first.images.find((i) => i.name === name)!;
  return `${img.repository}@${digest ?? img.digest}`;
}

/** Runs the image as the tests require: read-only rootfs, its uid, no capabilities, only the volume writable. */
async function runServer(name: SupportImageName, o: { ports: readonly number[]; env?: Record<string, string>; args?: readonly string[]; platform?: 'linux/amd64' | 'linux/arm64' }): Promise<{ id: string; port: (p: number) => number; volume: string }> {
  const recipe = RECIPES[name];
  const platform = o.platform ?? 'linux/amd64';
  const image = ref(name, first.images.find((i) => i.name === name)!.platforms[platform]);
  docker(['pull', '-q', image]);
  const volume = `stella-support-test-${name}-${randomBytes(4).toString('hex')}`;
  docker(['volume', 'create', volume]);
  volumes.push(volume);
  const mapping = new Map<number, number>();
  const args = ['run', '-d', '--platform', platform, '--read-only', '--user', `${recipe.user.uid}:${recipe.user.uid}`, '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', '-v', `${volume}:${recipe.volume}`];
  // A declared scratch volume (SeaweedFS's /tmp) gets a tmpfs: ephemeral, nothing persists there.
  if (recipe.scratch) args.push('--tmpfs', `${recipe.scratch.path}:rw,mode=1777,size=16m`);
  for (const p of o.ports) {
    const hp = await freePort();
    mapping.set(p, hp);
    args.push('-p', `127.0.0.1:${hp}:${p}`);
  }
  for (const [k, v] of Object.entries(o.env ?? {})) args.push('-e', `${k}=${v}`);
  const id = docker([...args, image, ...(o.args ?? [])]);
  containers.push(id);
  return { id, port: (p) => mapping.get(p)!, volume };
}

function logsOf(id: string): string {
  const r = spawnSync('docker', ['logs', '--tail', '40', id], { encoding: 'utf8' });
  return `${r.stdout}${r.stderr}`;
}

async function waitUntil(what: string, id: string, probe: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  try {
    await waitFor(what, async () => probe().catch(() => false), timeoutMs, 500);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n--- container logs ---\n${logsOf(id)}`);
  }
}

describe.skipIf(skip)('support images', () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'stella-support-'));
    registry = await startRegistry();
    let t0 = performance.now();
    first = await buildSupportImages({
      push: { registry: registry.host, namespace: NAMESPACE },
      ociLayout: join(work, 'layout-1'),
      sbomDir: join(work, 'sbom'),
      lockFile: join(work, 'support-images.lock.json'),
      sourceDateEpoch: EPOCH,
      progress: (l) => console.log(`[support] ${l}`),
    });
    firstSeconds = (performance.now() - t0) / 1000;
    t0 = performance.now();
    second = await buildSupportImages({ ociLayout: join(work, 'layout-2'), lockFile: false, sourceDateEpoch: EPOCH });
    secondSeconds = (performance.now() - t0) / 1000;
    console.log(`[support] first build ${firstSeconds.toFixed(1)}s, second build ${secondSeconds.toFixed(1)}s`);
  }, 4 * 3600_000);

  afterAll(async () => {
    for (const c of containers) docker(['rm', '-f', '-v', c], { allowFail: true });
    for (const v of volumes) docker(['volume', 'rm', '-f', v], { allowFail: true });
    await registry?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('builds all seven (the catalog five in catalog order, then nginx and the registry), and a warm second build compiles nothing', () => {
    expect(first.images.map((i) => i.name)).toEqual([...SUPPORT_IMAGE_NAMES]);
    expect(SUPPORT_IMAGE_NAMES).toEqual([...SUPPORT_NAMES, 'nginx', 'registry']);
    expect(second.images.flatMap((i) => i.compiled)).toEqual([]);
  });

  it('is bit-reproducible: two builds give the same index and platform digests', () => {
    for (const img of first.images) {
      const again = second.images.find((i) => i.name === img.name)!;
      expect(again.digest, img.name).toBe(img.digest);
      expect(again.platforms, img.name).toEqual(img.platforms);
    }
  });

  it('each index has exactly linux/amd64 and linux/arm64 (our reader and skopeo), pushed by digest only', async () => {
    const skopeo = requireTool('skopeo');
    const client = new RegistryClient({ registry: registry.host });
    for (const img of first.images) {
      const raw = execFileSync(skopeo, ['inspect', '--raw', '--tls-verify=false', `docker://${img.repository}@${img.digest}`], { encoding: 'utf8' });
      const index = JSON.parse(raw) as ImageIndex;
      expect(index.mediaType).toBe(MediaType.ociIndex);
      expect(index.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`)).toEqual([...PLATFORMS]);
      expect(index.manifests.map((m) => m.digest)).toEqual(PLATFORMS.map((p) => img.platforms[p]));
      const fetched = await client.getManifest(`${NAMESPACE}/${RECIPES[img.name].image}`, img.digest);
      expect(fetched.digest).toBe(img.digest);
      expect(await client.listTags(`${NAMESPACE}/${RECIPES[img.name].image}`).catch(() => [])).toEqual([]);
      // skopeo reads each platform image too (config, layer) — and the config is the non-root contract.
      for (const p of PLATFORMS) {
        const cfg = JSON.parse(execFileSync(skopeo, ['inspect', '--config', '--raw', '--tls-verify=false', `docker://${img.repository}@${img.platforms[p]}`], { encoding: 'utf8' })) as { architecture: string; config: { User: string; Volumes: Record<string, unknown>; Entrypoint: string[]; Labels: Record<string, string> } };
        const r = RECIPES[img.name];
        expect(cfg.architecture).toBe(p.split('/')[1]);
        expect(cfg.config.User).toBe(`${r.user.uid}:${r.user.uid}`);
        expect(Object.keys(cfg.config.Volumes)).toEqual([r.volume, ...(r.scratch ? [r.scratch.path] : [])]);
        expect(cfg.config.Entrypoint).toEqual(r.entrypoint);
        expect(cfg.config.Labels['org.opencontainers.image.source']).toMatch(/^https:\/\//);
        expect(cfg.config.Labels['dev.stellaops.support.equivalent-of']).toBe(upstreamOf(img.name));
        expect(cfg.config.Labels['dev.stellaops.support.shell']).toBe(r.shell ?? 'none');
      }
    }
  });

  it('the image layers hold fixed mtimes and owners; only the volume (and /tmp) belong to the user', async () => {
    const layout = await OciLayout.open(first.layout);
    const { listLayer } = await import('../../ci/src/oci/layer.ts');
    for (const img of first.images.filter((i) => i.name === 'redis' || i.name === 'queue')) {
      const index = await layout.readImageIndex(img.digest);
      const manifest: ImageManifest = await layout.readManifest(index.manifests[0]!.digest);
      const entries = await listLayer(await layout.readBlob(manifest.layers[0]!.digest));
      const r = RECIPES[img.name];
      const owned = entries.filter((e) => e.uid !== 0 || e.gid !== 0).map((e) => e.name.replace(/\/$/, ''));
      expect(owned.every((p) => p === r.volume.slice(1) || p === r.user.home.slice(1)), owned.join(',')).toBe(true);
      expect(new Set(entries.map((e) => e.mtime))).toEqual(new Set([EPOCH]));
      expect(entries.some((e) => /^(usr\/)?bin\/(ba|da)?sh$/.test(e.name))).toBe(false);
    }
  });

  it('PostgreSQL runs initdb on an empty volume and answers pg_isready and psql (amd64)', async () => {
    const pw = `pw-${randomBytes(6).toString('hex')}`;
    const s = await runServer('postgres', { ports: [5432], env: { POSTGRES_PASSWORD: pw, POSTGRES_DB: 'stella' } });
    await waitUntil('pg_isready', s.id, async () => spawnSync('docker', ['exec', s.id, 'pg_isready', '-h', '127.0.0.1', '-q']).status === 0, 90_000);
    const out = docker(['exec', '-e', `PGPASSWORD=${pw}`, s.id, 'psql', '-h', '127.0.0.1', '-U', 'postgres', '-d', 'stella', '-tAc', 'create table t(x int); insert into t values (42); select x from t; select version();']);
    expect(out).toContain('42');
    expect(out).toMatch(/PostgreSQL 15\.\d+ \(Debian/);
    const bad = spawnSync('docker', ['exec', '-e', 'PGPASSWORD=wrong', s.id, 'psql', '-h', '127.0.0.1', '-U', 'postgres', '-d', 'stella', '-tAc', 'select 1'], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/password authentication failed/);
    // The root filesystem is read-only: nothing but the volume is writable.
    const ro = spawnSync('docker', ['exec', s.id, 'sh', '-c', 'echo x > /etc/x'], { encoding: 'utf8' });
    expect(ro.stderr).toMatch(/Read-only file system/);
    expect(docker(['exec', s.id, 'sh', '-c', 'test -s "$PGDATA/PG_VERSION" && echo ok'])).toBe('ok');
  });

  it('Redis answers PING with its password (amd64)', async () => {
    const s = await runServer('redis', { ports: [6379], args: ['--requirepass', 'redis-pw'] });
    await waitUntil('redis PING', s.id, async () => docker(['exec', s.id, 'redis-cli', '-a', 'redis-pw', '--no-auth-warning', 'ping'], { allowFail: true }) === 'PONG');
    expect(docker(['exec', s.id, 'redis-cli', '--no-auth-warning', 'ping'], { allowFail: true })).toMatch(/NOAUTH/);
    expect(docker(['exec', s.id, 'redis-cli', '-a', 'redis-pw', '--no-auth-warning', 'set', 'k', 'v'])).toBe('OK');
  });

  it('NATS runs with JetStream storing under its volume (amd64)', async () => {
    const s = await runServer('queue', { ports: [4222, 8222] });
    let jsz: { config?: { store_dir?: string }; disabled?: boolean } = {};
    await waitUntil('NATS /jsz', s.id, async () => {
      const r = await fetch(`http://127.0.0.1:${s.port(8222)}/jsz`);
      jsz = (await r.json()) as typeof jsz;
      return r.ok;
    });
    expect(jsz.disabled).not.toBe(true);
    expect(jsz.config?.store_dir).toBe('/data/jetstream');
    const varz = (await (await fetch(`http://127.0.0.1:${s.port(8222)}/varz`)).json()) as { jetstream?: { config?: unknown } ; version: string };
    expect(varz.jetstream?.config).toBeTruthy();
    expect(varz.version).toMatch(/^2\.9\./);
  });

  it('the object store (SeaweedFS S3 gateway) stores and returns an object with SigV4 credentials, and refuses a wrong secret (amd64)', async () => {
    const creds = { accessKeyId: 'stellaadmin', secretAccessKey: `secret-${randomBytes(8).toString('hex')}` };
    const s = await runServer('object-store', { ports: [9000], env: { AWS_ACCESS_KEY_ID: creds.accessKeyId, AWS_SECRET_ACCESS_KEY: creds.secretAccessKey } });
    const endpoint = `http://127.0.0.1:${s.port(9000)}`;
    await waitUntil('S3 bucket create', s.id, async () => (await s3Fetch(endpoint, 'PUT', '/stella-test', creds)).ok, 120_000);
    const body = new TextEncoder().encode(`hello from the support test ${randomBytes(4).toString('hex')}`);
    let put: Response | undefined;
    await waitUntil('S3 PUT object', s.id, async () => {
      put = await s3Fetch(endpoint, 'PUT', '/stella-test/dir/object.txt', creds, body);
      return put.ok;
    }, 60_000);
    const got = await s3Fetch(endpoint, 'GET', '/stella-test/dir/object.txt', creds);
    expect(got.status).toBe(200);
    expect(new Uint8Array(await got.arrayBuffer())).toEqual(body);
    const denied = await s3Fetch(endpoint, 'GET', '/stella-test/dir/object.txt', { ...creds, secretAccessKey: 'wrong' });
    expect(denied.status).toBe(403);
    const anonymous = await fetch(`${endpoint}/stella-test/dir/object.txt`);
    expect(anonymous.status).toBe(403);
  });

  it('the collector receives an OTLP/HTTP trace and writes it through the file exporter (amd64)', async () => {
    const s = await runServer('otel-collector', { ports: [4318, 13133] });
    await waitUntil('collector health', s.id, async () => (await fetch(`http://127.0.0.1:${s.port(13133)}/`)).ok);
    const traceId = randomBytes(16).toString('hex');
    const now = BigInt(Date.now()) * 1_000_000n;
    const payload = {
      resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'stella-support-test' } }] }, scopeSpans: [{ scope: { name: 'support.test' }, spans: [{ traceId, spanId: randomBytes(8).toString('hex'), name: 'support-test-span', kind: 1, startTimeUnixNano: String(now), endTimeUnixNano: String(now + 1_000_000n) }] }] }],
    };
    const r = await fetch(`http://127.0.0.1:${s.port(4318)}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload) });
    expect(r.status).toBe(200);
    const out = join(work, 'traces.jsonl');
    await waitUntil('trace in traces.jsonl', s.id, async () => {
      rmSync(out, { force: true });
      if (spawnSync('docker', ['cp', `${s.id}:/var/lib/otelcol/traces.jsonl`, out]).status !== 0) return false;
      return readFileSync(out, 'utf8').includes(traceId);
    }, 30_000);
    expect(readFileSync(out, 'utf8')).toContain('support-test-span');
  });

  /** The container's Docker health status, polled until it is `healthy` (the image's own HEALTHCHECK). */
  async function healthy(id: string, timeoutMs = 90_000): Promise<void> {
    await waitUntil('image health check healthy', id, async () => docker(['inspect', '--format', '{{if .State.Health}}{{.State.Health.Status}}{{end}}', id]) === 'healthy', timeoutMs);
  }

  it('NATS, SeaweedFS and the collector turn healthy by their image health check (stella-probe), which fails on a silent target (amd64)', async () => {
    const started = [
      await runServer('queue', { ports: [] }),
      await runServer('object-store', { ports: [], env: { AWS_ACCESS_KEY_ID: 'probe', AWS_SECRET_ACCESS_KEY: 'probe-secret-key' } }),
      await runServer('otel-collector', { ports: [] }),
    ];
    for (const s of started) await healthy(s.id, 150_000);
    for (const name of ['queue', 'object-store', 'otel-collector'] as const) {
      const cfg = JSON.parse(docker(['inspect', '--format', '{{json .Config.Healthcheck.Test}}', started[['queue', 'object-store', 'otel-collector'].indexOf(name)]!.id])) as string[];
      expect(cfg, name).toEqual([...RECIPES[name].healthcheck!]);
      expect(cfg[1]).toBe('/usr/bin/stella-probe');
    }
    // A real probe: a port nothing listens on, and a 404, fail with a message; tcp:// connects.
    const q = started[0]!.id;
    const silent = spawnSync('docker', ['exec', q, '/usr/bin/stella-probe', '-timeout', '2s', 'http://127.0.0.1:1/'], { encoding: 'utf8' });
    expect(silent.status).toBe(1);
    expect(silent.stderr).toMatch(/stella-probe: http:\/\/127\.0\.0\.1:1\/: .*connection refused/);
    const notFound = spawnSync('docker', ['exec', q, '/usr/bin/stella-probe', 'http://127.0.0.1:8222/no-such-page'], { encoding: 'utf8' });
    expect(notFound.status).toBe(1);
    expect(notFound.stderr).toMatch(/HTTP 404/);
    expect(spawnSync('docker', ['exec', q, '/usr/bin/stella-probe', 'tcp://127.0.0.1:4222']).status).toBe(0);
    expect(spawnSync('docker', ['exec', q, '/usr/bin/stella-probe']).status).toBe(2);
  }, 400_000);

  it('nginx (from Debian\'s nginx) runs as 101 on a read-only root, serves, and turns healthy (amd64)', async () => {
    const s = await runServer('nginx', { ports: [8080] });
    await healthy(s.id);
    const r = await fetch(`http://127.0.0.1:${s.port(8080)}/`);
    expect(r.status).toBe(200);
    expect(await r.text()).toMatch(/nginx/i);
    expect(r.headers.get('server')).toBe('nginx');
    expect(spawnSync('docker', ['exec', s.id, '/usr/sbin/nginx', '-v'], { encoding: 'utf8' }).stderr).toMatch(/nginx\/1\.22\.1/);
    // Every process of the container (master and worker) runs as uid 101.
    const procs = docker(['top', s.id, '-o', 'pid,uid,comm']).split('\n').slice(1);
    expect(procs.length).toBeGreaterThanOrEqual(2);
    for (const l of procs) expect(l.trim().split(/\s+/)[1], l).toBe('101');
    // The TLS module is there (the tls profile needs it).
    expect(spawnSync('docker', ['exec', s.id, '/usr/sbin/nginx', '-V'], { encoding: 'utf8' }).stderr).toMatch(/--with-http_ssl_module/);
  }, 200_000);

  it.skipIf(arm64Skip)('arm64 under qemu: Redis (Debian) answers PING and the collector (Go) reports healthy', async () => {
    const rd = await runServer('redis', { ports: [6379], platform: 'linux/arm64' });
    expect(docker(['inspect', '--format', '{{.Architecture}}', ref('redis', first.images.find((i) => i.name === 'redis')!.platforms['linux/arm64'])])).toBe('arm64');
    await waitUntil('redis arm64 PING', rd.id, async () => docker(['exec', rd.id, 'redis-cli', 'ping'], { allowFail: true }) === 'PONG', 120_000);
    const oc = await runServer('otel-collector', { ports: [13133], platform: 'linux/arm64' });
    await waitUntil('collector arm64 health', oc.id, async () => (await fetch(`http://127.0.0.1:${oc.port(13133)}/`)).ok, 180_000);
  }, 400_000);

  it('writes SPDX 2.3 SBOMs (schema-valid) per platform and per index, with the Debian packages and the Go modules', () => {
    for (const img of first.images) {
      const dir = join(work, 'sbom', img.name);
      expect(readdirSync(dir).sort()).toEqual(['index.spdx.json', 'linux-amd64.spdx.json', 'linux-arm64.spdx.json']);
      for (const f of readdirSync(dir)) {
        const doc = JSON.parse(readFileSync(join(dir, f), 'utf8'));
        const report = spdxReport(doc);
        expect(report.schema.checked, `${img.name}/${f}: ${JSON.stringify(report.schema)}`).toBe(true);
        expect(report.problems, `${img.name}/${f}`).toEqual([]);
        expect(doc.spdxVersion).toBe('SPDX-2.3');
      }
      const amd = JSON.parse(readFileSync(join(dir, 'linux-amd64.spdx.json'), 'utf8')) as { packages: { name: string; versionInfo?: string; externalRefs?: { referenceLocator: string }[] }[] };
      const purls = amd.packages.flatMap((p) => p.externalRefs?.map((r) => r.referenceLocator) ?? []);
      expect(purls.some((p) => p.startsWith('pkg:deb/debian/base-files@'))).toBe(true);
      if (img.name === 'postgres') expect(purls.some((p) => p.startsWith('pkg:deb/debian/postgresql-15@'))).toBe(true);
      if (img.name === 'object-store') {
        expect(purls.some((p) => p.startsWith('pkg:golang/github.com/seaweedfs/seaweedfs@'))).toBe(true);
        expect(amd.packages.length).toBeGreaterThan(100);
      }
      if (img.name === 'otel-collector') expect(purls).toContain('pkg:golang/go.opentelemetry.io/collector/receiver/otlpreceiver@v0.165.0');
      // stella-probe is listed where it is installed.
      expect(purls.includes('pkg:golang/stellaops.dev/tools/probe@v1.0.0'), img.name).toBe(RECIPES[img.name].probe === true);
      if (img.name === 'nginx') expect(purls.some((p) => p.startsWith('pkg:deb/debian/nginx@'))).toBe(true);
    }
  });

  it('the lock file is what the step wrote: upstream, repository, index and platform digests, version', async () => {
    const lock = await readSupportLock(join(work, 'support-images.lock.json'));
    expect(lock).toEqual(first.lock);
    expect(lock.generatedBy).toMatch(/support-images/);
    expect(lock.mode).toBe('built');
    for (const img of first.images) {
      const e = lock.images[img.name]!;
      expect(e.upstream).toBe(upstreamOf(img.name));
      expect(e.repository).toBe(`${registry.host}/${NAMESPACE}/${RECIPES[img.name].image}`);
      expect(e.digest).toBe(img.digest);
      expect(e.platforms).toEqual(img.platforms);
      expect(e.version).toBeTruthy();
    }
    expect(lock.images.postgres!.version).toMatch(/^15\./);
    // The committed deploy/support-images.lock.json pins exactly what this build produced (same inputs, same epoch).
    const committed = await readSupportLock(SUPPORT_LOCK_FILE);
    expect(committed.generatedBy).toBe(lock.generatedBy);
    expect(committed.sourceDateEpoch).toBe(EPOCH);
    for (const img of first.images) {
      expect(committed.images[img.name]?.digest, `${img.name} in ${SUPPORT_LOCK_FILE} (rerun: npm run -s stella-release -- support-images)`).toBe(img.digest);
      expect(committed.images[img.name]?.platforms).toEqual(img.platforms);
    }
    expect(lock.images['object-store']!.upstream).toMatch(/^docker\.io\/chrislusf\/seaweedfs:/);
  });

  it('resolve mode pins the upstream references to their index digests (a local registry plays upstream)', async () => {
    const upstream = await startRegistry();
    // Resolve mode defaults to the catalog's five (nginx only when named).
    const catalogImages = first.images.filter((i) => (SUPPORT_NAMES as readonly string[]).includes(i.name));
    try {
      const client = new RegistryClient({ registry: upstream.host });
      for (const img of catalogImages) {
        const u = parseImageReference(catalog.support.find((s) => s.name === img.name)!.upstreamImage);
        await pushLayout(client, first.layout, u.repository, img.digest);
        const bytes = await new OciLayout(first.layout).readBlob(img.digest);
        await client.putManifest(u.repository, u.tag!, bytes, MediaType.ociIndex);
      }
      const lockFile = join(work, 'resolved.lock.json');
      const { lock } = await resolveSupportImages({ mirrors: { 'docker.io': upstream.host }, lockFile });
      expect(lock.mode).toBe('resolved');
      expect(JSON.parse(readFileSync(lockFile, 'utf8'))).toEqual(lock);
      expect(Object.keys(lock.images)).toEqual([...SUPPORT_NAMES]);
      for (const img of catalogImages) {
        const e = lock.images[img.name]!;
        expect(e.digest).toBe(img.digest);
        expect(e.platforms).toEqual(img.platforms);
        expect(e.repository).toBe(catalog.support.find((s) => s.name === img.name)!.upstreamImage.replace(/:[^:/]+$/, ''));
      }
      // A single-platform upstream is refused, naming what is missing.
      const pg = first.images.find((i) => i.name === 'postgres')!;
      const single = await new OciLayout(first.layout).readBlob(pg.platforms['linux/amd64']!);
      await client.putManifest('library/postgres', 'amd64-only', single, MediaType.ociManifest);
      await expect(resolveSupportImages({ names: ['postgres'], mirrors: { 'docker.io': upstream.host }, references: { postgres: 'docker.io/library/postgres:amd64-only' }, lockFile: false })).rejects.toThrow(/single-platform manifest/);
      await expect(resolveSupportImages({ names: ['postgres'], mirrors: { 'docker.io': upstream.host }, references: { postgres: 'docker.io/library/postgres:missing' }, lockFile: false })).rejects.toThrow(/404|no such manifest/);
    } finally {
      await upstream.stop();
    }
  });
});

describe('support image references and Go build info', () => {
  it('parses upstream references with Docker Hub defaults', () => {
    expect(parseImageReference('docker.io/library/postgres:15.20-bookworm')).toEqual({ registry: 'docker.io', apiHost: 'registry-1.docker.io', repository: 'library/postgres', tag: '15.20-bookworm' });
    expect(parseImageReference('redis:7')).toMatchObject({ registry: 'docker.io', repository: 'library/redis', tag: '7' });
    expect(parseImageReference('127.0.0.1:5000/a/b@sha256:' + 'a'.repeat(64))).toMatchObject({ registry: '127.0.0.1:5000', repository: 'a/b', digest: 'sha256:' + 'a'.repeat(64) });
    expect(() => parseImageReference('docker.io/Bad/Name:1')).toThrow(/not a repository name/);
  });

  it('parses go version -m (replacements win)', () => {
    const info = parseGoVersionM(['weed: go1.26.8', '\tpath\tgithub.com/seaweedfs/seaweedfs/weed', '\tmod\tgithub.com/seaweedfs/seaweedfs\tv0.0.0-20261109003541-7506e5f91cd6\th1:x=', '\tdep\tgithub.com/tyler-smith/go-bip39\tv1.1.0', '\t=>\tgithub.com/cosmos/go-bip39\tv1.0.0\th1:y=', '\tbuild\tGOARCH=arm64', '\tbuild\tCGO_ENABLED=0', ''].join('\n'), 'weed');
    expect(info.goVersion).toBe('go1.26.8');
    expect(info.deps).toEqual([{ path: 'github.com/cosmos/go-bip39', version: 'v1.0.0', sum: 'h1:y=' }]);
    expect(info.settings).toMatchObject({ GOARCH: 'arm64', CGO_ENABLED: '0' });
  });

  it('the catalog defaults to the same software the images are built from (SeaweedFS, not MinIO)', () => {
    const up = Object.fromEntries(catalog.support.map((s) => [s.name, s.upstreamImage]));
    expect(up['object-store']).toMatch(/^docker\.io\/chrislusf\/seaweedfs:\d+\.\d+$/);
    expect(JSON.stringify(catalog.support)).not.toMatch(/minio/i);
    expect(up.postgres).toMatch(/postgres:15\./);
    expect(up['otel-collector']).toMatch(/:0\.165\.0$/);
  });
});
