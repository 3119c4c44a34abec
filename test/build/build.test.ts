/**
 * The build step against a real throwaway registry, skopeo and BuildKit:
 * two clean builds give identical digests (base from the registry or from an
 * OCI layout); each index lists exactly linux/amd64 and linux/arm64; the app
 * layer is the same blob on both platforms; the config carries what the
 * Dockerfile says; and BuildKit, building the same Dockerfile on the same
 * context and base, produces the same files under /app and the same config.
 *
 * The base here is a tiny fixture (no Node); the real base and the real
 * JavaScript build are exercised by run.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildImages, validateBuildOptions, type BuildDocument, type BuildOptions } from '../../ci/src/build/index.ts';
import { readBuildDocument, writeBuildDocument, validateBuildDocument } from '../../ci/src/build/document.ts';
import { RegistryClient } from '../../ci/src/registry/client.ts';
import { pushLayout } from '../../ci/src/registry/copy.ts';
import { OciLayout } from '../../ci/src/oci/layout.ts';
import { listLayer, type LayerListing } from '../../ci/src/oci/layer.ts';
import { StellaError } from '../../ci/src/errors.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { FIXTURE_EPOCH, makeFixtureBase, makeFixtureContext } from './fixtures.ts';
import { dockerBuildx, dockerEngine, skipUnless } from '../helpers/tools.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const SERVICES = ['api', 'conseiller'] as const;
const VERSION = 'v1.4.0-rc.1';
const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const skipRegistry = skipUnless(['docker-registry'], 'build: reproducible multi-arch images');
const hasSkopeo = !skipUnless(['skopeo'], 'build: skopeo reads the pushed indexes');
const hasDocker = !skipUnless(['docker', dockerEngine(), dockerBuildx()], 'build: BuildKit equivalence');

interface JsonObj {
  [k: string]: unknown;
}

function skopeo(args: string[]): JsonObj {
  return JSON.parse(execFileSync('skopeo', args, { encoding: 'utf8', timeout: 60_000 })) as JsonObj;
}

describe.skipIf(skipRegistry)('build: reproducible multi-arch images (throwaway registry)', () => {
  let reg: TestRegistry;
  let work: string;
  let baseDigest: string;
  let baseLayout: string;
  let first: BuildDocument;
  let second: BuildDocument;
  let client: RegistryClient;
  const lines: string[] = [];

  const opts = (over: Partial<BuildOptions> & { contextDir: string }): BuildOptions & { contextDir: string } => ({
    source: ROOT,
    services: SERVICES,
    version: VERSION,
    gitCommit: COMMIT,
    sourceDateEpoch: FIXTURE_EPOCH,
    base: `${reg.host}/fixture/base@${baseDigest}`,
    progress: (l) => lines.push(l),
    ...over,
  });

  beforeAll(async () => {
    reg = await startRegistry();
    client = new RegistryClient({ registry: reg.host });
    work = mkdtempSync(join(tmpdir(), 'stella-build-test-'));
    baseLayout = join(work, 'base');
    baseDigest = await makeFixtureBase(baseLayout);
    await pushLayout(client, baseLayout, 'fixture/base', baseDigest);

    // Two builds from a clean state each: fresh context, fresh layout, a namespace nothing was pushed to.
    for (const n of [1, 2]) makeFixtureContext(join(work, `ctx${n}`), SERVICES, VERSION, COMMIT);
    first = await buildImages(opts({ contextDir: join(work, 'ctx1'), push: { registry: reg.host, namespace: 'one' }, ociLayout: join(work, 'out1') }));
    // The second reads the same base from the OCI layout instead of the registry.
    second = await buildImages(opts({ contextDir: join(work, 'ctx2'), base: `oci:${baseLayout}@${baseDigest}`, push: { registry: reg.host, namespace: 'two' }, ociLayout: join(work, 'out2') }));
  }, 300_000);

  afterAll(async () => {
    await reg?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('gives identical index and manifest digests on two clean builds', () => {
    expect(first.images.map((i) => i.service)).toEqual([...SERVICES]);
    expect(second.images.map((i) => [i.service, i.digest, i.platforms])).toEqual(first.images.map((i) => [i.service, i.digest, i.platforms]));
    expect(first.images[0]!.repository).toBe(`${reg.host}/one/stella-api`);
    expect(second.images[1]!.repository).toBe(`${reg.host}/two/stella-conseiller`);
    validateBuildDocument(first);
    expect(lines.some((l) => /stella-api: index sha256:[0-9a-f]{64} \[linux\/amd64, linux\/arm64\] pushed to/.test(l))).toBe(true);
  });

  it.skipIf(!hasSkopeo)('pushes by digest only: each index lists exactly linux/amd64 then linux/arm64 (skopeo)', async () => {
    for (const img of first.images) {
      const index = skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${img.repository}@${img.digest}`]);
      expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
      const manifests = index.manifests as { digest: string; platform: { os: string; architecture: string } }[];
      expect(manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`)).toEqual(['linux/amd64', 'linux/arm64']);
      expect(manifests.map((m) => m.digest)).toEqual([img.platforms['linux/amd64'], img.platforms['linux/arm64']]);
    }
    // No tags: tagging is the publish step's.
    expect(await client.listTags('one/stella-api')).toEqual([]);
  });

  it.skipIf(!hasSkopeo)('shares the app layer across platforms and writes the Dockerfile config', () => {
    for (const img of first.images) {
      const ref = (d: string) => `docker://${img.repository}@${d}`;
      const amd = skopeo(['inspect', '--raw', '--tls-verify=false', ref(img.platforms['linux/amd64']!)]);
      const arm = skopeo(['inspect', '--raw', '--tls-verify=false', ref(img.platforms['linux/arm64']!)]);
      const la = amd.layers as { digest: string }[];
      const lb = arm.layers as { digest: string }[];
      expect(la).toHaveLength(2);
      expect(la.at(-1)!.digest).toBe(lb.at(-1)!.digest); // the app layer: identical bytes
      expect(la[0]!.digest).not.toBe(lb[0]!.digest); // the base layers: per platform
      for (const [arch, d] of [['amd64', img.platforms['linux/amd64']!], ['arm64', img.platforms['linux/arm64']!]] as const) {
        const cfg = skopeo(['inspect', '--config', '--raw', '--tls-verify=false', ref(d)]);
        const c = cfg.config as JsonObj;
        expect(cfg.architecture).toBe(arch);
        expect(cfg.created).toBe('2023-11-14T22:13:20Z');
        expect(c.User).toBe('65532:65532');
        expect(c.WorkingDir).toBe('/app');
        expect(c.Entrypoint).toEqual(['/nodejs/bin/node']);
        expect(c.Cmd).toEqual(['/app/main.js']);
        expect(c.StopSignal).toBe('SIGTERM');
        expect(c.Healthcheck).toEqual({ Test: ['CMD', '/nodejs/bin/node', '/app/healthcheck.js'], Interval: 10e9, Timeout: 3e9, StartPeriod: 20e9, Retries: 3 });
        const port = img.service === 'api' ? '8081/tcp' : '8084/tcp';
        expect(c.ExposedPorts).toEqual({ [port]: {} });
        expect(c.Labels).toMatchObject({
          'org.opencontainers.image.title': `stella-${img.service}`,
          'org.opencontainers.image.version': VERSION,
          'org.opencontainers.image.revision': COMMIT,
          'org.opencontainers.image.created': '2023-11-14T22:13:20Z',
          'org.opencontainers.image.source': expect.stringMatching(/^https:\/\//),
          'org.opencontainers.image.licenses': 'Apache-2.0',
          'org.opencontainers.image.vendor': 'StellaOps',
          'io.stellaops.service': img.service,
          'io.stellaops.ports': port,
        });
        const env = c.Env as string[];
        expect(env).toContain('NODE_ENV=production');
        expect(env.includes('STELLA_DISABLE_MERGE=true')).toBe(img.service === 'conseiller');
        // Nothing host-dependent.
        expect(JSON.stringify(cfg)).not.toContain(work);
        expect(JSON.stringify(cfg)).not.toContain(reg.host);
      }
    }
  });

  it('writes the same images into the OCI layout, every blob verified', async () => {
    const layout = await OciLayout.open(join(work, 'out1'));
    for (const img of first.images) {
      const entry = await layout.resolveRef(`stella-${img.service}`);
      expect(entry?.digest).toBe(img.digest);
      const walked = await layout.walk(img.digest);
      expect(walked.images).toHaveLength(2);
      const app = walked.images[0]!.manifest.layers.at(-1)!;
      const listing = await listLayer(await layout.readBlob(app.digest));
      expect(listing.map((e) => `${e.name} ${e.mode.toString(8)} ${e.uid}:${e.gid} ${e.mtime}`)).toEqual([
        `app/ 755 0:0 ${FIXTURE_EPOCH}`,
        `app/assets/ 755 0:0 ${FIXTURE_EPOCH}`,
        `app/assets/seed.json 644 0:0 ${FIXTURE_EPOCH}`,
        `app/build-info.json 644 0:0 ${FIXTURE_EPOCH}`,
        `app/healthcheck.js 644 0:0 ${FIXTURE_EPOCH}`,
        `app/main.js 644 0:0 ${FIXTURE_EPOCH}`,
      ]);
      expect(listing.every((e) => e.uname === undefined && e.gname === undefined)).toBe(true);
    }
  });

  it('round-trips the build document through writeBuildDocument/readBuildDocument', async () => {
    const file = join(work, 'build.json');
    await writeBuildDocument(file, first);
    expect(await readBuildDocument(file)).toEqual(first);
    expect(() => validateBuildDocument({ images: [{ ...first.images[0], digest: 'sha256:../../x' }] })).toThrow(/images\[0\]\.digest/);
    expect(() => validateBuildDocument({ images: [], extra: 1 })).toThrow(/field "extra"/);
  });

  it('rejects contradictory or unsafe options before any work', async () => {
    const ctx = join(work, 'never-used');
    const bad: [Partial<BuildOptions>, RegExp][] = [
      [{ push: undefined, ociLayout: undefined }, /nothing to write/],
      [{ base: `${'127.0.0.1:1'}/fixture/base:latest`, ociLayout: join(work, 'x') }, /pinned by digest, never a tag/],
      [{ base: 'oci:/nonexistent@sha256:' + 'a'.repeat(64), ociLayout: join(work, 'x') }, /not an OCI layout/],
      [{ platforms: ['linux/amd64', 'linux/amd64'], ociLayout: join(work, 'x') }, /lists a platform twice/],
      [{ platforms: ['windows/amd64'], ociLayout: join(work, 'x') }, /only linux/],
      [{ services: ['api', 'nope'], ociLayout: join(work, 'x') }, /unknown service "nope"/],
      [{ services: ['api', 'api'], ociLayout: join(work, 'x') }, /listed twice/],
      [{ gitCommit: 'main', ociLayout: join(work, 'x') }, /gitCommit "main" is not a git commit/],
      [{ sourceDateEpoch: 1.5, ociLayout: join(work, 'x') }, /sourceDateEpoch/],
      [{ push: { registry: 'http://127.0.0.1:5000', namespace: 'x' } }, /not host\[:port\]/],
      [{ push: { registry: '127.0.0.1:5000', namespace: 'Bad Name' } }, /not a repository name/],
    ];
    for (const [over, re] of bad) {
      const o = { ...opts({ contextDir: ctx }), ...over };
      expect(() => validateBuildOptions(o)).toThrow(re);
      await expect(buildImages(o)).rejects.toThrow(re);
    }
    expect(existsSync(join(work, 'x'))).toBe(false);
    expect(existsSync(ctx)).toBe(false);
  });

  it('fails clearly when the base lacks a requested platform', async () => {
    const o = opts({ contextDir: join(work, 'ctx1'), platforms: ['linux/amd64', 'linux/riscv64'], ociLayout: join(work, 'out-riscv') });
    const err = await buildImages(o).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StellaError);
    expect((err as StellaError).code).toBe('NOT_FOUND');
    expect((err as StellaError).message).toMatch(/has no linux\/riscv64 image \(it has: linux\/amd64, linux\/arm64\)/);
  });

  it('builds exactly the requested platforms, in the requested order', async () => {
    const doc = await buildImages(opts({ contextDir: join(work, 'ctx1'), services: ['api'], platforms: ['linux/arm64', 'linux/amd64'], ociLayout: join(work, 'out-order') }));
    expect(Object.keys(doc.images[0]!.platforms)).toEqual(['linux/arm64', 'linux/amd64']);
    // Same per-platform manifests as the default order; a different index.
    expect(doc.images[0]!.platforms).toEqual(first.images[0]!.platforms);
    expect(doc.images[0]!.digest).not.toBe(first.images[0]!.digest);
    const single = await buildImages(opts({ contextDir: join(work, 'ctx1'), services: ['api'], platforms: ['linux/arm64'], ociLayout: join(work, 'out-single') }));
    expect(Object.keys(single.images[0]!.platforms)).toEqual(['linux/arm64']);
  });

  describe.skipIf(!hasDocker)('BuildKit equivalence (docker buildx, docker driver, one platform per build)', () => {
    const files = (listing: readonly LayerListing[]) => listing.filter((e) => e.name.startsWith('app/'));
    const key = (e: LayerListing) => `${e.type} ${e.name.replace(/\/$/, '')} ${(e.mode & 0o7777).toString(8)} ${e.uid}:${e.gid} ${e.sha256 ?? ''} ${e.linkname ?? ''}`;

    it.each(['api', 'conseiller'])('stella-%s: same files under /app and the same config as BuildKit', async (service) => {
      const img = first.images.find((i) => i.service === service)!;
      const tag = `stella-build-test-${service}:${process.pid}`;
      const out = join(work, `bk-${service}`);
      try {
        execFileSync('docker', [
          'buildx', 'build', '--builder', 'default', '--platform', 'linux/amd64',
          '-f', join(ROOT, `docker/stella-${service}.Dockerfile`),
          '--build-arg', `BASE_IMAGE=${reg.host}/fixture/base@${baseDigest}`,
          '--build-arg', `VERSION=${VERSION}`, '--build-arg', `GIT_COMMIT=${COMMIT}`, '--build-arg', 'BUILD_DATE=2023-11-14T22:13:20Z',
          '--load', '-t', tag, join(work, 'ctx1'),
        ], { stdio: 'pipe', timeout: 180_000 });
        execFileSync('mkdir', ['-p', out]);
        execFileSync('sh', ['-c', 'docker save "$1" | tar -x -C "$2"', 'sh', tag, out], { timeout: 120_000 });
      } finally {
        spawnSync('docker', ['rmi', '-f', tag]);
      }
      const saved = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { Config: string; Layers: string[] }[];
      const bkConfig = JSON.parse(readFileSync(join(out, saved[0]!.Config), 'utf8')) as { architecture: string; config: JsonObj };
      // BuildKit's files under /app: the layers applied in order (later entries win).
      const bkFiles = new Map<string, LayerListing>();
      for (const l of saved[0]!.Layers) for (const e of files(await listLayer(readFileSync(join(out, l))))) bkFiles.set(e.name.replace(/\/$/, ''), e);

      const layout = await OciLayout.open(join(work, 'out1'));
      const ours = await layout.walk(img.platforms['linux/amd64']!);
      const image = ours.images[0]!;
      const ourFiles = new Map<string, LayerListing>();
      for (const l of image.manifest.layers) for (const e of files(await listLayer(await layout.readBlob(l.digest)))) ourFiles.set(e.name.replace(/\/$/, ''), e);

      expect([...ourFiles.values()].map(key).sort()).toEqual([...bkFiles.values()].map(key).sort());
      expect(ourFiles.size).toBeGreaterThan(4);

      const ourConfig = (image.config as { architecture: string; config: JsonObj });
      expect(ourConfig.architecture).toBe(bkConfig.architecture);
      for (const field of ['Env', 'Entrypoint', 'Cmd', 'User', 'WorkingDir', 'ExposedPorts', 'Labels', 'Healthcheck', 'StopSignal']) {
        expect({ field, value: ourConfig.config[field] }).toEqual({ field, value: bkConfig.config[field] });
      }
    }, 300_000);
  });
});
