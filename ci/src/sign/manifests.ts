/**
 * OCI manifests that store signatures in a registry, built as bytes (pure:
 * nothing is pushed here; push `blobs` then `manifestBytes` with the registry client).
 *
 * bundle referrer   cosign v3 / `--new-bundle-format` layout: an OCI 1.1 artifact
 *                   manifest (artifactType = bundle media type, empty config, one
 *                   bundle layer, subject = the image), found through the referrers
 *                   API or the `sha256-<hex>` fallback index. Attach it with the
 *                   returned `referrerDescriptor`.
 * legacy .sig       cosign v2 layout: the manifest under tag `sha256-<hex>.sig`, one
 *                   simple-signing layer per signature, each annotated with its signature.
 */
import { StellaError } from '../errors.ts';
import { EMPTY_JSON, EMPTY_JSON_DIGEST, MediaType, descriptorOf, jsonBytes, referrersFallbackTag, assertDigest, type Descriptor, type ImageManifest } from '../oci/types.ts';
import type { LegacySignature } from './legacy.ts';
import type { SigstoreBundle } from './sign.ts';

export const BUNDLE_CONTENT_ANNOTATION = 'dev.sigstore.bundle.content';
export const BUNDLE_PREDICATE_TYPE_ANNOTATION = 'dev.sigstore.bundle.predicateType';
export const COSIGN_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
export const CREATED_ANNOTATION = 'org.opencontainers.image.created';

export interface Blob {
  readonly digest: string;
  readonly mediaType: string;
  readonly bytes: Uint8Array;
}

export interface BuiltManifest {
  readonly manifest: ImageManifest;
  readonly manifestBytes: Uint8Array;
  readonly mediaType: string;
  /** sha256 of manifestBytes. */
  readonly digest: string;
  /** Blobs the manifest references; push them before the manifest. */
  readonly blobs: readonly Blob[];
}

export interface BundleReferrer extends BuiltManifest {
  /** The entry to add to the subject's referrers (fallback index): mediaType, digest, size, artifactType, annotations. */
  readonly referrerDescriptor: Descriptor;
}

export interface BundleReferrerOptions {
  /**
   * RFC 3339 time for the `org.opencontainers.image.created` annotation cosign
   * adds. Omitted by default, so the same bundle gives the same manifest digest.
   */
  readonly created?: string;
}

/**
 * The referrer manifest for a Sigstore bundle over `subject` (the image's
 * manifest or index descriptor: mediaType, digest, size).
 */
export function bundleReferrerManifest(bundle: SigstoreBundle | Uint8Array, subject: Descriptor, predicateType: string, opts: BundleReferrerOptions = {}): BundleReferrer {
  assertDigest(subject.digest, 'referrer subject');
  if (!predicateType) throw new StellaError('INVALID_ARGUMENT', `bundle referrer for ${subject.digest}: predicateType is empty`);
  const bundleBytes = bundle instanceof Uint8Array ? bundle : jsonBytes(bundle);
  const parsed = bundle instanceof Uint8Array ? (JSON.parse(new TextDecoder().decode(bundle)) as SigstoreBundle) : bundle;
  if (parsed.mediaType !== MediaType.sigstoreBundle) {
    throw new StellaError('INVALID_ARGUMENT', `bundle referrer for ${subject.digest}: bundle media type is ${parsed.mediaType}; expected ${MediaType.sigstoreBundle} (cosign reads v0.3 only)`);
  }
  if (!parsed.dsseEnvelope) {
    throw new StellaError('INVALID_ARGUMENT', `bundle referrer for ${subject.digest}: the bundle holds no DSSE envelope; cosign refuses message-signature bundles`);
  }
  const layer = descriptorOf(MediaType.sigstoreBundle, bundleBytes);
  const annotations: Record<string, string> = {
    [BUNDLE_CONTENT_ANNOTATION]: 'dsse-envelope',
    [BUNDLE_PREDICATE_TYPE_ANNOTATION]: predicateType,
  };
  if (opts.created) annotations[CREATED_ANNOTATION] = opts.created;
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    artifactType: MediaType.sigstoreBundle,
    config: { mediaType: MediaType.ociEmpty, digest: EMPTY_JSON_DIGEST, size: EMPTY_JSON.byteLength },
    layers: [layer],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    annotations,
  };
  const manifestBytes = jsonBytes(manifest);
  const digest = descriptorOf(MediaType.ociManifest, manifestBytes).digest;
  return {
    manifest,
    manifestBytes,
    mediaType: MediaType.ociManifest,
    digest,
    blobs: [
      { digest: EMPTY_JSON_DIGEST, mediaType: MediaType.ociEmpty, bytes: EMPTY_JSON },
      { digest: layer.digest, mediaType: layer.mediaType, bytes: bundleBytes },
    ],
    referrerDescriptor: { mediaType: MediaType.ociManifest, digest, size: manifestBytes.byteLength, artifactType: MediaType.sigstoreBundle, annotations },
  };
}

/** The tag cosign v2 stores an image's signatures under: `sha256-<hex>.sig`. */
export function legacySignatureTag(imageDigest: string): string {
  return `${referrersFallbackTag(imageDigest)}.sig`;
}

/**
 * The `.sig` manifest holding `entries` (one simple-signing layer each). When
 * `existing` (the manifest currently under the tag) is given, its layers are
 * kept — other signers' signatures survive — and an entry already present
 * (same payload and signature) is not added twice. Blobs of kept layers are
 * already in the registry and are not returned.
 */
export function legacySignatureManifest(entries: readonly LegacySignature[], existing?: ImageManifest): BuiltManifest {
  const layers: Descriptor[] = [];
  const blobs: Blob[] = [];
  const seen = new Set<string>();
  const key = (digest: string, sig: string | undefined) => `${digest} ${sig ?? ''}`;
  for (const l of existing?.layers ?? []) {
    assertDigest(l.digest, 'existing .sig manifest layer');
    const k = key(l.digest, l.annotations?.[COSIGN_SIGNATURE_ANNOTATION]);
    if (seen.has(k)) continue;
    seen.add(k);
    layers.push(l);
  }
  for (const e of entries) {
    if (!e.signatureB64) throw new StellaError('INVALID_ARGUMENT', 'legacy signature entry has an empty signature');
    const d = descriptorOf(MediaType.cosignSimpleSigning, e.payload, { annotations: { [COSIGN_SIGNATURE_ANNOTATION]: e.signatureB64 } });
    const k = key(d.digest, e.signatureB64);
    if (seen.has(k)) continue;
    seen.add(k);
    layers.push(d);
    if (!blobs.some((b) => b.digest === d.digest)) blobs.push({ digest: d.digest, mediaType: d.mediaType, bytes: e.payload });
  }
  if (layers.length === 0) throw new StellaError('INVALID_ARGUMENT', 'legacy signature manifest: no signatures to store');
  // The config go-containerregistry would write for these layers (uncompressed, so diff_id = digest).
  const config = jsonBytes({ architecture: '', os: '', config: {}, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) } });
  const configDesc = descriptorOf(MediaType.ociConfig, config);
  blobs.unshift({ digest: configDesc.digest, mediaType: configDesc.mediaType, bytes: config });
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.ociManifest, config: configDesc, layers };
  const manifestBytes = jsonBytes(manifest);
  return { manifest, manifestBytes, mediaType: MediaType.ociManifest, digest: descriptorOf(MediaType.ociManifest, manifestBytes).digest, blobs };
}

/** Reads the signatures out of a `.sig` manifest's layers (payload blobs fetched by the caller). */
export function legacySignaturesOf(manifest: ImageManifest): { readonly layer: Descriptor; readonly signatureB64: string }[] {
  return manifest.layers
    .filter((l) => l.mediaType === MediaType.cosignSimpleSigning && typeof l.annotations?.[COSIGN_SIGNATURE_ANNOTATION] === 'string')
    .map((l) => ({ layer: l, signatureB64: l.annotations![COSIGN_SIGNATURE_ANNOTATION]! }));
}
