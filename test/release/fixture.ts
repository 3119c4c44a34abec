/**
 * Small but complete service images for the supply-chain tests: a "base" layer
 * carrying real dpkg metadata (this host's records of the distroless package
 * set) and an app layer carrying /app/sbom.spdx.json, as the real build writes
 * them; two platforms per index. Fast to make, so the tests can build many.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createLayer, type Layer } from '../../ci/src/oci/layer.ts';
import { MediaType, descriptorOf, jsonBytes, type ImageIndex, type ImageManifest } from '../../ci/src/oci/types.ts';
import { RegistryClient } from '../../ci/src/registry/index.ts';
import { appSbom, serializeSpdx } from '../../ci/src/sbom/index.ts';
import type { BuiltImage } from '../../ci/src/build/document.ts';
import { BASE_PACKAGES, COMMIT, SOURCE_DATE_EPOCH, serviceNpmPackages } from '../sbom/fixtures.ts';

export { COMMIT, SOURCE_DATE_EPOCH };

function hostStanza(pkg: string): string {
  const status = readFileSync('/var/lib/dpkg/status', 'utf8').split(/\n\n+/);
  const s = status.find((x) => x.startsWith(`Package: ${pkg}\n`));
  if (!s) throw new Error(`this host has no dpkg record for ${pkg}`);
  return `${s.trim()}\n`;
}

let baseLayerCache: Promise<Layer> | undefined;
function baseLayer(): Promise<Layer> {
  baseLayerCache ??= createLayer({
    sourceDateEpoch: SOURCE_DATE_EPOCH,
    entries: BASE_PACKAGES.map((p) => ({ type: 'file' as const, path: `var/lib/dpkg/status.d/${p}`, content: hostStanza(p) })),
  });
  return baseLayerCache;
}

/** Builds and pushes a two-platform image of `service` (by digest, no tag); `seed` varies its content. */
export async function pushSyntheticImage(registry: string, namespace: string, service: string, seed = service): Promise<BuiltImage> {
  const client = new RegistryClient({ registry });
  const repo = `${namespace}/stella-${service}`;
  const sbom = appSbom({ service, version: 'v1.4.0-rc.1', gitCommit: COMMIT, npmPackages: serviceNpmPackages(['pg']), created: SOURCE_DATE_EPOCH });
  const app = await createLayer({
    sourceDateEpoch: SOURCE_DATE_EPOCH,
    entries: [
      { type: 'file', path: 'app/main.js', content: `console.log(${JSON.stringify(seed)});\n` },
      { type: 'file', path: 'app/sbom.spdx.json', content: serializeSpdx(sbom) },
    ],
  });
  const base = await baseLayer();
  const platforms: Record<string, string> = {};
  const manifests = [];
  for (const arch of ['amd64', 'arm64']) {
    const config = jsonBytes({
      architecture: arch,
      os: 'linux',
      created: new Date(SOURCE_DATE_EPOCH * 1000).toISOString(),
      config: { User: '65532:65532', Labels: { 'dev.stellaops.base.node': `node-linux-${arch === 'amd64' ? 'x64' : 'arm64'}@24.21.0` } },
      rootfs: { type: 'layers', diff_ids: [base.diffId, app.diffId] },
    });
    const configDesc = descriptorOf(MediaType.ociConfig, config);
    for (const [bytes, digest] of [[config, configDesc.digest], [base.blob, base.digest], [app.blob, app.digest]] as const) await client.pushBlob(repo, bytes, digest);
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: configDesc,
      layers: [descriptorOf(MediaType.ociLayerGzip, base.blob), descriptorOf(MediaType.ociLayerGzip, app.blob)],
    };
    const bytes = jsonBytes(manifest);
    const digest = await client.putManifest(repo, descriptorOf(MediaType.ociManifest, bytes).digest, bytes, MediaType.ociManifest);
    platforms[`linux/${arch}`] = digest;
    manifests.push({ mediaType: MediaType.ociManifest, digest, size: bytes.byteLength, platform: { architecture: arch, os: 'linux' } });
  }
  const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests };
  const indexBytes = jsonBytes(index);
  const digest = await client.putManifest(repo, descriptorOf(MediaType.ociIndex, indexBytes).digest, indexBytes, MediaType.ociIndex);
  return { service, repository: `${registry}/${repo}`, digest, platforms };
}

/** Rewrites the `sha256-<hex>` referrers fallback index of `subject`, keeping the entries `keep` accepts. */
export async function filterReferrers(client: RegistryClient, repo: string, subject: string, keep: (d: { artifactType?: string; annotations?: Record<string, string>; digest: string }) => boolean): Promise<void> {
  const tag = `sha256-${subject.slice('sha256:'.length)}`;
  const idx = JSON.parse(new TextDecoder().decode((await client.getManifest(repo, tag)).bytes)) as ImageIndex;
  const next = { ...idx, manifests: idx.manifests.filter((m) => keep(m as never)) };
  await client.putManifest(repo, tag, jsonBytes(next), MediaType.ociIndex);
}

/**
 * A checkout to edit without touching this one: what a release of the service images reads
 * (docker/, services/, docs/install/, the package and lock files, tsconfig.base.json) copied
 * into `dir`; ci/ and node_modules linked (the pipeline's own code, and the installed packages).
 * No deploy/helm: the release skips its chart step.
 */
export function scratchSource(dir: string): string {
  const root = join(import.meta.dirname, '..', '..');
  mkdirSync(dir, { recursive: true });
  for (const f of ['docker', 'services', 'docs/install', 'package.json', 'package-lock.json', 'tsconfig.base.json']) {
    cpSync(join(root, f), join(dir, f), { recursive: true, filter: (p) => !p.split('/').includes('node_modules') });
  }
  symlinkSync(join(root, 'ci'), join(dir, 'ci'));
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  if (existsSync(join(root, 'services', 'node_modules'))) symlinkSync(join(root, 'services', 'node_modules'), join(dir, 'services', 'node_modules'));
  return dir;
}
