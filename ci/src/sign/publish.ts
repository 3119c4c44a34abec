/**
 * Sign-and-store: signs an image (or attests a statement about it) and stores
 * the result with the registry client, in the layouts cosign reads:
 *   - the bundle as an OCI 1.1 referrer of the image (referrers API, or the
 *     `sha256-<hex>` fallback index on registries without it);
 *   - for key signing, also the legacy `sha256-<hex>.sig` signature, merged with
 *     any signatures already there (read-modify-write).
 * The subject is always a digest; nothing is signed by tag.
 */
import type { RegistryClient } from '../registry/client.ts';
import { StellaError } from '../errors.ts';
import { assertDigest, type Descriptor, type ImageManifest } from '../oci/types.ts';
import { signLegacy } from './legacy.ts';
import type { SigningKey } from './keys.ts';
import { bundleReferrerManifest, legacySignatureManifest, legacySignatureTag, type BuiltManifest } from './manifests.ts';
import { signStatement, type SigstoreBundle, type StatementSigner } from './sign.ts';
import { imageSignatureStatement, type InTotoStatement } from './statement.ts';

export interface PublishSignatureOptions {
  /** Repository within the client's registry, e.g. `stellaops/stella-api`. */
  readonly repo: string;
  /** The image's manifest or index descriptor (mediaType, digest, size). */
  readonly subject: Descriptor;
  readonly signer: StatementSigner;
  /**
   * Also write the legacy cosign v2 `.sig` signature (key signing only; `cosign verify`
   * 2.x reads only this). Default: true for key signing, refused for keyless.
   */
  readonly legacy?: boolean;
  /** `docker-reference` of the legacy payload: registry/repository, no tag. Default `<client.registry>/<repo>`. */
  readonly dockerReference?: string;
  /** RFC 3339 time for the referrer's `org.opencontainers.image.created`; omitted by default (reproducible digest). */
  readonly created?: string;
}

export interface PublishedSignature {
  readonly bundle: SigstoreBundle;
  /** Digest of the bundle referrer manifest. */
  readonly referrer: string;
  /** How the referrer was attached: `api` or `fallback` (`sha256-<hex>` index). */
  readonly mode: 'api' | 'fallback';
  /** Digest of the `.sig` manifest written, when legacy was on. */
  readonly legacy?: string;
}

/** Signs `opts.subject` as cosign v3 does (sign/v1 statement) and stores bundle (+ legacy `.sig`). */
export async function publishImageSignature(client: RegistryClient, opts: PublishSignatureOptions): Promise<PublishedSignature> {
  assertDigest(opts.subject.digest, `image signature for ${opts.repo}`);
  const what = `${client.registry}/${opts.repo}@${opts.subject.digest}`;
  const legacy = opts.legacy ?? opts.signer.kind === 'key';
  if (legacy && opts.signer.kind !== 'key') {
    throw new StellaError('INVALID_ARGUMENT', `${what}: a legacy .sig signature needs key signing; keyless signing writes the bundle only`);
  }
  const stored = await publishAttestation(client, opts.repo, opts.subject, imageSignatureStatement(opts.subject.digest), opts.signer, opts.created);
  if (!legacy || opts.signer.kind !== 'key') return stored;

  const legacyDigest = await publishLegacySignature(client, opts.repo, opts.subject.digest, opts.signer.key, opts.dockerReference ?? `${client.registry}/${opts.repo}`);
  return { ...stored, legacy: legacyDigest };
}

/**
 * Adds a cosign v2 simple-signing signature of `digest` to its `sha256-<hex>.sig`
 * manifest, keeping the signatures already there. Returns the manifest digest.
 */
export async function publishLegacySignature(client: RegistryClient, repo: string, digest: string, key: SigningKey, dockerReference: string): Promise<string> {
  const tag = legacySignatureTag(digest);
  const sig = signLegacy(key, dockerReference, digest);
  let existing: ImageManifest | undefined;
  if ((await client.resolve(repo, tag)) !== undefined) {
    existing = JSON.parse(new TextDecoder().decode((await client.getManifest(repo, tag)).bytes)) as ImageManifest;
  }
  const manifest = legacySignatureManifest([sig], existing);
  await pushBuilt(client, repo, manifest);
  return client.putManifest(repo, tag, manifest.manifestBytes, manifest.mediaType);
}

/**
 * Signs `statement` (SBOM, SLSA provenance, …; its subject must carry `subject.digest`)
 * and attaches the bundle as a referrer of `subject`.
 */
export async function publishAttestation(
  client: RegistryClient,
  repo: string,
  subject: Descriptor,
  statement: InTotoStatement,
  signer: StatementSigner,
  created?: string,
): Promise<PublishedSignature> {
  const what = `${client.registry}/${repo}@${subject.digest}`;
  const hex = assertDigest(subject.digest, `attestation subject in ${repo}`).slice('sha256:'.length);
  if (!statement.subject.some((s) => s.digest?.['sha256'] === hex)) {
    throw new StellaError('INVALID_ARGUMENT', `${what}: the ${statement.predicateType} statement does not name this image: expected a subject with digest ${subject.digest}`);
  }
  const bundle = await signStatement(statement, signer, what);
  const referrer = bundleReferrerManifest(bundle, subject, statement.predicateType, created ? { created } : {});
  await pushBuilt(client, repo, referrer);
  const attached = await client.attachReferrer(repo, subject.digest, referrer.manifestBytes, referrer.mediaType);
  return { bundle, referrer: attached.digest, mode: attached.mode };
}

async function pushBuilt(client: RegistryClient, repo: string, built: BuiltManifest): Promise<void> {
  for (const b of built.blobs) await client.pushBlob(repo, b.bytes, b.digest);
}
