/**
 * Every image starts, on BOTH architectures: the real offline Node base
 * (ci/src/base) and the real JavaScript build (services/build.ts), built by
 * `build()` and pushed by digest to a throwaway registry; each of the 11 images
 * is pulled by digest and run with `--read-only --user 65532 --cap-drop ALL`
 * (arm64 under qemu-user, registered by the host setup), answers liveness 200
 * and /version with the build's version and commit, with every dependency
 * down (connection URLs without a default point at a closed port). Containers of one architecture start together; waits are bounded.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build, type BuildDocument } from '../../ci/src/build/index.ts';
import { catalog } from '../../ci/src/catalog/index.ts';
import { RegistryClient } from '../../ci/src/registry/client.ts';
import { pushLayout } from '../../ci/src/registry/copy.ts';
import { readLayerFile } from '../../ci/src/oci/layer.ts';
import { spdxReport, type SpdxDocument } from '../../ci/src/sbom/index.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { arm64Emulation, dockerEngine, requireTool, skipUnless } from '../helpers/tools.ts';
import { freePort, waitFor } from '../helpers/net.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const VERSION = 'v1.4.0-rc.2';
const COMMIT = 'fedcba9876543210fedcba9876543210fedcba98';
const EPOCH = 1700000000;
// Skips (outside CI) with the reason and where it runs; under CI (.ci/run) a missing piece fails.
const skipAll = skipUnless(['docker-registry', 'skopeo', 'docker', dockerEngine()], 'run.test.ts: every image runs on amd64 and arm64');
const skipArm64 = skipAll || skipUnless([arm64Emulation()], 'run.test.ts: linux/arm64 images run emulated');
const SKOPEO = skipAll ? 'skopeo' : requireTool('skopeo');

/** The services refuse to start without these connection URLs (no default); a closed port stands for a dependency that is down. */
const DOWN_DEPENDENCY: Record<string, string> = {
  postgres: 'STELLA_DATABASE_URL=postgres://stella:unused@127.0.0.1:9/stella',
  redis: 'STELLA_REDIS_URL=redis://127.0.0.1:9/0',
};

function docker(args: string[], timeout = 120_000): string {
  return execFileSync('docker', args, { encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

describe.skipIf(skipAll)('every image runs on amd64 and arm64 (real base, real services)', () => {
  let reg: TestRegistry;
  let work: string;
  let doc: BuildDocument;
  const containers: string[] = [];
  const images = new Set<string>();

  beforeAll(async () => {
    const { fetchBaseInputs, buildBase } = await import('../../ci/src/base/index.ts');
    reg = await startRegistry();
    work = mkdtempSync(join(tmpdir(), 'stella-run-test-'));
    await fetchBaseInputs({});
    const base = await buildBase({ outLayout: join(work, 'base'), sourceDateEpoch: 0 });
    const client = new RegistryClient({ registry: reg.host });
    await pushLayout(client, join(work, 'base'), 'stellaops/base', base.indexDigest);
    doc = await build({
      source: ROOT,
      version: VERSION,
      gitCommit: COMMIT,
      sourceDateEpoch: EPOCH,
      base: `${reg.host}/stellaops/base@${base.indexDigest}`,
      push: { registry: reg.host, namespace: 'stellaops' },
    });
  }, 900_000);

  afterAll(async () => {
    for (const c of containers) spawnSync('docker', ['rm', '-f', c], { timeout: 60_000 });
    for (const i of images) spawnSync('docker', ['rmi', '-f', i], { timeout: 60_000 });
    await reg?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('built all 11 services for both platforms', () => {
    expect(doc.images.map((i) => i.service)).toEqual(catalog.services.map((s) => s.name));
    for (const i of doc.images) expect(Object.keys(i.platforms)).toEqual(['linux/amd64', 'linux/arm64']);
  });

  it('the registry holds, for each of the 11 services, an index with exactly linux/amd64 and linux/arm64 (skopeo inspect --raw)', () => {
    for (const img of doc.images) {
      const raw = execFileSync(SKOPEO, ['inspect', '--raw', '--tls-verify=false', `docker://${img.repository}@${img.digest}`], { encoding: 'utf8', timeout: 60_000 });
      const index = JSON.parse(raw) as { mediaType: string; manifests: { digest: string; platform: { os: string; architecture: string } }[] };
      expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
      expect(index.manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`)).toEqual(['linux/amd64', 'linux/arm64']);
      expect(index.manifests.map((m) => m.digest)).toEqual(Object.values(img.platforms));
    }
  });

  it('each image carries its application SBOM at /app/sbom.spdx.json, listing the npm packages bundled into it', async () => {
    const client = new RegistryClient({ registry: reg.host });
    for (const img of doc.images) {
      const repo = img.repository.slice(reg.host.length + 1);
      const manifest = JSON.parse(new TextDecoder().decode((await client.getManifest(repo, img.platforms['linux/arm64']!)).bytes)) as { layers: { digest: string }[] };
      const appLayer = await client.getBlob(repo, manifest.layers.at(-1)!.digest);
      const bytes = await readLayerFile(appLayer, 'app/sbom.spdx.json');
      expect(bytes, `${img.service}: /app/sbom.spdx.json`).toBeDefined();
      const sbom = JSON.parse(new TextDecoder().decode(bytes)) as SpdxDocument;
      expect(spdxReport(sbom).problems).toEqual([]);
      const names = sbom.packages.map((p) => p.name);
      expect(names).toContain(`stella-${img.service}`);
      // Every service bundles the runtime's clients (prom-client at least).
      expect(names).toContain('prom-client');
    }
  });

  it('rebuilds all 11 bit-identically from a clean state with the real JavaScript build (base read from an OCI layout this time)', async () => {
    const again = await build({
      source: ROOT,
      version: VERSION,
      gitCommit: COMMIT,
      sourceDateEpoch: EPOCH,
      base: `oci:${join(work, 'base')}`,
      ociLayout: join(work, 'again'),
    });
    const pick = (d: BuildDocument) => d.images.map((i) => [i.service, i.digest, i.platforms]);
    expect(again.images).toHaveLength(11);
    expect(pick(again)).toEqual(pick(doc));
  }, 300_000);

  it('linux/amd64: all 11 start read-only as 65532 with no capabilities, answer liveness and /version', () => runAll('amd64'), 600_000);

  it.skipIf(skipArm64)(
    'linux/arm64: all 11 start read-only as 65532 with no capabilities, answer liveness and /version',
    () => runAll('arm64'),
    600_000,
  );

  async function runAll(arch: 'amd64' | 'arm64'): Promise<void> {
    const started: { service: string; container: string; port: number }[] = [];
    for (const img of doc.images) {
      const spec = catalog.services.find((s) => s.name === img.service)!;
      // Pull by digest: the platform's manifest, named by the build document.
      const ref = `${img.repository}@${img.platforms[`linux/${arch}`]}`;
      images.add(ref);
      docker(['pull', '-q', '--platform', `linux/${arch}`, ref], 300_000);
      expect(docker(['image', 'inspect', '-f', '{{.Architecture}} {{.Config.User}}', ref])).toBe(`${arch} 65532:65532`);
      const port = await freePort();
      // Connection URLs that have no default point at a closed port: the dependency is down, liveness must still answer.
      const env = Object.entries(DOWN_DEPENDENCY).filter(([dep]) => (spec.dependsOn as readonly string[]).includes(dep)).flatMap(([, kv]) => ['-e', kv]);
      const id = docker([
        'run', '-d', '--platform', `linux/${arch}`, '--read-only', '--user', '65532', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
        ...env, '-p', `127.0.0.1:${port}:${spec.http.port}`, ref,
      ]);
      containers.push(id);
      started.push({ service: img.service, container: id, port });
    }
    const budget = arch === 'arm64' ? 150_000 : 60_000;
    await Promise.all(
      started.map(async ({ service, container, port }) => {
        try {
          await waitFor(`${service} (linux/${arch}) liveness on 127.0.0.1:${port}`, async () => (await fetch(`http://127.0.0.1:${port}/health/liveness`, { signal: AbortSignal.timeout(3000) })).status === 200, budget, 500);
        } catch (e) {
          const logs = spawnSync('docker', ['logs', '--tail', '20', container], { encoding: 'utf8' });
          throw new Error(`${(e as Error).message}\n--- docker logs ${service}:\n${logs.stdout}${logs.stderr}`);
        }
        const res = await fetch(`http://127.0.0.1:${port}/version`, { signal: AbortSignal.timeout(5000) });
        expect(res.status).toBe(200);
        const v = (await res.json()) as { version: string; gitCommit: string; buildDate: string };
        expect({ service, version: v.version, gitCommit: v.gitCommit, buildDate: v.buildDate }).toEqual({ service, version: VERSION, gitCommit: COMMIT, buildDate: '2023-11-14T22:13:20Z' });
        // The process runs as 65532 on a read-only root.
        const state = docker(['inspect', '-f', '{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}}', container]);
        expect(state).toBe('65532 true [ALL]');
        if (arch === 'amd64') {
          // The image's exec-form HEALTHCHECK (node /app/healthcheck.js; no shell in the image) turns the container healthy.
          await waitFor(`${service} (linux/${arch}) docker health "healthy"`, async () => docker(['inspect', '-f', '{{.State.Health.Status}}', container]) === 'healthy', 60_000, 1000);
        }
      }),
    );
    for (const { container } of started) spawnSync('docker', ['rm', '-f', container], { timeout: 60_000 });
  }
});
