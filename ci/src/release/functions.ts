/**
 * The pipeline's functions as the front ends (CLI and Dagger) call them: each
 * takes plain arguments (paths, strings, resolved secrets) and returns the
 * JSON document it prints. Each step's options come from the same builders
 * `release()` uses (./pipeline.ts), so a step run on its own writes what the
 * release writes.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { StellaError } from '../errors.ts';
import { readBuildDocument, build } from '../build/index.ts';
import { loadPrivateKey, loadPublicKey } from '../sign/index.ts';
import { planTags } from '../tags/index.ts';
import { selectServices } from '../catalog/index.ts';
import { flag } from '../dagger/names.ts';
import { Registries, identityTrust, signingKeyless, signingWithKey, type IdentityOptions, type KeylessOptions, type Signing, type StepIo } from './context.ts';
import type { BundleTrust } from '../sign/index.ts';
import { sbomStep } from './sbom.ts';
import { signStep } from './signatures.ts';
import { provenanceStep } from './provenance.ts';
import { verifyStep } from './verify.ts';
import { publishStep } from './publish.ts';
import { promote } from './promote.ts';
import { parseSupportImagesMode } from './extras.ts';
import { liveMode } from './live.ts';
import { redactError } from '../redact/index.ts';
import {
  DEFAULT_BASE_LAYOUT,
  DEFAULT_NAMESPACE,
  DEFAULT_OUT,
  DEFAULT_REGISTRY,
  buildAndPushBase,
  provenanceOptions,
  publishOptions,
  registryAccess,
  release,
  resolveRevision,
  sbomOptions,
  signOptions,
  stepSecrets,
  type AttachInputs,
  type ReleaseOptions,
} from './pipeline.ts';

type A = Readonly<Record<string, string | boolean | number | undefined>>;
type FnIo = StepIo & { readonly source: string };
const str = (a: A, k: string): string | undefined => (a[k] === undefined ? undefined : String(a[k]));
const req = (a: A, k: string, what: string): string => {
  const v = str(a, k);
  if (!v) throw new StellaError('INVALID_ARGUMENT', `${flag(k)} is required (${what})`);
  return v;
};

const accessOf = (a: A) => registryAccess({ registryUsername: str(a, 'registryUsername'), registryPassword: str(a, 'registryPassword'), dockerConfig: str(a, 'dockerConfig') });
const registries = (a: A) => new Registries(accessOf(a));
const secretsOf = (a: A) => stepSecrets({ keyPassword: str(a, 'keyPassword'), registryPassword: str(a, 'registryPassword'), identityToken: str(a, 'identityToken') });
const revision = (a: A, source: string) => resolveRevision(source, str(a, 'gitCommit'), a.sourceDateEpoch as number | undefined);

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

async function readArgFile(a: A, k: string, source: string): Promise<string | undefined> {
  const path = str(a, k);
  if (!path) return undefined;
  return readFile(resolve(source, path), 'utf8').catch((e: Error) => {
    throw new StellaError('INVALID_ARGUMENT', `${flag(k)} ${path}: ${e.message}`);
  });
}

async function identityOf(a: A, source: string): Promise<IdentityOptions> {
  return {
    certificateIdentity: str(a, 'certificateIdentity'),
    certificateOidcIssuer: str(a, 'certificateOidcIssuer'),
    trustedRoot: await readArgFile(a, 'trustedRoot', source),
    insecureIgnoreSct: a.insecureIgnoreSct === true,
  };
}

/** The public key (--public-key) or the keyless identity to trust; exactly one. */
async function trust(a: A, source: string): Promise<BundleTrust> {
  const pem = await readArgFile(a, 'publicKey', source);
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

/** What sbom, sign and provenance share, from their flags: as `release()` assembles it. */
async function attachInputs(a: A, io: FnIo): Promise<AttachInputs> {
  return { source: io.source, images: await images(a, io.source), registries: registries(a), signing: keySigning(a), revision: revision(a, io.source), secrets: secretsOf(a) };
}

const json = (v: unknown) => JSON.stringify(v, null, 2);

export async function buildBaseFn(a: A, io: FnIo): Promise<string> {
  const base = await buildAndPushBase(
    {
      registry: str(a, 'registry') ?? DEFAULT_REGISTRY,
      namespace: str(a, 'namespace') ?? DEFAULT_NAMESPACE,
      layout: resolve(io.source, str(a, 'ociLayout') ?? DEFAULT_BASE_LAYOUT),
      sourceDateEpoch: revision(a, io.source).time,
      registries: registries(a),
      updateLock: a.updateLock === true,
    },
    io,
  );
  return json(base);
}

export async function buildFn(a: A, io: FnIo): Promise<string> {
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
    registryOptions: accessOf(a),
    progress: (l) => io.progress(l),
  });
  return json(doc);
}

export async function sbomFn(a: A, io: FnIo): Promise<string> {
  const outDir = str(a, 'outDir');
  return json({ sboms: await sbomStep(await sbomOptions(await attachInputs(a, io), outDir ? resolve(io.source, outDir) : undefined), io) });
}

export async function signFn(a: A, io: FnIo): Promise<string> {
  return json({ signatures: await signStep(signOptions({ images: await images(a, io.source), registries: registries(a), signing: keySigning(a) }), io) });
}

export async function provenanceFn(a: A, io: FnIo): Promise<string> {
  const startedOn = new Date();
  const ref = str(a, 'ref');
  const plan = planTags({ version: req(a, 'version', 'the version being released'), ref });
  const o = await provenanceOptions(await attachInputs(a, io), { version: plan.imageVersion, ref, base: req(a, 'base', 'the base image the build used, by digest'), startedOn });
  return json({ provenance: await provenanceStep(o, io) });
}

export async function verifyFn(a: A, io: FnIo): Promise<string> {
  const r = await verifyStep({ images: await images(a, io.source), registries: registries(a), trust: await trust(a, io.source), spdxSchema: str(a, 'spdxSchema') }, io);
  return json({ verified: r });
}

export async function publishFn(a: A, io: FnIo): Promise<string> {
  const plan = planTags({ version: req(a, 'version', 'the version whose tags to publish'), ref: str(a, 'ref'), date: str(a, 'date') });
  const r = await publishStep(publishOptions({ images: await images(a, io.source), registries: registries(a), trust: await trust(a, io.source), plan, dryRun: a.dryRun === true }), io);
  return json({ tags: r });
}

/**
 * On a terminal (stderr a TTY, TERM not dumb, no --json) release and promote draw a live view on
 * stderr, redacted of the resolved secrets as the CLI redacts its own lines; else plain lines.
 */
function liveTarget(a: A, io: FnIo): ReleaseOptions['live'] {
  const { live, color } = liveMode(process.stderr, process.env, io.emit !== undefined);
  if (!live) return undefined;
  const secrets = ['key', 'keyPassword', 'registryPassword', 'identityToken'].map((k) => str(a, k)).filter((x): x is string => x !== undefined);
  return { stream: process.stderr, color, redact: (t) => redactError(t, secrets) };
}

export async function releaseFn(a: A, io: FnIo): Promise<string> {
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
      out: resolve(io.source, str(a, 'out') ?? DEFAULT_OUT),
      gitCommit: str(a, 'gitCommit'),
      sourceDateEpoch: a.sourceDateEpoch as number | undefined,
      dryRun: a.dryRun === true,
      allowDirty: a.allowDirty === true,
      json: io.emit !== undefined,
      supportImages: parseSupportImagesMode(str(a, 'supportImages')),
      noCache: a.noCache === true,
      smoke: a.smoke === true,
      live: liveTarget(a, io),
    },
    io,
  );
  return json(record);
}

export async function promoteFn(a: A, io: FnIo): Promise<string> {
  const token = str(a, 'identityToken');
  if (token && str(a, 'key')) throw new StellaError('INVALID_ARGUMENT', 'give --key or --identity-token, not both');
  const signer = token ? signingKeyless(keylessOf(a)!).signer : str(a, 'key') ? keySigning(a).signer : undefined;
  const result = await promote(
    {
      source: io.source,
      rcRecord: resolve(io.source, req(a, 'rcRecord', "the rc's release.json, e.g. dist/release.json of the rc")),
      version: str(a, 'version'),
      smokeRecords: str(a, 'smokeRecords')?.split(',').map((f) => resolve(io.source, f.trim())).filter(Boolean),
      registries: registries(a),
      trust: await trust(a, io.source),
      signer,
      out: resolve(io.source, str(a, 'out') ?? `${DEFAULT_OUT}/promoted`),
      dryRun: a.dryRun === true,
      json: io.emit !== undefined,
      live: liveTarget(a, io),
    },
    io,
  );
  return json(result);
}
