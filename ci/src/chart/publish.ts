/**
 * The `chart` step: pins → package → push as a Helm OCI artifact → sign → verify.
 *
 *   pins      every StellaOps image digest from the build document (all 11 services), every bundled
 *             support image digest from the support image lock (when there is one)
 *   package   deterministic .tgz (./package.ts), written to <out>/stella-<version>.tgz
 *   push      `oci://<registry>/<namespace>/charts/stella:<version>`: an OCI image manifest with
 *             Helm's config (application/vnd.cncf.helm.config.v1+json, the Chart.yaml metadata)
 *             and one layer (application/vnd.cncf.helm.chart.content.v1.tar+gzip, the .tgz), as
 *             `helm push` writes it; deterministic annotations (created = SOURCE_DATE_EPOCH)
 *   sign      as images are signed (ci/src/release/attach.ts): a Sigstore bundle over a
 *             https://sigstore.dev/cosign/sign/v1 statement naming the manifest digest, stored as
 *             a referrer (referrers API or the sha256-<hex> fallback index), and, with a key, the
 *             legacy cosign v2 `.sig`
 *   verify    the bundle referrer verifies under the trust and names the pushed digest
 *
 * A dry run packages and computes the manifest digest, and pushes and signs nothing.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { StellaError } from '../errors.ts';
import { catalog } from '../catalog/index.ts';
import { MediaType, descriptorOf, isDigest, jsonBytes, type ImageManifest } from '../oci/types.ts';
import type { BuildDocument } from '../build/document.ts';
import { COSIGN_SIGN_PREDICATE_TYPE, imageSignatureStatement, type BundleTrust } from '../sign/index.ts';
import { attachLegacySignature, attest, subjectOf, verifiedAttestations } from '../release/attach.ts';
import { splitRepository, type Registries, type Signing, type StepIo } from '../release/context.ts';
import type { SupportName } from '../catalog/types.ts';
import { BUNDLED, CHART_NAME, SUPPORT_VALUES_KEY } from './model.ts';
import { packageChart, type PackagedChart } from './package.ts';
import type { ChartPins, ImagePin } from './render.ts';

/** The committed support image lock, relative to the checkout (written by `support-images`). */
export const SUPPORT_LOCK_PATH_IN_REPO = 'deploy/support-images.lock.json';

export const HELM_CONFIG_MEDIA_TYPE = 'application/vnd.cncf.helm.config.v1+json';
export const HELM_CHART_LAYER_MEDIA_TYPE = 'application/vnd.cncf.helm.chart.content.v1.tar+gzip';

/** The support image lock's entries the chart reads (ci/src/support: SupportLock). */
export interface SupportLockLike {
  readonly images: Readonly<Partial<Record<SupportName, { readonly repository: string; readonly digest: string; readonly version?: string }>>>;
}

/** `host[:port]/path` → `{registry, repository}`; a repository without a registry host (e.g. docker.io images written short) keeps an empty registry. */
function pinOf(repository: string, digest: string, tag: string, what: string): ImagePin {
  if (!isDigest(digest)) throw new StellaError('DIGEST_INVALID', `chart: ${what}: digest "${digest}" is not sha256:<64 hex>`);
  const { registry, repo } = splitRepository(repository);
  return { registry, repository: repo, digest, tag };
}

/** The pins of a release: every catalog service from the build document (all are required), the bundled images from the lock. */
export function releasePins(o: { readonly images: BuildDocument; readonly supportLock?: SupportLockLike; readonly chartVersion: string; readonly appVersion: string }): ChartPins {
  const missing = catalog.services.filter((s) => !o.images.images.some((i) => i.service === s.name)).map((s) => s.name);
  if (missing.length) {
    throw new StellaError('INVALID_ARGUMENT', `chart: the build document has no image for ${missing.join(', ')}: a released chart pins every component (build all services, or pass the release's build.json)`);
  }
  const components: Record<string, ImagePin> = {};
  for (const s of catalog.services) {
    const i = o.images.images.find((x) => x.service === s.name)!;
    components[s.valuesKey] = pinOf(i.repository, i.digest, o.appVersion, `image of ${s.name} (${i.repository})`);
  }
  const bundled: Record<string, ImagePin> = {};
  for (const n of BUNDLED) {
    const e = o.supportLock?.images[n];
    if (e) bundled[SUPPORT_VALUES_KEY[n]] = pinOf(e.repository, e.digest, e.version ?? '', `support image ${n} (${e.repository})`);
  }
  return { version: o.chartVersion, appVersion: o.appVersion, components, bundled };
}

/** Helm's OCI config: the Chart.yaml metadata as JSON, in Helm's field order. */
export function helmConfig(chartYaml: string): Uint8Array {
  const m = parseYaml(chartYaml) as Record<string, unknown>;
  const order = ['name', 'home', 'sources', 'version', 'description', 'keywords', 'maintainers', 'icon', 'apiVersion', 'condition', 'tags', 'appVersion', 'deprecated', 'annotations', 'kubeVersion', 'dependencies', 'type'];
  const out: Record<string, unknown> = {};
  for (const k of order) if (m[k] !== undefined) out[k] = m[k];
  return jsonBytes(out);
}

/** The OCI manifest `helm push` writes for the chart (deterministic: created = the epoch). */
export function chartManifest(pkg: PackagedChart, sourceDateEpoch: number): { manifest: ImageManifest; bytes: Uint8Array; digest: string; config: Uint8Array } {
  const config = helmConfig(pkg.chartYaml);
  const meta = parseYaml(pkg.chartYaml) as { version: string; description?: string; home?: string };
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: descriptorOf(HELM_CONFIG_MEDIA_TYPE, config),
    layers: [descriptorOf(HELM_CHART_LAYER_MEDIA_TYPE, pkg.bytes)],
    annotations: {
      'org.opencontainers.image.created': new Date(sourceDateEpoch * 1000).toISOString().replace('.000Z', 'Z'),
      'org.opencontainers.image.description': meta.description ?? '',
      'org.opencontainers.image.source': meta.home ?? '',
      'org.opencontainers.image.title': CHART_NAME,
      'org.opencontainers.image.version': meta.version,
    },
  };
  const bytes = jsonBytes(manifest);
  return { manifest, bytes, digest: descriptorOf(MediaType.ociManifest, bytes).digest, config };
}

export interface ChartStepOptions {
  readonly source: string;
  readonly images: BuildDocument;
  readonly supportLock?: SupportLockLike;
  readonly chartVersion: string;
  readonly appVersion: string;
  readonly registry: string;
  readonly namespace: string;
  readonly sourceDateEpoch: number;
  /** Directory the .tgz is written to. */
  readonly outDir: string;
  readonly registries: Registries;
  /** Absent only for a dry run. */
  readonly signing?: Signing;
  /** What the signature must verify under after signing (default: the signing key's public half). */
  readonly trust?: BundleTrust;
  readonly dryRun?: boolean;
}

export interface ChartResult {
  /** `<registry>/<namespace>/charts/stella@sha256:…` */
  readonly ref: string;
  readonly digest: string;
  readonly version: string;
  readonly appVersion: string;
  /** `oci://<registry>/<namespace>/charts/stella` with `--version <version>`. */
  readonly oci: string;
  readonly tag: string;
  readonly package: string;
  readonly packageDigest: string;
  readonly signature?: { readonly bundleReferrer: string; readonly legacyTag?: string; readonly verified: boolean };
  readonly dryRun: boolean;
}

export async function chartStep(o: ChartStepOptions, io: StepIo): Promise<ChartResult> {
  const pins = releasePins({ images: o.images, supportLock: o.supportLock, chartVersion: o.chartVersion, appVersion: o.appVersion });
  const missingSupport = BUNDLED.filter((n) => !pins.bundled[SUPPORT_VALUES_KEY[n]]);
  if (missingSupport.length) io.progress(`chart: no support image lock entry for ${missingSupport.join(', ')}: bundled mode keeps the upstream references without digests`);
  if (!o.dryRun && !o.signing) throw new StellaError('INVALID_ARGUMENT', 'chart: publishing needs a signing key (--key) or --identity-token; use --dry-run to package only');

  const pkg = packageChart({ source: o.source, pins, sourceDateEpoch: o.sourceDateEpoch });
  await mkdir(o.outDir, { recursive: true });
  const file = join(o.outDir, pkg.fileName);
  await writeFile(file, pkg.bytes);
  const m = chartManifest(pkg, o.sourceDateEpoch);
  const repo = `${o.namespace}/charts/${CHART_NAME}`;
  const tag = o.chartVersion.replaceAll('+', '_');
  const ref = `${o.registry}/${repo}@${m.digest}`;
  const base = { ref, digest: m.digest, version: o.chartVersion, appVersion: o.appVersion, oci: `oci://${o.registry}/${o.namespace}/charts/${CHART_NAME}`, tag, package: file, packageDigest: pkg.digest };
  io.progress(`chart ${CHART_NAME} ${o.chartVersion}: ${file} (${pkg.digest.slice(0, 19)}), manifest ${m.digest.slice(0, 19)}`);
  if (o.dryRun) return { ...base, dryRun: true };

  const client = o.registries.client(o.registry);
  await client.pushBlob(repo, m.config, m.manifest.config.digest);
  await client.pushBlob(repo, pkg.bytes, pkg.digest);
  await client.putManifest(repo, tag, m.bytes, MediaType.ociManifest);
  io.progress(`chart pushed: ${base.oci}:${tag} (${m.digest})`);

  const signing = o.signing!;
  const subject = await subjectOf(client, repo, m.digest, ref);
  const bundle = await attest(subject, imageSignatureStatement(m.digest), signing);
  const legacy = signing.key ? await attachLegacySignature(client, repo, m.digest, signing.key, `${o.registry}/${repo}`) : undefined;
  const trust = o.trust ?? signing.trust;
  let verified = false;
  if (trust) {
    const problems: string[] = [];
    const found = await verifiedAttestations(subject, COSIGN_SIGN_PREDICATE_TYPE, { trust }, problems);
    if (!found.length) throw new StellaError('VERIFY_FAILED', `chart ${ref}: no signature verifies after signing${problems.length ? `: ${problems.join('; ')}` : ''}`);
    verified = true;
  }
  io.progress(`chart signed: ${bundle.written ? 'bundle referrer' : 'bundle referrer already present'} ${bundle.digest.slice(0, 19)}${legacy ? `, legacy ${legacy.tag}` : ''}${verified ? ', verified' : ''}`);
  return { ...base, signature: { bundleReferrer: bundle.digest, legacyTag: legacy?.tag, verified }, dryRun: false };
}
