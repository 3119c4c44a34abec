/**
 * What the release steps store next to an image digest, and finding it again:
 * signed statements (Sigstore bundles) and plain artifacts as OCI referrers,
 * and legacy cosign v2 `.sig` signatures. The documents and signatures come
 * from ci/src/sign, ci/src/sbom and ci/src/provenance (pure); every registry
 * write goes through ci/src/registry/referrers.ts (referrers API or the
 * `sha256-<hex>` fallback index, tagged read-modify-writes, tags).
 * Idempotent: an attestation that already verifies with the same predicate is
 * not signed or pushed again, so a re-run after a failure converges instead of
 * piling up referrers.
 */
import { isDeepStrictEqual } from 'node:util';
import { StellaError } from '../errors.ts';
import { EMPTY_JSON, EMPTY_JSON_DIGEST, MediaType, assertDigest, descriptorOf, jsonBytes, type Descriptor, type ImageManifest } from '../oci/types.ts';
import { pushReferrer, updateTaggedManifest, type RegistryClient } from '../registry/index.ts';
import {
  bundleReferrerManifest,
  legacySignatureManifest,
  legacySignatureTag,
  legacySignaturesOf,
  signLegacy,
  signStatement,
  verifyBundle,
  verifyLegacySignature,
  BUNDLE_PREDICATE_TYPE_ANNOTATION,
  type InTotoStatement,
  type SigningKey,
  type SigstoreBundle,
  type StatementSigner,
} from '../sign/index.ts';
import type { Signing } from './context.ts';

export interface Subject {
  readonly client: RegistryClient;
  readonly repo: string;
  /** The subject's descriptor: the image index or a platform manifest. */
  readonly descriptor: Descriptor;
  /** Names it in messages, e.g. `127.0.0.1:5000/stellaops/stella-api@sha256:…`. */
  readonly name: string;
}

export interface FoundAttestation {
  readonly referrer: Descriptor;
  readonly bundle: SigstoreBundle;
  readonly statement: InTotoStatement;
}

/** Fetches the subject's descriptor (media type and size) from the registry. */
export async function subjectOf(client: RegistryClient, repo: string, digest: string, name: string): Promise<Subject> {
  const m = await client.getManifest(repo, digest);
  return { client, repo, name, descriptor: { mediaType: m.mediaType, digest: m.digest, size: m.bytes.byteLength } };
}

/** Referrers that are Sigstore bundles of the given predicate type. */
export async function bundleReferrers(s: Subject, predicateType: string): Promise<Descriptor[]> {
  const all = await s.client.referrers(s.repo, s.descriptor.digest, { artifactType: MediaType.sigstoreBundle });
  return all.filter((d) => d.annotations?.[BUNDLE_PREDICATE_TYPE_ANNOTATION] === predicateType);
}

/** Reads the bundle a referrer manifest carries (its one layer). */
export async function readBundle(s: Subject, referrer: Descriptor): Promise<SigstoreBundle> {
  const m = JSON.parse(new TextDecoder().decode((await s.client.getManifest(s.repo, referrer.digest)).bytes)) as ImageManifest;
  const layer = m.layers.find((l) => l.mediaType === MediaType.sigstoreBundle);
  if (!layer) throw new Error(`referrer ${referrer.digest} of ${s.name} has no ${MediaType.sigstoreBundle} layer`);
  return JSON.parse(new TextDecoder().decode(await s.client.getBlob(s.repo, layer.digest))) as SigstoreBundle;
}

/**
 * Every attestation of `predicateType` on the subject that verifies under
 * `signing.trust` and names the subject's digest. `problems` collects why the
 * others were rejected (for messages).
 */
export async function verifiedAttestations(s: Subject, predicateType: string, signing: { readonly trust: NonNullable<Signing['trust']> }, problems: string[] = []): Promise<FoundAttestation[]> {
  const out: FoundAttestation[] = [];
  for (const referrer of await bundleReferrers(s, predicateType)) {
    try {
      const bundle = await readBundle(s, referrer);
      const statement = verifyBundle(bundle, signing.trust, { expectedSubjectDigest: s.descriptor.digest, expectedPredicateType: predicateType, artifact: s.name });
      out.push({ referrer, bundle, statement });
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  return out;
}

/**
 * Signs `statement` (its subject must carry the subject's digest) and attaches
 * the bundle as a referrer of the subject. Returns the referrer digest and how
 * it was attached (`api`, or `fallback`: the `sha256-<hex>` index).
 */
export async function publishAttestation(s: Subject, statement: InTotoStatement, signer: StatementSigner, created?: string): Promise<{ referrer: string; mode: 'api' | 'fallback'; bundle: SigstoreBundle }> {
  const what = `${s.client.registry}/${s.repo}@${s.descriptor.digest}`;
  const hex = assertDigest(s.descriptor.digest, `attestation subject in ${s.repo}`).slice('sha256:'.length);
  if (!statement.subject.some((x) => x.digest?.['sha256'] === hex)) {
    throw new StellaError('INVALID_ARGUMENT', `${what}: the ${statement.predicateType} statement does not name this image: expected a subject with digest ${s.descriptor.digest}`);
  }
  const bundle = await signStatement(statement, signer, what);
  const referrer = bundleReferrerManifest(bundle, s.descriptor, statement.predicateType, created ? { created } : {});
  const attached = await pushReferrer(s.client, s.repo, s.descriptor.digest, referrer);
  return { referrer: attached.digest, mode: attached.mode, bundle };
}

/** The legacy `.sig` manifest of an image and its signatures with their payloads, if any. */
export async function readLegacySignatures(
  client: RegistryClient,
  repo: string,
  digest: string,
): Promise<{ manifest: ImageManifest; signatures: { payload: Uint8Array; signatureB64: string }[] } | undefined> {
  const tag = legacySignatureTag(digest);
  if ((await client.resolve(repo, tag)) === undefined) return undefined;
  const manifest = JSON.parse(new TextDecoder().decode((await client.getManifest(repo, tag)).bytes)) as ImageManifest;
  const signatures = [];
  for (const x of legacySignaturesOf(manifest)) signatures.push({ payload: await client.getBlob(repo, x.layer.digest), signatureB64: x.signatureB64 });
  return { manifest, signatures };
}

/**
 * Adds a cosign v2 simple-signing signature of `digest` by `key` to its
 * `sha256-<hex>.sig` manifest (read-modify-write: other signers' signatures are
 * kept), unless a signature by this key already verifies there. `dockerReference`
 * is the repository without tag (the payload's `docker-reference`).
 */
export async function attachLegacySignature(client: RegistryClient, repo: string, digest: string, key: SigningKey, dockerReference: string): Promise<{ tag: string; written: boolean }> {
  const tag = legacySignatureTag(digest);
  const existing = await readLegacySignatures(client, repo, digest);
  const valid = existing?.signatures.some((x) => {
    try {
      verifyLegacySignature(x.payload, x.signatureB64, key.publicKeyPem, digest);
      return true;
    } catch {
      return false;
    }
  });
  if (valid) return { tag, written: false };
  const sig = signLegacy(key, dockerReference, digest);
  const { changed } = await updateTaggedManifest(client, repo, tag, (current) =>
    legacySignatureManifest([sig], current ? (JSON.parse(new TextDecoder().decode(current.bytes)) as ImageManifest) : undefined),
  );
  return { tag, written: changed };
}

/**
 * Signs `statement` and attaches it to the subject, unless an attestation of the
 * same predicate type with an identical statement already verifies there.
 * Returns the referrer digest and whether anything was written.
 */
export async function attest(
  s: Subject,
  statement: InTotoStatement,
  signing: Signing,
  /** Reduces a statement to what must match for an existing attestation to count (e.g. without run timestamps). */
  essence: (st: InTotoStatement) => unknown = (st) => st,
): Promise<{ digest: string; written: boolean }> {
  if (signing.key) {
    const wanted = JSON.parse(JSON.stringify(essence(statement)));
    for (const found of await verifiedAttestations(s, statement.predicateType, { trust: { publicKeyPem: signing.key.publicKeyPem } })) {
      if (isDeepStrictEqual(JSON.parse(JSON.stringify(essence(found.statement))), wanted)) {
        return { digest: found.referrer.digest, written: false };
      }
    }
  }
  const published = await publishAttestation(s, statement, signing.signer);
  return { digest: published.referrer, written: true };
}

/**
 * An OCI 1.1 artifact manifest carrying one file (e.g. an SPDX document as
 * `application/spdx+json`) with `subject` set, for tools that read the artifact
 * directly rather than through an attestation. Deterministic bytes.
 */
export function artifactManifest(artifactType: string, file: { bytes: Uint8Array; mediaType: string; title: string }, subject: Descriptor): { manifestBytes: Uint8Array; digest: string; blobs: { digest: string; bytes: Uint8Array }[] } {
  const layer = descriptorOf(file.mediaType, file.bytes, { annotations: { 'org.opencontainers.image.title': file.title } });
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    artifactType,
    config: { mediaType: MediaType.ociEmpty, digest: EMPTY_JSON_DIGEST, size: EMPTY_JSON.byteLength },
    layers: [layer],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
  };
  const manifestBytes = jsonBytes(manifest);
  return {
    manifestBytes,
    digest: descriptorOf(MediaType.ociManifest, manifestBytes).digest,
    blobs: [
      { digest: EMPTY_JSON_DIGEST, bytes: EMPTY_JSON },
      { digest: layer.digest, bytes: file.bytes },
    ],
  };
}

/** Attaches a plain artifact referrer (idempotent: same bytes, same digest, listed once). */
export async function attachArtifact(s: Subject, artifactType: string, file: { bytes: Uint8Array; mediaType: string; title: string }): Promise<string> {
  const a = artifactManifest(artifactType, file, s.descriptor);
  await pushReferrer(s.client, s.repo, s.descriptor.digest, { ...a, mediaType: MediaType.ociManifest });
  return a.digest;
}

/** The files of the plain artifacts of `artifactType` attached to the subject. */
export async function artifactFiles(s: Subject, artifactType: string): Promise<{ referrer: Descriptor; bytes: Uint8Array }[]> {
  const out: { referrer: Descriptor; bytes: Uint8Array }[] = [];
  for (const referrer of await s.client.referrers(s.repo, s.descriptor.digest, { artifactType })) {
    const m = JSON.parse(new TextDecoder().decode((await s.client.getManifest(s.repo, referrer.digest)).bytes)) as ImageManifest;
    const layer = m.layers[0];
    if (layer) out.push({ referrer, bytes: await s.client.getBlob(s.repo, layer.digest) });
  }
  return out;
}
