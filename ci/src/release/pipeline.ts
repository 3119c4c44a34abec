/**
 * The release, top to bottom. Each step is a function over typed inputs that
 * passes digests, never tags, to the next; tags are written last, after
 * everything they will point to has been verified.
 *
 *   plan        the tags the version publishes (refuses anything outside the scheme)
 *   key         the signing key: given, or generated for a local release
 *   base        the runtime base, by digest: given, or built offline and pushed
 *   build       11 images × 2 platforms, reproducible, pushed by digest
 *   sbom        SPDX per platform and per index: signed attestation + plain referrer
 *   sign        cosign v3 bundle signature + legacy .sig, over index digests
 *   provenance  SLSA v1, signed, over index and platform digests
 *   publish     verify everything, decide every tag, then write tags
 *   record      dist/: build.json, release.json, SBOMs, provenance, public key, image catalog
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { StellaError, inStep } from '../errors.ts';
import { planTags, type TagPlan } from '../tags/index.ts';
import { SOURCE_URL, selectServices } from '../catalog/index.ts';
import { fetchBaseInputs, buildBase, readNodePin } from '../base/index.ts';
import { build, writeBuildDocument, type BuildDocument } from '../build/index.ts';
import { pushLayout, type Credentials } from '../registry/index.ts';
import { emptyTrustedRoot, generateKeyPair, loadPrivateKey, type BundleTrust } from '../sign/index.ts';
import { Registries, dockerConfigPath, identityTrust, signingKeyless, signingWithKey, splitRepository, type IdentityOptions, type KeylessOptions, type RegistryAccess, type Signing, type StepIo } from './context.ts';
import { sourceRevision, type SourceRevision } from './git.ts';
import { sbomStep, type SbomStepOptions } from './sbom.ts';
import { signStep, type SignStepOptions } from './signatures.ts';
import { provenanceStep, type ProvenanceStepOptions } from './provenance.ts';
import { publishStep, type PublishOptions, type TagResult } from './publish.ts';
import { imageCatalogWithDigests } from './catalog-doc.ts';

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
  /** Everything but the tags: build, attach and verify, then report the tag decisions. */
  readonly dryRun?: boolean;
}

export interface ReleaseRecord {
  readonly version: string;
  readonly channel: TagPlan['channel'];
  readonly gitCommit: string;
  readonly sourceDateEpoch: number;
  readonly base: string;
  /** The public key verifiers trust (key signing); absent for keyless releases. */
  readonly publicKey?: string;
  readonly images: readonly { service: string; repository: string; digest: string; platforms: Record<string, string>; tags: string[] }[];
  readonly tags: readonly TagResult[];
}

export function registryCredentials(username?: string, password?: string): Credentials | undefined {
  if (password !== undefined && !username) throw new StellaError('INVALID_ARGUMENT', 'a registry password needs --registry-username');
  return username && password !== undefined ? { username, password } : undefined;
}

/**
 * Keyless signing when an identity token is given (verification then trusts the
 * given identity and trusted root); else the given key, or a generated local one.
 */
async function releaseSigning(o: ReleaseOptions, out: string, io: StepIo): Promise<{ signing: Signing & { trust: NonNullable<Signing['trust']> }; publicKeyPath?: string }> {
  if (o.keyless) {
    if (o.key) throw new StellaError('INVALID_ARGUMENT', 'give --key or --identity-token, not both');
    const trust = identityTrust(o.identity ?? {});
    if (!trust) throw new StellaError('INVALID_ARGUMENT', 'keyless signing (--identity-token) needs --certificate-identity, --certificate-oidc-issuer and --trusted-root, so that the release can be verified before it is tagged');
    return { signing: { ...signingKeyless(o.keyless), trust } };
  }
  const { signing, publicKeyPath } = await signingKey(o, out, io);
  return { signing: { ...signing, trust: { publicKeyPem: signing.key!.publicKeyPem } }, publicKeyPath };
}

/** Loads the given key, or generates a local one (written to <out>/keys, mode 0600). */
async function signingKey(o: ReleaseOptions, out: string, io: StepIo): Promise<{ signing: Signing; publicKeyPath: string }> {
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
  const key = loadPrivateKey(pem, password, 'signing key');
  const publicKeyPath = join(keys, 'cosign.pub');
  await writeFile(publicKeyPath, key.publicKeyPem);
  // What `cosign verify-attestation --trusted-root` needs to verify key-signed bundles fully offline.
  await writeFile(join(keys, 'trusted_root.json'), `${JSON.stringify(emptyTrustedRoot(), null, 2)}\n`);
  return { signing: signingWithKey(key), publicKeyPath };
}

/** Runs one step, naming it in any error (the step's own code is kept). */
async function step<T>(name: string, io: StepIo, run: () => Promise<T>): Promise<T> {
  io.progress(`── ${name}`);
  try {
    return await run();
  } catch (e) {
    throw inStep(name, e);
  }
}

export async function release(o: ReleaseOptions, io: StepIo): Promise<ReleaseRecord> {
  const started = new Date();
  const source = resolve(o.source);
  const out = resolve(o.out ?? join(source, DEFAULT_OUT));
  const registry = o.registry ?? DEFAULT_REGISTRY;
  const namespace = o.namespace ?? DEFAULT_NAMESPACE;
  const secrets = stepSecrets({ keyPassword: o.keyPassword, registryPassword: o.registryPassword, identityToken: o.keyless?.identityToken });

  // plan: validate everything that needs no work first.
  const plan = planTags({ version: o.version, ref: o.ref, date: o.date });
  const services = selectServices(o.services).map((s) => s.name);
  if (o.base) baseImageOf(o.base);
  const access = registryAccess(o);
  const rev = resolveRevision(source, o.gitCommit, o.sourceDateEpoch);
  if (rev.dirty) io.progress(`warning: ${source} has uncommitted changes; the images are labelled ${rev.commit} but include them`);
  const registries = new Registries(access);
  await mkdir(out, { recursive: true });

  const { signing, publicKeyPath } = await step('key', io, () => releaseSigning(o, out, io));
  const base = o.base ?? (await step('base', io, async () => (await buildAndPushBase({ registry, namespace, layout: join(out, 'base-layout'), sourceDateEpoch: rev.time, registries, releaseVersion: plan.version }, io)).ref));

  io.progress(`building ${services.length} images for ${plan.imageVersion} at ${rev.commit.slice(0, 12)}`);
  const images: BuildDocument = await step('build', io, () => build({
    source,
    services,
    version: plan.imageVersion,
    gitCommit: rev.commit,
    sourceDateEpoch: rev.time,
    base,
    push: { registry, namespace },
    contextDir: join(out, 'app'),
    registryOptions: access,
    progress: (l) => io.progress(l),
  }));
  await writeBuildDocument(join(out, 'build.json'), images);

  const inputs: AttachInputs = { source, images, registries, signing, revision: rev, secrets };
  await step('sbom', io, async () => sbomStep(await sbomOptions(inputs, join(out, 'sbom')), { ...io, source }));
  await step('sign', io, () => signStep(signOptions(inputs), io));
  await step('provenance', io, async () => provenanceStep(await provenanceOptions(inputs, { version: plan.imageVersion, ref: o.ref, base, startedOn: started, outDir: join(out, 'provenance') }), io));

  const tags = await step('publish', io, () => publishStep(publishOptions({ images, registries, trust: signing.trust, plan, dryRun: o.dryRun }), io));

  const record: ReleaseRecord = {
    version: plan.version,
    channel: plan.channel,
    gitCommit: rev.commit,
    sourceDateEpoch: rev.time,
    base,
    publicKey: publicKeyPath,
    images: images.images.map((i) => ({ service: i.service, repository: i.repository, digest: i.digest, platforms: { ...i.platforms }, tags: [...plan.tags] })),
    tags,
  };
  await writeFile(join(out, 'release.json'), `${JSON.stringify(record, null, 2)}\n`);
  await mkdir(join(out, 'docs', 'release'), { recursive: true });
  await writeFile(join(out, 'docs', 'release', 'image-catalog.md'), imageCatalogWithDigests(record));
  io.progress(`release ${plan.version}: ${images.images.length} images signed, attested and ${o.dryRun ? 'verified (dry run: no tags written)' : `tagged ${plan.tags.join(', ')}`}; record in ${join(out, 'release.json')}`);
  return record;
}
