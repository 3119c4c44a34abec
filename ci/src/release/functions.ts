/**
 * The publishing functions as the front ends (CLI and Dagger) call them: each
 * takes plain arguments (paths, strings, resolved secrets) and returns the
 * JSON document it prints.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StellaError } from '../errors.ts';
import { readBuildDocument, build } from '../build/index.ts';
import { buildBase, fetchBaseInputs } from '../base/index.ts';
import { pushLayout } from '../registry/index.ts';
import { loadPrivateKey, loadPublicKey } from '../sign/index.ts';
import { planTags } from '../tags/index.ts';
import { selectServices } from '../catalog/index.ts';
import { Registries, dockerConfigPath, identityTrust, signingKeyless, signingWithKey, type IdentityOptions, type KeylessOptions, type Signing, type StepIo } from './context.ts';
import type { BundleTrust } from '../sign/index.ts';
import type { Credentials } from '../registry/index.ts';
import { sourceRevision } from './git.ts';
import { sbomStep } from './sbom.ts';
import { signStep } from './signatures.ts';
import { provenanceStep } from './provenance.ts';
import { verifyStep } from './verify.ts';
import { publishStep } from './publish.ts';
import { BASE_REPOSITORY, DEFAULT_NAMESPACE, DEFAULT_REGISTRY, SOURCE_REPOSITORY, registryCredentials, release } from './pipeline.ts';

type A = Readonly<Record<string, string | boolean | number | undefined>>;
const str = (a: A, k: string): string | undefined => (a[k] === undefined ? undefined : String(a[k]));
const req = (a: A, k: string, what: string): string => {
  const v = str(a, k);
  if (!v) throw new StellaError('INVALID_ARGUMENT', `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is required (${what})`);
  return v;
};

function registries(a: A): Registries {
  return new Registries(registryAccess(a));
}

/** Credentials from the flags, else from a Docker config file (given, or the user's default one). */
function registryAccess(a: A): { credentials?: Credentials; dockerConfig?: string } {
  const credentials = registryCredentials(str(a, 'registryUsername'), str(a, 'registryPassword'));
  if (credentials) return { credentials };
  const dockerConfig = dockerConfigPath(str(a, 'dockerConfig'));
  return dockerConfig ? { dockerConfig } : {};
}

/** A key (--key) or keyless (--identity-token) signer; exactly one. */
function keySigning(a: A): Signing {
  const token = str(a, 'identityToken');
  if (token && str(a, 'key')) throw new StellaError('INVALID_ARGUMENT', 'give --key or --identity-token, not both');
  if (token) return signingKeyless(keylessOf(a)!);
  return signingWithKey(loadPrivateKey(req(a, 'key', 'the signing key: env:NAME or file:PATH, or --identity-token for keyless signing'), str(a, 'keyPassword') ?? '', 'signing key'));
}

function keylessOf(a: A): KeylessOptions | undefined {
  const token = str(a, 'identityToken');
  return token ? { identityToken: token, fulcioUrl: str(a, 'fulcioUrl'), rekorUrl: str(a, 'rekorUrl') } : undefined;
}

async function readArgFile(a: A, k: string, flag: string, source: string): Promise<string | undefined> {
  const path = str(a, k);
  if (!path) return undefined;
  return readFile(resolve(source, path), 'utf8').catch((e: Error) => {
    throw new StellaError('INVALID_ARGUMENT', `${flag} ${path}: ${e.message}`);
  });
}

async function identityOf(a: A, source: string): Promise<IdentityOptions> {
  return {
    certificateIdentity: str(a, 'certificateIdentity'),
    certificateOidcIssuer: str(a, 'certificateOidcIssuer'),
    trustedRoot: await readArgFile(a, 'trustedRoot', '--trusted-root', source),
    insecureIgnoreSct: a.insecureIgnoreSct === true,
  };
}

/** The public key (--public-key) or the keyless identity to trust; exactly one. */
async function trust(a: A, source: string): Promise<BundleTrust> {
  const pem = await readArgFile(a, 'publicKey', '--public-key', source);
  const identity = identityTrust(await identityOf(a, source));
  if (pem && identity) throw new StellaError('INVALID_ARGUMENT', 'give --public-key or the keyless identity options, not both');
  if (identity) return identity;
  if (!pem) throw new StellaError('INVALID_ARGUMENT', 'verification needs --public-key (e.g. dist/keys/cosign.pub), or --certificate-identity, --certificate-oidc-issuer and --trusted-root for keyless signatures');
  loadPublicKey(pem, String(a.publicKey));
  return { publicKeyPem: pem };
}

async function images(a: A, source: string) {
  return readBuildDocument(resolve(source, req(a, 'images', 'the build document written by `build --output`, e.g. dist/build.json')));
}

function revision(a: A, source: string): { commit: string; time: number } {
  const commit = str(a, 'gitCommit');
  const time = a.sourceDateEpoch as number | undefined;
  if (commit && time !== undefined) return { commit, time };
  const rev = sourceRevision(source);
  return { commit: commit ?? rev.commit, time: time ?? rev.time };
}

const secretsOf = (a: A) => [a.keyPassword, a.registryPassword, a.identityToken].filter((s): s is string => typeof s === 'string' && s.length > 0);
const json = (v: unknown) => JSON.stringify(v, null, 2);

export async function buildBaseFn(a: A, io: StepIo & { source: string }): Promise<string> {
  const registry = str(a, 'registry') ?? DEFAULT_REGISTRY;
  const namespace = str(a, 'namespace') ?? DEFAULT_NAMESPACE;
  const layout = resolve(io.source, str(a, 'ociLayout') ?? 'dist/base-layout');
  await fetchBaseInputs({ updateLock: a.updateLock === true, log: (l) => io.progress(l) });
  const { time } = revision(a, io.source);
  const base = await buildBase({ outLayout: layout, sourceDateEpoch: time });
  const repo = `${namespace}/${BASE_REPOSITORY}`;
  await pushLayout(registries(a).client(registry), layout, repo, base.indexDigest);
  return json({ ref: `${registry}/${repo}@${base.indexDigest}`, digest: base.indexDigest, platforms: base.platforms, layout, nodeVersion: base.nodeVersion });
}

export async function buildFn(a: A, io: StepIo & { source: string }): Promise<string> {
  const { commit, time } = revision(a, io.source);
  const layout = str(a, 'ociLayout');
  const registry = str(a, 'registry');
  const doc = await build({
    source: io.source,
    services: selectServices(str(a, 'services')).map((s) => s.name),
    version: req(a, 'version', 'the version baked into the images'),
    gitCommit: commit,
    sourceDateEpoch: time,
    base: req(a, 'base', 'the base image by digest: host/repo@sha256:… or oci:<dir>'),
    push: registry || !layout ? { registry: registry ?? DEFAULT_REGISTRY, namespace: str(a, 'namespace') ?? DEFAULT_NAMESPACE } : undefined,
    ociLayout: layout ? resolve(io.source, layout) : undefined,
    platforms: str(a, 'platforms')?.split(',').map((p) => p.trim()),
    registryOptions: registryAccess(a),
    progress: (l) => io.progress(l),
  });
  return json(doc);
}

export async function sbomFn(a: A, io: StepIo & { source: string }): Promise<string> {
  const { time } = revision(a, io.source);
  const r = await sbomStep({ images: await images(a, io.source), registries: registries(a), signing: keySigning(a), sourceDateEpoch: time, toolVersion: 'stella-release', secrets: secretsOf(a), outDir: str(a, 'outDir') }, io);
  return json({ sboms: r });
}

export async function signFn(a: A, io: StepIo & { source: string }): Promise<string> {
  return json({ signatures: await signStep({ images: await images(a, io.source), registries: registries(a), signing: keySigning(a) }, io) });
}

export async function provenanceFn(a: A, io: StepIo & { source: string }): Promise<string> {
  const { commit, time } = revision(a, io.source);
  const plan = planTags({ version: req(a, 'version', 'the version being released'), ref: str(a, 'ref') });
  const base = req(a, 'base', 'the base image the build used, by digest');
  const doc = await images(a, io.source);
  const now = new Date();
  const r = await provenanceStep(
    {
      images: doc,
      registries: registries(a),
      signing: keySigning(a),
      version: plan.imageVersion,
      source: { repository: SOURCE_REPOSITORY, commit, ref: str(a, 'ref') },
      sourceDateEpoch: time,
      baseImage: { uri: base.slice(0, base.lastIndexOf('@')), digest: base.slice(base.lastIndexOf('@') + 1) },
      builderId: 'https://stellaops.io/builders/stella-release/local',
      invocation: { startedOn: now, finishedOn: now },
      toolVersions: { node: process.version },
      secrets: secretsOf(a),
    },
    io,
  );
  return json({ provenance: r });
}

export async function verifyFn(a: A, io: StepIo & { source: string }): Promise<string> {
  const r = await verifyStep({ images: await images(a, io.source), registries: registries(a), trust: await trust(a, io.source), spdxSchema: str(a, 'spdxSchema') }, io);
  return json({ verified: r });
}

export async function publishFn(a: A, io: StepIo & { source: string }): Promise<string> {
  const plan = planTags({ version: req(a, 'version', 'the version whose tags to publish'), ref: str(a, 'ref'), date: str(a, 'date') });
  const r = await publishStep({ images: await images(a, io.source), registries: registries(a), trust: await trust(a, io.source), plan, dryRun: a.dryRun === true }, io);
  return json({ tags: r });
}

export async function releaseFn(a: A, io: StepIo & { source: string }): Promise<string> {
  const record = await release(
    {
      source: io.source,
      version: req(a, 'version', 'vX.Y.Z, vX.Y.Z-rc.N, edge or nightly'),
      ref: str(a, 'ref'),
      date: str(a, 'date'),
      registry: str(a, 'registry'),
      namespace: str(a, 'namespace'),
      services: str(a, 'services'),
      base: str(a, 'base'),
      key: str(a, 'key'),
      keyPassword: str(a, 'keyPassword'),
      keyless: keylessOf(a),
      identity: await identityOf(a, io.source),
      registryUsername: str(a, 'registryUsername'),
      registryPassword: str(a, 'registryPassword'),
      dockerConfig: str(a, 'dockerConfig'),
      out: str(a, 'out') ? resolve(io.source, str(a, 'out')!) : join(io.source, 'dist'),
      dryRun: a.dryRun === true,
    },
    io,
  );
  return json(record);
}
