/**
 * The release, top to bottom. Each step is a function over typed inputs that
 * passes digests, never tags, to the next; tags are written last, after
 * everything they will point to has been verified.
 *
 *   plan            the tags the version publishes (refuses anything outside the scheme)
 *   preflight       no side effects: tree, registry reachable and writable, signing identity
 *                   usable, immutable tags not taken (./preflight.ts); `--dry-run` stops here
 *                   and prints the plan
 *   key             the signing key or keyless identity
 *   base            the runtime base, by digest: given, or built offline and pushed
 *   build           11 images × 2 platforms, reproducible, pushed by digest; an image whose inputs
 *                   are those recorded is not rebuilt when the registry has it by digest
 *                   (ci/src/build/cache.ts), and an image whose referrers are those an earlier run
 *                   attached and verified is confirmed by digest (./cache.ts): sbom, sign,
 *                   provenance and verify then skip it. `--no-cache` bypasses both.
 *   support-images  the support image lock's images, or built (./extras.ts)
 *   sbom            SPDX per platform and per index: signed attestation + plain referrer
 *   sign            cosign v3 bundle signature + legacy .sig, over index digests
 *   provenance      SLSA v1, signed, over index and platform digests
 *   chart           the Helm chart pinned to those digests, pushed, signed (./extras.ts)
 *   bundle, smoke   slots for the air-gap bundle and the smoke tests (./hooks.ts)
 *   verify          everything, by digest
 *   publish         decide every tag, then write tags — last
 *   record          dist/: build.json, release.json (with per-step timings), digests.txt,
 *                   checksums.txt + its Sigstore bundle, SBOMs, provenance, image catalog,
 *                   compatibility.json (chart version → digests → Kubernetes, Docker, Compose)
 *
 * Progress and the closing summary table: ./progress.ts (`--json`: one event per line; on a
 * terminal, a live view per step and per image).
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createHash, randomUUID } from 'node:crypto';
import { StellaError } from '../errors.ts';
import { planTags, type TagPlan } from '../tags/index.ts';
import { SOURCE_URL, selectServices } from '../catalog/index.ts';
import { fetchBaseInputs, buildBase, readNodePin } from '../base/index.ts';
import { buildReport, writeBuildDocument, type BuildDocument, type BuiltImage } from '../build/index.ts';
import { pushLayout, type Credentials } from '../registry/index.ts';
import { emptyTrustedRoot, generateKeyPair, loadPrivateKey, type BundleTrust, type SigningKey } from '../sign/index.ts';
import { Registries, dockerConfigPath, identityTrust, signingKeyless, signingWithKey, splitRepository, type IdentityOptions, type KeylessOptions, type RegistryAccess, type Signing, type StepIo } from './context.ts';
import { sourceRevision, type SourceRevision } from './git.ts';
import { sbomStep, type SbomStepOptions } from './sbom.ts';
import { signStep, type SignStepOptions } from './signatures.ts';
import { imageProvenance, provenanceStep, withoutRunMetadata, type ProvenanceStepOptions } from './provenance.ts';
import { ATTESTED_CACHE_FILE, AttestationCache, BUILD_CACHE_FILE, LAYERS_CACHE_FILE, NOT_RECORDED, attestationKey } from './cache.ts';
import { publishStep, type PublishOptions, type TagResult } from './publish.ts';
import { imageCatalogWithDigests } from './catalog-doc.ts';
import { COMPATIBILITY_FILE, compatibilityRow } from './compatibility.ts';
import { Progress, type StepTiming } from './progress.ts';
import type { LiveOptions } from './live.ts';
import { preflight, type PreflightResult } from './preflight.ts';
import { releaseChartStep, supportImagesStep, type SupportImageRecord, type SupportImagesMode } from './extras.ts';
import { releaseHooks, type BundleRecord, type ReleaseStepContext, type SmokeRecord } from './hooks.ts';
import { verifyStep } from './verify.ts';
import { CHECKSUMS_BUNDLE, CHECKSUMS_FILE, DIGESTS_FILE, LAST_RUN_FILE, writeReleaseOutputs, type DigestEntry } from './outputs.ts';

export const DEFAULT_REGISTRY = '127.0.0.1:5000';
export const DEFAULT_NAMESPACE = 'stellaops';
/** Where `release` records everything, relative to the checkout. */
export const DEFAULT_OUT = 'dist';
/** Where `build-base` writes the base's OCI layout, relative to the checkout (`release`: <out>/base-layout). */
export const DEFAULT_BASE_LAYOUT = `${DEFAULT_OUT}/base-layout`;
export const BASE_REPOSITORY = 'stella-base-node';
export const SOURCE_REPOSITORY = `git+${SOURCE_URL}`;
/** The SLSA builder id of every provenance this pipeline writes (the release and the single `provenance` step). */
export const BUILDER_ID = 'https://stellaops.io/builders/stella-release/local';

// ─── What every path shares ───────────────────────────────────────────────────────────────────
// `release` and the single-step functions (./functions.ts) build each step's options with the
// functions below, from the same inputs, so that a step gives the same documents either way.

/** The commit and time everything is built and attested from: the given ones, else the checkout's. */
export function resolveRevision(source: string, gitCommit?: string, sourceDateEpoch?: number): SourceRevision {
  if (gitCommit && sourceDateEpoch !== undefined) return { commit: gitCommit, time: sourceDateEpoch, dirty: false };
  const rev = sourceRevision(source);
  return { commit: gitCommit ?? rev.commit, time: sourceDateEpoch ?? rev.time, dirty: gitCommit ? false : rev.dirty };
}

/**
 * The versions of what ran, as SBOMs (creator `Tool: stella-release-<version>`) and provenance
 * (`runDetails.builder.version`) record them. `stella-release` is versioned by the commit it
 * runs from (the pipeline lives in the repository it releases).
 */
export async function toolVersions(source: string, revision: Pick<SourceRevision, 'commit'>): Promise<Readonly<Record<string, string>>> {
  return { node: process.version, 'stella-release': revision.commit, nodeBase: await readNodePin(join(source, 'package.json')) };
}

/** The secrets no published document may contain. */
export function stepSecrets(s: { keyPassword?: string; registryPassword?: string; identityToken?: string }): string[] {
  return [s.keyPassword, s.registryPassword, s.identityToken].filter((x): x is string => typeof x === 'string' && x.length > 0);
}

/** Registry access from the flags: credentials, else a Docker config file (given, or the user's default one), else anonymous. */
export function registryAccess(o: { registryUsername?: string; registryPassword?: string; dockerConfig?: string }): RegistryAccess {
  const credentials = registryCredentials(o.registryUsername, o.registryPassword);
  if (credentials) return { credentials };
  const dockerConfig = dockerConfigPath(o.dockerConfig);
  return dockerConfig ? { dockerConfig } : {};
}

/** `host/repo@sha256:…` (or `oci:<dir>@sha256:…`) → the provenance's base image. */
export function baseImageOf(base: string): { uri: string; digest: string } {
  const at = base.lastIndexOf('@');
  if (at <= 0 || !/^sha256:[0-9a-f]{64}$/.test(base.slice(at + 1))) {
    throw new StellaError('INVALID_ARGUMENT', `base "${base}" is not pinned by digest (expected host/repo@sha256:<64 hex> or oci:<dir>@sha256:<64 hex>)`);
  }
  return { uri: base.slice(0, at), digest: base.slice(at + 1) };
}

/** The build parameters provenance records, read from the build document (so every path records the same). */
export function provenanceParameters(images: BuildDocument): Record<string, string> {
  const uniq = (xs: string[]) => [...new Set(xs)].join(',');
  const parts = images.images.map((i) => {
    const { registry, repo } = splitRepository(i.repository);
    return { registry, namespace: repo.slice(0, Math.max(0, repo.lastIndexOf('/'))) };
  });
  return { registry: uniq(parts.map((p) => p.registry)), namespace: uniq(parts.map((p) => p.namespace)), services: images.images.map((i) => i.service).join(',') };
}

/** What the attaching steps (sbom, sign, provenance) share. */
export interface AttachInputs {
  /** The checkout (its package.json pins the Node version recorded). */
  readonly source: string;
  readonly images: BuildDocument;
  readonly registries: Registries;
  readonly signing: Signing;
  readonly revision: Pick<SourceRevision, 'commit' | 'time'>;
  /** Strings that must appear in no document (see stepSecrets). */
  readonly secrets: readonly string[];
}

export async function sbomOptions(c: AttachInputs, outDir?: string): Promise<SbomStepOptions> {
  const tools = await toolVersions(c.source, c.revision);
  return { images: c.images, registries: c.registries, signing: c.signing, sourceDateEpoch: c.revision.time, toolVersion: tools['stella-release']!, secrets: c.secrets, outDir };
}

export function signOptions(c: Pick<AttachInputs, 'images' | 'registries' | 'signing'>): SignStepOptions {
  return { images: c.images, registries: c.registries, signing: c.signing };
}

/**
 * Everything in the provenance but `runDetails.metadata` (invocation id, start and finish time:
 * what differs between two runs by nature) is a function of these inputs.
 */
export async function provenanceOptions(
  c: AttachInputs,
  p: { readonly version: string; readonly ref?: string; readonly base: string; readonly startedOn: Date; readonly outDir?: string },
): Promise<ProvenanceStepOptions> {
  return {
    images: c.images,
    registries: c.registries,
    signing: c.signing,
    version: p.version,
    source: { repository: SOURCE_REPOSITORY, commit: c.revision.commit, ref: p.ref },
    sourceDateEpoch: c.revision.time,
    baseImage: baseImageOf(p.base),
    builderId: BUILDER_ID,
    invocation: { id: randomUUID(), startedOn: p.startedOn, finishedOn: new Date() },
    toolVersions: await toolVersions(c.source, c.revision),
    parameters: provenanceParameters(c.images),
    secrets: c.secrets,
    outDir: p.outDir,
  };
}

/**
 * Per image, the key its attestations are cached under (./cache.ts): the SPDX inputs, the
 * provenance without its run metadata, and the signing kind and trust.
 */
export async function attestationKeys(c: AttachInputs, p: { readonly version: string; readonly ref?: string; readonly base: string; readonly startedOn: Date }): Promise<Map<string, string>> {
  const sbom = await sbomOptions(c);
  const prov = await provenanceOptions(c, p);
  const keys = new Map<string, string>();
  for (const image of c.images.images) {
    keys.set(image.service, attestationKey({
      image: image as BuiltImage,
      trust: c.signing.trust,
      signer: c.signing.signer.kind,
      legacy: c.signing.key !== undefined,
      sbom: { sourceDateEpoch: sbom.sourceDateEpoch, toolVersion: sbom.toolVersion, nodePin: prov.toolVersions.nodeBase },
      provenance: withoutRunMetadata(imageProvenance(prov, image) as unknown as Parameters<typeof withoutRunMetadata>[0]),
    }));
  }
  return keys;
}

export function publishOptions(o: { images: BuildDocument; registries: Registries; trust: BundleTrust; plan: TagPlan; dryRun?: boolean }): PublishOptions {
  return { images: o.images, registries: o.registries, trust: o.trust, plan: o.plan, dryRun: o.dryRun === true };
}

export interface BuiltBase {
  /** `registry/namespace/stella-base-node@sha256:…` */
  readonly ref: string;
  readonly digest: string;
  readonly platforms: Readonly<Record<string, string>>;
  readonly layout: string;
  readonly nodeVersion: string;
}

/** The offline base: fetch its inputs (cached), build it reproducibly into `layout`, push it by digest. */
export async function buildAndPushBase(
  o: { readonly registry: string; readonly namespace: string; readonly layout: string; readonly sourceDateEpoch: number; readonly registries: Registries; readonly updateLock?: boolean; readonly releaseVersion?: string },
  io: StepIo,
): Promise<BuiltBase> {
  io.progress('fetching the offline base inputs (Debian packages, Node binaries; cached)');
  // A versioned release (vX.Y.Z, vX.Y.Z-rc.N) never builds from a refreshed lock: LOCK_STALE instead.
  await fetchBaseInputs({ updateLock: o.updateLock === true, releaseVersion: o.releaseVersion, log: (l) => io.progress(l) });
  const base = await buildBase({ outLayout: o.layout, sourceDateEpoch: o.sourceDateEpoch, releaseVersion: o.releaseVersion });
  const repo = `${o.namespace}/${BASE_REPOSITORY}`;
  await pushLayout(o.registries.client(o.registry), o.layout, repo, base.indexDigest);
  const ref = `${o.registry}/${repo}@${base.indexDigest}`;
  io.progress(`base ${ref} (Node ${base.nodeVersion})`);
  return { ref, digest: base.indexDigest, platforms: base.platforms as Record<string, string>, layout: o.layout, nodeVersion: base.nodeVersion };
}

/** In <out>/base-layout: what the base was built from (a hash of its inputs) and its digest. */
const BASE_RECORD = 'stella-release-base.json';

/** dist/release.json of an earlier run, when there is a readable one. */
async function readReleaseRecord(out: string): Promise<ReleaseRecord | undefined> {
  try {
    const r = JSON.parse(await readFile(join(out, 'release.json'), 'utf8')) as ReleaseRecord;
    return typeof r.version === 'string' && Array.isArray(r.images) ? r : undefined;
  } catch {
    return undefined;
  }
}

/** The release a record describes: all of it but the run's own step times and tag actions. */
function releaseIdentity(r: ReleaseRecord): string {
  const { steps: _steps, tags, ...rest } = r;
  return JSON.stringify({ ...rest, tags: tags.map(({ action: _a, written: _w, ...t }) => t) });
}

/** Two records of the same release (an unchanged re-run): release.json is then kept byte for byte. */
export function sameRelease(a: ReleaseRecord, b: ReleaseRecord): boolean {
  return releaseIdentity(a) === releaseIdentity(b);
}

/** What a smoke test of this release runs: every image, support image and the bundle, by digest. */
export function smokeSubject(images: BuildDocument, support: readonly SupportImageRecord[], bundle: BundleRecord | undefined): string {
  const what = { images: images.images.map((i) => `${i.repository}@${i.digest}`), support: support.map((i) => `${i.repository}@${i.digest}`), bundle: bundle?.sha256 ?? null };
  return `sha256:${createHash('sha256').update(JSON.stringify(what)).digest('hex')}`;
}

/**
 * A hash of everything the offline base is built from: the base code and its lock (ci/src/base),
 * the Node pin (package.json), the source date, where it is pushed, whether the release is
 * versioned (which decides the lock policy) and the lock policy itself.
 */
async function baseInputsKey(o: { source: string; sourceDateEpoch: number; registry: string; namespace: string; versioned: boolean }): Promise<string> {
  const h = createHash('sha256');
  const dir = join(import.meta.dirname, '..', 'base');
  for (const f of readdirSync(dir).filter((x) => /\.(ts|json)$/.test(x)).sort()) h.update(`${f}\0`).update(await readFile(join(dir, f)));
  h.update(await readFile(join(o.source, 'package.json')));
  h.update(JSON.stringify({ epoch: o.sourceDateEpoch, registry: o.registry, namespace: o.namespace, versioned: o.versioned, policy: process.env.STELLA_BASE_LOCK_POLICY ?? '' }));
  return h.digest('hex');
}

/** The base a previous run built into this layout from the same inputs, when the registry still has it by digest. */
async function reusableBase(layout: string, key: string, registries: Registries, registry: string): Promise<{ ref: string; digest: string } | undefined> {
  const f = join(layout, BASE_RECORD);
  if (!existsSync(f)) return undefined;
  try {
    const r = JSON.parse(await readFile(f, 'utf8')) as { key?: string; ref?: string; digest?: string };
    if (r.key !== key || typeof r.ref !== 'string' || typeof r.digest !== 'string' || !r.ref.startsWith(`${registry}/`)) return undefined;
    const repo = r.ref.slice(registry.length + 1, r.ref.lastIndexOf('@'));
    return (await registries.client(registry).hasManifest(repo, r.digest)) ? { ref: r.ref, digest: r.digest } : undefined;
  } catch {
    return undefined;
  }
}

export interface ReleaseOptions {
  readonly source: string;
  readonly version: string;
  readonly ref?: string;
  readonly date?: string;
  readonly registry?: string;
  readonly namespace?: string;
  /** Comma-separated catalog names; default all. */
  readonly services?: string;
  /** Base image by digest (`host/repo@sha256:…` or `oci:<dir>`); default: build the offline base and push it. */
  readonly base?: string;
  /** PEM of the signing key (PKCS#8, SEC1 or cosign's encrypted format); default: generate one into <out>/keys. */
  readonly key?: string;
  readonly keyPassword?: string;
  /** Keyless signing: an OIDC identity token for Fulcio (then give the identity options to verify). */
  readonly keyless?: KeylessOptions;
  /** Keyless trust: who must have signed, and the trusted root to check certificates and log entries against. */
  readonly identity?: IdentityOptions;
  readonly registryUsername?: string;
  readonly registryPassword?: string;
  /** Docker config.json with registry credentials (default: the user's, when present). */
  readonly dockerConfig?: string;
  readonly out?: string;
  readonly gitCommit?: string;
  readonly sourceDateEpoch?: number;
  /** Pre-flight, then print the plan (plan.json in <out>); build, push, sign and tag nothing. */
  readonly dryRun?: boolean;
  /** Allow a final release (vX.Y.Z) from a working tree with uncommitted changes (recorded as dirty). */
  readonly allowDirty?: boolean;
  /** Progress as one JSON event per line (ReleaseEvent) instead of plain lines. */
  readonly json?: boolean;
  /** Support images: the committed lock (default), built here, or none. */
  readonly supportImages?: SupportImagesMode;
  /** Progress as a live view on this terminal (the front end decides: liveMode in ./live.ts); not with `json`. */
  readonly live?: Omit<LiveOptions, 'images' | 'title'>;
  /**
   * Ignore the caches in <out>/app/.stella-cache (build inputs, verified attestations: ./cache.ts):
   * rebuild, re-attest and re-verify every image; the caches are then written anew.
   */
  readonly noCache?: boolean;
  /** Run the smoke slot's steps here (./hooks.ts: smoke-compose where Docker is, smoke-airgap on the bundle as root); default skip it. */
  readonly smoke?: boolean;
}

export interface ReleaseRecord {
  readonly version: string;
  readonly channel: TagPlan['channel'];
  readonly gitCommit: string;
  readonly sourceDateEpoch: number;
  readonly base: string;
  /** The public key verifiers trust (key signing); absent for keyless releases. */
  readonly publicKey?: string;
  /**
   * Each image by digest: its index, its platform manifests, and its referrers as verified (subject
   * digest — the index and each platform manifest — → referrer digests: signature, SBOMs, provenance).
   */
  readonly images: readonly { service: string; repository: string; digest: string; platforms: Record<string, string>; referrers?: Record<string, readonly string[]>; tags: string[] }[];
  readonly tags: readonly TagResult[];
  /** The working tree had uncommitted changes (promote refuses a dirty rc). */
  readonly dirty?: boolean;
  /** Support images the release pins (by digest), from the lock or built. */
  readonly supportImages?: readonly SupportImageRecord[];
  readonly chart?: { readonly ref: string; readonly digest: string; readonly version: string; readonly oci: string; readonly tag: string; readonly package: string; readonly packageDigest: string };
  readonly bundle?: BundleRecord;
  /** Every smoke test the release ran, bound to the digests it ran (what promote checks). */
  readonly smoke?: readonly SmokeRecord[];
  /** Set by `promote`: the rc whose verified digests this release tags. */
  readonly promotedFrom?: { readonly version: string; readonly gitCommit: string };
  /** dist/ files for release pages and attestations (relative to <out>). */
  readonly outputs?: { readonly digests: string; readonly checksums: string; readonly checksumsBundle: string };
  /** Per-step status, what it did and its time, in order. */
  readonly steps?: readonly StepTiming[];
}

/** What `release --dry-run` prints (and writes to <out>/plan.json): the checks and the steps it would run. */
export interface ReleasePlan {
  readonly dryRun: true;
  readonly version: string;
  readonly channel: TagPlan['channel'];
  readonly tags: readonly string[];
  readonly immutable: boolean;
  readonly chartVersion: string;
  readonly gitCommit: string;
  readonly sourceDateEpoch: number;
  readonly dirty: boolean;
  readonly registry: string;
  readonly namespace: string;
  readonly images: readonly string[];
  readonly signing: PreflightResult['signing'];
  readonly preflight: PreflightResult['checks'];
  readonly warnings: readonly string[];
  readonly steps: readonly { readonly step: string; readonly will: string }[];
  readonly out: string;
}

export function registryCredentials(username?: string, password?: string): Credentials | undefined {
  if (password !== undefined && !username) throw new StellaError('INVALID_ARGUMENT', 'a registry password needs --registry-username');
  return username && password !== undefined ? { username, password } : undefined;
}

/**
 * Keyless signing when an identity token is given (verification then trusts the
 * given identity and trusted root); else the given key, or a generated local one.
 */
async function releaseSigning(o: ReleaseOptions, out: string, io: StepIo, checked?: SigningKey): Promise<{ signing: Signing & { trust: NonNullable<Signing['trust']> }; publicKeyPath?: string }> {
  if (o.keyless) {
    if (o.key) throw new StellaError('INVALID_ARGUMENT', 'give --key or --identity-token, not both');
    const trust = identityTrust(o.identity ?? {});
    if (!trust) throw new StellaError('INVALID_ARGUMENT', 'keyless signing (--identity-token) needs --certificate-identity, --certificate-oidc-issuer and --trusted-root, so that the release can be verified before it is tagged');
    return { signing: { ...signingKeyless(o.keyless), trust } };
  }
  const { signing, publicKeyPath } = await signingKey(o, out, io, checked);
  return { signing: { ...signing, trust: { publicKeyPem: signing.key!.publicKeyPem } }, publicKeyPath };
}

/** Loads the given key (`checked`: pre-flight already did), or generates a local one (written to <out>/keys, mode 0600). */
async function signingKey(o: ReleaseOptions, out: string, io: StepIo, checked?: SigningKey): Promise<{ signing: Signing; publicKeyPath: string }> {
  const keys = join(out, 'keys');
  await mkdir(keys, { recursive: true });
  let pem = o.key;
  let password = o.keyPassword;
  if (!pem) {
    const existing = join(keys, 'cosign.key');
    if (existsSync(existing)) {
      pem = await readFile(existing, 'utf8');
      password = '';
      io.progress(`using the local signing key ${existing}`);
    } else {
      const pair = generateKeyPair('');
      await writeFile(existing, pair.privateKeyPem, { mode: 0o600 });
      await chmod(existing, 0o600);
      pem = pair.privateKeyPem;
      password = '';
      io.progress(`generated a signing key for this local release: ${existing} (empty password); give --key for a real release`);
    }
  }
  const key = checked && o.key ? checked : loadPrivateKey(pem, password, 'signing key');
  const publicKeyPath = join(keys, 'cosign.pub');
  await writeFile(publicKeyPath, key.publicKeyPem);
  // What `cosign verify-attestation --trusted-root` needs to verify key-signed bundles fully offline.
  await writeFile(join(keys, 'trusted_root.json'), `${JSON.stringify(emptyTrustedRoot(), null, 2)}\n`);
  return { signing: signingWithKey(key), publicKeyPath };
}

/** The steps a release runs, in order, and what each will do (the plan `--dry-run` prints). */
function plannedSteps(o: { base?: string; services: readonly string[]; supportImages: SupportImagesMode; plan: TagPlan }): { step: string; will: string }[] {
  return [
    { step: 'preflight', will: 'version and tag rules, clean tree, registry reachable and writable, signing identity usable, immutable tags not taken' },
    { step: 'key', will: 'load the signing key or identity' },
    { step: 'base', will: o.base ? `use ${o.base}` : 'build the offline Node base reproducibly and push it by digest' },
    { step: 'build', will: `build ${o.services.length} images × 2 platforms, push by digest` },
    { step: 'support-images', will: o.supportImages === 'build' ? 'build the support images and push them by digest' : o.supportImages === 'skip' ? 'none (--support-images skip)' : 'pin the committed support image lock when its images are present' },
    { step: 'sbom', will: 'SPDX per platform and index, signed attestations and plain referrers' },
    { step: 'sign', will: 'cosign v3 bundle and legacy .sig over each index digest' },
    { step: 'provenance', will: 'signed SLSA v1 provenance per index' },
    { step: 'chart', will: `package, push, sign and verify chart ${o.plan.chartVersion} (when every service is built)` },
    { step: 'bundle', will: releaseHooks.bundle ? 'the air-gap bundle' : 'skipped: no bundle step registered (ci/src/release/hooks.ts)' },
    { step: 'smoke', will: releaseHooks.smoke.length ? releaseHooks.smoke.map((s) => s.name).join(', ') : 'skipped: no smoke step registered (ci/src/release/hooks.ts)' },
    { step: 'verify', will: 'every signature, SBOM and provenance, by digest' },
    { step: 'publish', will: `write tags ${o.plan.tags.join(', ')}, last` },
    { step: 'record', will: `release.json, build.json, ${DIGESTS_FILE}, ${CHECKSUMS_FILE} and ${CHECKSUMS_BUNDLE}, image catalog, ${COMPATIBILITY_FILE}` },
  ];
}

export async function release(o: ReleaseOptions, io: StepIo): Promise<ReleaseRecord | ReleasePlan> {
  const started = new Date();
  const source = resolve(o.source);
  const out = resolve(o.out ?? join(source, DEFAULT_OUT));
  const registry = o.registry ?? DEFAULT_REGISTRY;
  const namespace = o.namespace ?? DEFAULT_NAMESPACE;
  const secrets = stepSecrets({ keyPassword: o.keyPassword, registryPassword: o.registryPassword, identityToken: o.keyless?.identityToken });
  const services = selectServices(o.services).map((s) => s.name);
  const p = new Progress(io, o.json === true, { images: services, ...(o.live ? { live: { ...o.live, title: `release ${o.version}` } } : {}) });
  const sio = p.io;

  // plan: validate everything that needs no work first (no request is made before this passes).
  const plan = planTags({ version: o.version, ref: o.ref, date: o.date });
  if (o.base) baseImageOf(o.base);
  const supportMode = o.supportImages ?? 'lock';
  const access = registryAccess(o);
  const rev = resolveRevision(source, o.gitCommit, o.sourceDateEpoch);
  const registries = new Registries(access);

  try {
    const steps = plannedSteps({ base: o.base, services, supportImages: supportMode, plan });
    p.expect(steps.map((s) => s.step));
    const pre = await p.step('preflight', async () => {
      const r = await preflight({ plan, revision: rev, allowDirty: o.allowDirty === true, registry, namespace, services, registries, key: o.key, keyPassword: o.keyPassword, keyless: o.keyless, identity: o.identity, out });
      for (const w of r.warnings) p.log(`warning: ${w}`);
      for (const c of r.checks) p.log(`${c.check}: ${c.detail}`);
      return { value: r, did: `${r.checks.length} checks passed${r.warnings.length ? `, ${r.warnings.length} warning(s)` : ''}` };
    });

    if (o.dryRun) {
      const doc: ReleasePlan = {
        dryRun: true, version: plan.version, channel: plan.channel, tags: plan.tags, immutable: plan.immutable, chartVersion: plan.chartVersion,
        gitCommit: rev.commit, sourceDateEpoch: rev.time, dirty: rev.dirty, registry, namespace,
        images: services.map((s) => `${registry}/${namespace}/stella-${s}`), signing: pre.signing, preflight: pre.checks, warnings: pre.warnings, steps: steps.slice(1), out,
      };
      if (p.json) p.emit({ event: 'plan', plan: doc });
      else for (const s of doc.steps) p.log(`plan: ${s.step.padEnd(14)} ${s.will}`);
      for (const s of doc.steps) p.skip(s.step, 'dry run');
      await mkdir(out, { recursive: true });
      await writeFile(join(out, 'plan.json'), `${JSON.stringify(doc, null, 2)}\n`);
      p.summary(true);
      return doc;
    }
    await mkdir(out, { recursive: true });

    const { signing, publicKeyPath } = await p.step('key', async () => {
      const r = await releaseSigning(o, out, sio, pre.key);
      return { value: r, did: r.publicKeyPath ? `key; public key ${r.publicKeyPath}` : 'keyless (OIDC identity)' };
    });
    const base = o.base
      ? await p.step('base', async () => ({ value: o.base!, did: `given: ${o.base}`, skipped: false }))
      : await p.step('base', async () => {
          const layout = join(out, 'base-layout');
          const key = await baseInputsKey({ source, sourceDateEpoch: rev.time, registry, namespace, versioned: plan.immutable });
          const reused = await reusableBase(layout, key, registries, registry);
          if (reused) return { value: reused.ref, did: `${reused.ref.slice(0, reused.ref.indexOf('@') + 20)}… unchanged (same inputs; present by digest, not rebuilt)` };
          const b = await buildAndPushBase({ registry, namespace, layout, sourceDateEpoch: rev.time, registries, releaseVersion: plan.version }, sio);
          await writeFile(join(layout, BASE_RECORD), `${JSON.stringify({ key, ref: b.ref, digest: b.digest }, null, 2)}\n`);
          return { value: b.ref, did: `${b.ref.slice(0, b.ref.indexOf('@') + 20)}… (Node ${b.nodeVersion})` };
        });

    // build: images whose inputs are unchanged and present by digest are not rebuilt (ci/src/build/cache.ts);
    // an image whose referrers are those an earlier run attached and verified is confirmed by digest
    // (./cache.ts), and sbom, sign, provenance and verify skip it.
    const attested = await AttestationCache.open(join(out, ATTESTED_CACHE_FILE), { read: o.noCache !== true });
    const attestation = { registries, out, legacy: signing.key !== undefined };
    const { images, keys, confirmed } = await p.step('build', async () => {
      p.log(`building ${services.length} images for ${plan.imageVersion} at ${rev.commit.slice(0, 12)}`);
      const r = await buildReport({
        source,
        services,
        version: plan.imageVersion,
        gitCommit: rev.commit,
        sourceDateEpoch: rev.time,
        base,
        push: { registry, namespace },
        contextDir: join(out, 'app'),
        registryOptions: access,
        progress: (l) => p.log(l),
        cache: { file: join(out, BUILD_CACHE_FILE), read: o.noCache !== true },
      });
      const doc = r.document;
      await writeBuildDocument(join(out, 'build.json'), doc);
      const keys = await attestationKeys({ source, images: doc, registries, signing, revision: rev, secrets }, { version: plan.imageVersion, ref: o.ref, base, startedOn: started });
      const confirmed = new Set<string>();
      await Promise.all(doc.images.map(async (i) => {
        const why = await attested.confirm(i, keys.get(i.service)!, attestation);
        if (why === undefined) confirmed.add(i.service);
        else if (attested.reading && why !== NOT_RECORDED) p.log(`${i.service}: to attest and verify again: ${why}`);
      }));
      const built = r.images.filter((i) => !i.cached).length;
      const platforms = Object.keys(doc.images[0]?.platforms ?? {}).length;
      const cacheNote = o.noCache ? ' (--no-cache)' : `: ${built} built, ${doc.images.length - built} unchanged (input cache); ${confirmed.size} with the referrers verified before`;
      return { value: { images: doc, keys, confirmed }, did: `${doc.images.length} images × ${platforms} platforms, by digest${cacheNote}` };
    });
    const pending: BuildDocument = { images: images.images.filter((i) => !confirmed.has(i.service)) };
    const unchanged = (what: string) => ({ value: undefined, did: `skipped: ${confirmed.size} image(s) unchanged, ${what} (cache: referrers present by digest)`, skipped: true });
    const plusCached = confirmed.size ? `; ${confirmed.size} unchanged (cache)` : '';

    const support = await p.step('support-images', () => supportImagesStep({ source, out, mode: supportMode, registry, namespace, registries, access, sourceDateEpoch: rev.time, noCache: o.noCache === true }, sio));

    // Every document is made from all the images (provenance parameters name every service); only `pending` ones are attached.
    const inputs: AttachInputs = { source, images, registries, signing, revision: rev, secrets };
    await p.step('sbom', async () => {
      if (!pending.images.length) return unchanged('their SBOMs attached');
      const so = await sbomOptions({ ...inputs, images: pending }, join(out, 'sbom'));
      const r = await sbomStep({ ...so, ...(o.noCache ? {} : { layerCache: join(out, LAYERS_CACHE_FILE) }) }, { ...sio, source });
      return { value: r, did: `${pending.images.length} images: SPDX per platform and index, attached${plusCached}` };
    });
    await p.step('sign', async () => {
      if (!pending.images.length) return unchanged('signed');
      return { value: await signStep(signOptions({ ...inputs, images: pending }), sio), did: `${pending.images.length} index digests signed (bundle + legacy .sig)${plusCached}` };
    });
    await p.step('provenance', async () => {
      if (!pending.images.length) return unchanged('their provenance attached');
      const po = await provenanceOptions(inputs, { version: plan.imageVersion, ref: o.ref, base, startedOn: started, outDir: join(out, 'provenance') });
      return { value: await provenanceStep({ ...po, images: pending }, sio), did: `${pending.images.length} SLSA v1 provenance documents attached${plusCached}` };
    });

    const chart = await p.step('chart', () => releaseChartStep({ source, out, plan, images, supportLock: support.lock, registry, namespace, sourceDateEpoch: rev.time, registries, signing }, sio));

    const ctx: ReleaseStepContext = {
      source, out, plan, revision: rev, images, registries, signing, io: sio, smoke: o.smoke === true,
      ...(support.lockFile ? { supportLockFile: support.lockFile } : {}),
      ...(chart ? { chart: { ref: chart.ref, digest: chart.digest, package: chart.package } } : {}),
    };
    let bundle: BundleRecord | undefined;
    const bundleHook = releaseHooks.bundle;
    const bundleUnavailable = bundleHook ? await bundleHook.unavailable?.(ctx) : 'no bundle step registered (ci/src/release/hooks.ts; ci/src/bundle/)';
    if (bundleHook && !bundleUnavailable) {
      bundle = await p.step('bundle', async () => {
        const r = await bundleHook.run(ctx);
        return { value: r.record, did: r.did };
      });
    } else p.skip('bundle', `skipped: ${bundleUnavailable}`);

    // A passed smoke record of an earlier run (dist/release.json) for exactly what this run would
    // test (smokeSubject: images, support images, bundle) is kept instead of running it again;
    // --no-cache runs it again. Without --smoke such records are kept too: they still hold.
    // Read once: the record step compares the new record with it too (only that step writes it).
    const previous = await readReleaseRecord(out);
    const earlier = o.noCache ? undefined : previous;
    const subject = smokeSubject(images, support.images, bundle);
    const kept = (name: string) => earlier?.smoke?.find((r) => r.smoke === name && r.passed && r.subject === subject);
    const smoke: SmokeRecord[] = [];
    const runnable = releaseHooks.smoke.filter((s) => !s.unavailable?.(ctx));
    const keptOthers = () => releaseHooks.smoke.filter((s) => !runnable.includes(s)).flatMap((s) => kept(s.name) ?? []);
    if (runnable.length) {
      await p.step('smoke', async () => {
        const did: string[] = [];
        for (const s of runnable) {
          const before = kept(s.name);
          if (before) {
            smoke.push(before);
            did.push(`${s.name} passed before for these digests (${before.finishedAt}; kept, not run again)`);
            continue;
          }
          const r = await s.run({ ...ctx, ...(bundle ? { bundle } : {}) });
          smoke.push({ ...r.record, subject });
          if (!r.record.passed) throw new StellaError('VERIFY_FAILED', `${s.name} failed:\n  - ${r.record.failures.join('\n  - ')}`);
          did.push(`${s.name} passed`);
        }
        smoke.push(...keptOthers());
        return { value: smoke, did: did.join('; ') };
      });
    } else {
      smoke.push(...keptOthers());
      // One line per reason: "smoke-compose, smoke-airgap: not asked for (…)".
      const reasons = new Map<string, string[]>();
      for (const s of releaseHooks.smoke) {
        const r = s.unavailable?.(ctx) ?? 'unavailable';
        reasons.set(r, [...(reasons.get(r) ?? []), s.name]);
      }
      const why = [...reasons].map(([r, names]) => `${names.join(', ')}: ${r}`).join('; ');
      const keptNote = smoke.length ? `; kept the earlier passed record(s) for these digests: ${smoke.map((r) => r.smoke).join(', ')}` : '';
      p.skip('smoke', `skipped: ${why || 'no smoke step registered (ci/src/release/hooks.ts)'}${keptNote}`);
    }

    await p.step('verify', async () => {
      const r = pending.images.length ? await verifyStep({ images: pending, registries, trust: signing.trust }, sio) : [];
      for (const i of images.images) if (confirmed.has(i.service)) p.log(`${i.service}: confirmed by digest (its referrers are the ones verified before)`);
      // What verified is recorded: a re-run confirms it by digest instead of verifying it again.
      for (const i of pending.images) await attested.record(i, keys.get(i.service)!, attestation);
      await attested.save();
      const fully = `${pending.images.length} images: signatures, SBOMs, provenance verified by digest`;
      return { value: r, did: confirmed.size ? `${pending.images.length ? `${fully}; ` : ''}${confirmed.size} images confirmed by digest (verified before; referrers unchanged)` : fully };
    });
    const tags = await p.step('publish', async () => {
      const r = await publishStep({ ...publishOptions({ images, registries, trust: signing.trust, plan }), verified: true }, sio);
      const written = r.filter((t) => t.written).length;
      return { value: r, did: `${r.length} tags: ${written} written, ${r.length - written} unchanged` };
    });

    const recorded = await p.step('record', async () => {
      const digests: DigestEntry[] = [
        ...images.images.map((i) => ({ name: i.repository, digest: i.digest })),
        ...support.images.map((i) => ({ name: i.repository, digest: i.digest })),
        ...(chart ? [{ name: chart.ref.slice(0, chart.ref.lastIndexOf('@')), digest: chart.digest }] : []),
      ];
      const recordOf = (steps: readonly StepTiming[]): ReleaseRecord => ({
        version: plan.version,
        channel: plan.channel,
        gitCommit: rev.commit,
        sourceDateEpoch: rev.time,
        base,
        publicKey: publicKeyPath,
        images: images.images.map((i) => ({ service: i.service, repository: i.repository, digest: i.digest, platforms: { ...i.platforms }, referrers: { ...attested.referrersOf(i) }, tags: [...plan.tags] })),
        tags,
        dirty: rev.dirty,
        supportImages: support.images,
        ...(chart ? { chart: { ref: chart.ref, digest: chart.digest, version: chart.version, oci: chart.oci, tag: chart.tag, package: chart.package, packageDigest: chart.packageDigest } } : {}),
        ...(bundle ? { bundle } : {}),
        smoke,
        outputs: { digests: DIGESTS_FILE, checksums: CHECKSUMS_FILE, checksumsBundle: CHECKSUMS_BUNDLE },
        steps,
      });
      // release.json is itself on the release page (in checksums.txt): it records the steps up to
      // here, of the run that made the release. A re-run that changes nothing of the release
      // (sameRelease: all but its own step times and tag actions) leaves release.json as it is,
      // so checksums.txt and its signature stay too (keyless: no new transparency-log entry);
      // every run's own steps and tag actions are in LAST_RUN_FILE (not on the release page).
      const r = recordOf(p.steps);
      const before = previous;
      const keep = before !== undefined && sameRelease(before, r);
      if (!keep) await writeFile(join(out, 'release.json'), `${JSON.stringify(r, null, 2)}\n`);
      await mkdir(join(out, 'docs', 'release'), { recursive: true });
      const kept = keep ? before : r;
      const compatibility = compatibilityRow(source, kept);
      await writeFile(join(out, COMPATIBILITY_FILE), `${JSON.stringify(compatibility, null, 2)}\n`);
      await writeFile(join(out, 'docs', 'release', 'image-catalog.md'), imageCatalogWithDigests(kept, compatibility));
      const w = await writeReleaseOutputs({ out, digests, signer: signing.signer, trust: signing.trust });
      const recordNote = keep ? 'release.json unchanged (this run: ' + LAST_RUN_FILE + ')' : 'release.json written';
      return { value: { record: r, kept: keep }, did: `${recordNote}; ${digests.length} digests, ${w.files} files checksummed${w.resigned ? ', checksums signed' : ', checksums unchanged (not re-signed)'}` };
    });
    await writeFile(join(out, LAST_RUN_FILE), `${JSON.stringify({ version: plan.version, startedAt: started.toISOString(), releaseJson: recorded.kept ? 'unchanged' : 'written', tags, steps: p.steps }, null, 2)}\n`);
    const record = recorded.record;
    p.summary(true);
    p.log(`release ${plan.version}: ${images.images.length} images signed, attested and tagged ${plan.tags.join(', ')}; record in ${join(out, 'release.json')}`);
    return { ...record, steps: p.steps };
  } catch (e) {
    p.summary(false);
    throw e;
  }
}
