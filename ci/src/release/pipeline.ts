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
import { emptyTrustedRoot, generateKeyPair, loadPrivateKey } from '../sign/index.ts';
import { Registries, dockerConfigPath, identityTrust, signingKeyless, signingWithKey, type IdentityOptions, type KeylessOptions, type Signing, type StepIo } from './context.ts';
import { sourceRevision } from './git.ts';
import { sbomStep } from './sbom.ts';
import { signStep } from './signatures.ts';
import { provenanceStep } from './provenance.ts';
import { publishStep, type TagResult } from './publish.ts';
import { imageCatalogWithDigests } from './catalog-doc.ts';

export const DEFAULT_REGISTRY = '127.0.0.1:5000';
export const DEFAULT_NAMESPACE = 'stellaops';
export const BASE_REPOSITORY = 'stella-base-node';
export const SOURCE_REPOSITORY = `git+${SOURCE_URL}`;

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

async function offlineBase(o: { registry: string; namespace: string; out: string; sourceDateEpoch: number; registries: Registries }, io: StepIo): Promise<string> {
  io.progress('fetching the offline base inputs (Debian packages, Node binaries; cached)');
  await fetchBaseInputs({ log: (l) => io.progress(l) });
  const layout = join(o.out, 'base-layout');
  const base = await buildBase({ outLayout: layout, sourceDateEpoch: o.sourceDateEpoch });
  const repo = `${o.namespace}/${BASE_REPOSITORY}`;
  await pushLayout(o.registries.client(o.registry), layout, repo, base.indexDigest);
  io.progress(`base ${o.registry}/${repo}@${base.indexDigest} (Node ${base.nodeVersion})`);
  return `${o.registry}/${repo}@${base.indexDigest}`;
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
  const out = resolve(o.out ?? join(source, 'dist'));
  const registry = o.registry ?? DEFAULT_REGISTRY;
  const namespace = o.namespace ?? DEFAULT_NAMESPACE;
  const secrets = [o.keyPassword, o.registryPassword, o.keyless?.identityToken].filter((s): s is string => !!s);

  // plan: validate everything that needs no work first.
  const plan = planTags({ version: o.version, ref: o.ref, date: o.date });
  const services = selectServices(o.services).map((s) => s.name);
  const credentials = registryCredentials(o.registryUsername, o.registryPassword);
  const dockerConfig = credentials ? undefined : dockerConfigPath(o.dockerConfig);
  const access = credentials ? { credentials } : dockerConfig ? { dockerConfig } : {};
  const rev = o.gitCommit && o.sourceDateEpoch !== undefined ? { commit: o.gitCommit, time: o.sourceDateEpoch, dirty: false } : sourceRevision(source);
  if (rev.dirty) io.progress(`warning: ${source} has uncommitted changes; the images are labelled ${rev.commit} but include them`);
  const registries = new Registries(access);
  await mkdir(out, { recursive: true });

  const { signing, publicKeyPath } = await step('key', io, () => releaseSigning(o, out, io));
  const base = o.base ?? (await step('base', io, () => offlineBase({ registry, namespace, out, sourceDateEpoch: rev.time, registries }, io)));

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

  const common = { images, registries, signing };
  await step('sbom', io, () => sbomStep({ ...common, sourceDateEpoch: rev.time, toolVersion: plan.imageVersion, secrets, outDir: join(out, 'sbom') }, { ...io, source }));
  await step('sign', io, () => signStep(common, io));
  const baseDigest = base.slice(base.lastIndexOf('@') + 1);
  const nodePin = await readNodePin(join(source, 'package.json'));
  await step('provenance', io, () => provenanceStep(
    {
      ...common,
      version: plan.imageVersion,
      source: { repository: SOURCE_REPOSITORY, commit: rev.commit, ref: o.ref },
      sourceDateEpoch: rev.time,
      baseImage: { uri: base.slice(0, base.lastIndexOf('@')), digest: baseDigest },
      builderId: 'https://stellaops.io/builders/stella-release/local',
      invocation: { id: randomUUID(), startedOn: started, finishedOn: new Date() },
      toolVersions: { node: process.version, 'stella-release': plan.imageVersion, nodeBase: nodePin },
      parameters: { registry, namespace, services: services.join(',') },
      secrets,
      outDir: join(out, 'provenance'),
    },
    io,
  ));

  const tags = await step('publish', io, () => publishStep({ images, registries, trust: signing.trust, plan, dryRun: o.dryRun }, io));

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
