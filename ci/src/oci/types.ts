/**
 * OCI image-spec and distribution-spec vocabulary shared by every step:
 * media types, descriptors, and digest handling that refuses anything that is
 * not `sha256:<64 hex>` before it can reach a file path or a URL.
 */
import { createHash } from 'node:crypto';
import { StellaError } from '../errors.ts';

export const MediaType = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  sigstoreBundle: 'application/vnd.dev.sigstore.bundle.v0.3+json',
  cosignSimpleSigning: 'application/vnd.dev.cosign.simplesigning.v1+json',
  dsseEnvelope: 'application/vnd.dsse.envelope.v1+json',
  spdxJson: 'application/spdx+json',
  inTotoJson: 'application/vnd.in-toto+json',
} as const;

/** The `{}` blob OCI 1.1 artifacts use as config. */
export const EMPTY_JSON = new TextEncoder().encode('{}');
export const EMPTY_JSON_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';

export interface Platform {
  readonly architecture: string;
  readonly os: string;
  readonly variant?: string;
}

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly platform?: Platform;
  readonly artifactType?: string;
}

export interface ImageManifest {
  readonly schemaVersion: 2;
  readonly mediaType: string;
  readonly artifactType?: string;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
  readonly subject?: Descriptor;
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface ImageIndex {
  readonly schemaVersion: 2;
  readonly mediaType: string;
  readonly artifactType?: string;
  readonly manifests: readonly Descriptor[];
  readonly subject?: Descriptor;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** The platforms every StellaOps image is built for, in index order. */
export const PLATFORMS = ['linux/amd64', 'linux/arm64'] as const;
export type PlatformName = (typeof PLATFORMS)[number];

export function parsePlatform(p: string): Platform {
  const [os, architecture, variant] = p.split('/');
  if (!os || !architecture) throw new StellaError('INVALID_ARGUMENT', `platform "${p}" is not os/arch (e.g. linux/amd64)`);
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function platformName(p: Platform): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

/** True for `sha256:<64 lowercase hex>`. */
export function isDigest(s: unknown): s is string {
  return typeof s === 'string' && DIGEST_RE.test(s);
}

/** Returns the digest, or throws naming where it came from. Call before any path or URL is built from it. */
export function assertDigest(s: unknown, where: string): string {
  if (!isDigest(s)) {
    throw new StellaError('DIGEST_INVALID', `${where}: "${String(s).slice(0, 100)}" is not a digest (expected sha256:<64 hex>)`);
  }
  return s;
}

export function sha256Digest(data: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Throws when `data` does not hash to `expected`. */
export function verifyDigest(data: Uint8Array, expected: string, what: string): void {
  assertDigest(expected, what);
  const got = sha256Digest(data);
  if (got !== expected) {
    throw new StellaError('DIGEST_MISMATCH', `${what}: content does not match its digest: expected ${expected}, got ${got}`);
  }
}

/** The hex part of a digest, for blob paths and `sha256-<hex>` fallback tags. */
export function digestHex(digest: string): string {
  return assertDigest(digest, 'digest').slice('sha256:'.length);
}

/** The tag under which registries without the referrers API list a subject's referrers. */
export function referrersFallbackTag(subject: string): string {
  return `sha256-${digestHex(subject)}`;
}

/** Canonical JSON bytes for manifests we write: keys as given, no whitespace. Stable for the same object. */
export function jsonBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

export function descriptorOf(mediaType: string, bytes: Uint8Array, extra: Partial<Descriptor> = {}): Descriptor {
  return { mediaType, digest: sha256Digest(bytes), size: bytes.byteLength, ...extra };
}
