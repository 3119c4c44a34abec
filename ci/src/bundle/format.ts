/**
 * The air-gap bundle format, `stella-bundle/v1`: every name it uses, in one place.
 * The spec for operators is docs/install/airgap.md; this module is what the code obeys.
 *
 *   stella-bundle-vX.Y.Z.tar.zst        a POSIX tar, zstd-compressed, entries in byte order:
 *     bundle.json                       what this is: format, version, created, images, base (differential)
 *     images/                           ONE OCI image layout holding every image of the release
 *       oci-layout, index.json            (StellaOps and support images, both platforms), their
 *       blobs/sha256/<hex>                referrers (signatures, SBOMs, provenance) and legacy .sig
 *                                         manifests; each blob stored once
 *     images.lock.json                  every image: repository, index and platform digests, referrers
 *     images.txt                        the same, one line per image, for load.sh (no JSON parser needed)
 *     platforms.txt                     each image's platform manifests, config and layers, one line per
 *                                         image and platform (quickstart.sh --bundle: docker load)
 *     compose/                          the quickstart, every image pinned by digest
 *     helm/stella-<chart version>.tgz   the packaged chart (digests pinned), values-airgap.yaml
 *     keys/cosign.pub                   the release's public key
 *     keys/trusted_root.json            a Sigstore trusted root (empty lists: key trust, no network)
 *     docs/                             the install docs, offline
 *     load.sh, verify.sh                the operator's entry points (bash, tar, zstd, sha256sum,
 *                                       openssl; oras for load.sh)
 *     checksums.txt                     `sha256sum` lines for every file above (sorted by path)
 *     checksums.txt.sig                 the raw signature over checksums.txt (DER), for openssl
 *     bundle.sig                        a Sigstore bundle (message signature) over checksums.txt
 *
 * Every tar entry: uid/gid 0, no user or group names, mtime = the release's SOURCE_DATE_EPOCH,
 * mode 0644 (0755 for directories and the two scripts); no links, devices or other types.
 */
import { StellaError } from '../errors.ts';
import { isDigest } from '../oci/types.ts';

export const BUNDLE_FORMAT = 'stella-bundle/v1';
export const BUNDLE_MEDIA_TYPE = 'application/vnd.stellaops.bundle.v1+tar+zstd';

export const BundlePath = {
  manifest: 'bundle.json',
  images: 'images',
  imagesLock: 'images.lock.json',
  /** One line per image for load.sh: `<repository path> <index digest> [<legacy tag> <digest>]…`. */
  loadPlan: 'images.txt',
  /**
   * One line per image and platform, for scripts that load an image into Docker without a
   * registry or a JSON parser (`quickstart.sh --bundle` starts the bundle's own registry so):
   * `<name> <repository path> <os/arch> <manifest digest> <config digest> <layer digest>…`.
   */
  platformPlan: 'platforms.txt',
  compose: 'compose',
  helm: 'helm',
  keys: 'keys',
  publicKey: 'keys/cosign.pub',
  trustedRoot: 'keys/trusted_root.json',
  docs: 'docs',
  loadScript: 'load.sh',
  verifyScript: 'verify.sh',
  checksums: 'checksums.txt',
  checksumsSignature: 'checksums.txt.sig',
  signature: 'bundle.sig',
} as const;

/** Files not covered by checksums.txt (they cover it). */
export const SIGNATURE_FILES: readonly string[] = [BundlePath.checksums, BundlePath.checksumsSignature, BundlePath.signature];
/** Files written with mode 0755. */
export const EXECUTABLE_FILES: readonly string[] = [BundlePath.loadScript, BundlePath.verifyScript];

/** `stella-bundle-v1.4.0.tar.zst`; a differential bundle adds `-since-v1.3.9`. */
export function bundleFileName(version: string, since?: string): string {
  return `stella-bundle-${version}${since ? `-since-${since}` : ''}.tar.zst`;
}

/** The zstd level (as `zstd -3`): image layers are gzip already, a higher level buys little for much time. */
export const ZSTD_LEVEL = 3;

/** Limits of extraction (every one configurable); defaults fit a release with a wide margin. */
export interface ExtractBudget {
  /** Sum of entry sizes. */
  readonly maxBytes: number;
  /** Uncompressed / compressed bytes, checked as the archive is read. */
  readonly maxRatio: number;
  readonly maxEntries: number;
  /** Longest path. */
  readonly maxPathLength: number;
}

export const DEFAULT_BUDGET: ExtractBudget = { maxBytes: 64 * 1024 ** 3, maxRatio: 200, maxEntries: 200_000, maxPathLength: 512 };

/** What kind of image an entry of images.lock.json is. */
export type ImageKind = 'service' | 'support';

export interface LockedReferrer {
  /** The manifest it refers to (the index or a platform manifest). */
  readonly subject: string;
  readonly digest: string;
  readonly mediaType: string;
  readonly size: number;
  readonly artifactType?: string;
}

export interface LockedImage {
  /** Catalog name: `api`, …, or the support name `postgres`, … */
  readonly name: string;
  readonly kind: ImageKind;
  /** Where it lives: `host[:port]/path`; rewritten on relocation. */
  readonly repository: string;
  /** The multi-arch index. */
  readonly digest: string;
  readonly platforms: Readonly<Record<string, string>>;
  readonly referrers: readonly LockedReferrer[];
  /** Legacy cosign v2 signature manifests: tag `sha256-<hex>.sig` → manifest digest. */
  readonly legacy: Readonly<Record<string, string>>;
}

/** images.lock.json (imgpkg's ImagesLock idea, with digests of everything that travels with an image). */
export interface ImagesLock {
  readonly apiVersion: 'stellaops.dev/images-lock/v1';
  readonly version: string;
  readonly images: readonly LockedImage[];
}

/** bundle.json */
export interface BundleManifest {
  readonly format: typeof BUNDLE_FORMAT;
  readonly version: string;
  /** SOURCE_DATE_EPOCH of the release (seconds): every entry's mtime. */
  readonly created: number;
  readonly commit?: string;
  readonly chart?: { readonly file: string; readonly version: string };
  readonly images: number;
  /** Unique blobs in images/ (and their total size). */
  readonly blobs: { readonly count: number; readonly bytes: number };
  /** Differential bundles: the base bundle, and the blobs left out because it holds them. */
  readonly base?: {
    readonly version: string;
    /** sha256 of the base bundle's checksums.txt. */
    readonly checksums: string;
    /** Blobs the images need that are not in images/: the target registry must have them. */
    readonly omitted: readonly { readonly digest: string; readonly size: number; readonly repositories: readonly string[] }[];
  };
}

const fail = (where: string, what: string): never => {
  throw new StellaError('BUNDLE_INVALID', `${where}: ${what}`);
};

function obj(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(where, `expected an object, got ${JSON.stringify(v)?.slice(0, 60)}`);
  return v as Record<string, unknown>;
}

function digest(v: unknown, where: string): string {
  if (!isDigest(v)) fail(where, `${JSON.stringify(v)?.slice(0, 80)} is not sha256:<64 hex>`);
  return v as string;
}

const REPOSITORY = /^[A-Za-z0-9.-]+(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)+$/;

/** Checks an untrusted images.lock.json: every digest `sha256:<64 hex>` BEFORE anything uses it as a path. */
export function validateImagesLock(value: unknown, where = BundlePath.imagesLock): ImagesLock {
  const o = obj(value, where);
  if (o.apiVersion !== 'stellaops.dev/images-lock/v1') fail(where, `apiVersion is ${JSON.stringify(o.apiVersion)} (expected "stellaops.dev/images-lock/v1")`);
  if (typeof o.version !== 'string') fail(where, 'version is missing');
  if (!Array.isArray(o.images) || o.images.length === 0) fail(where, 'images is not a non-empty array');
  const names = new Set<string>();
  (o.images as unknown[]).forEach((raw, i) => {
    const at = `${where}: images[${i}]`;
    const im = obj(raw, at);
    if (typeof im.name !== 'string' || !/^[a-z0-9-]+$/.test(im.name)) fail(at, `name ${JSON.stringify(im.name)} is not a catalog name`);
    if (names.has(im.name as string)) fail(at, `name ${im.name as string} appears twice`);
    names.add(im.name as string);
    if (im.kind !== 'service' && im.kind !== 'support') fail(at, `kind is ${JSON.stringify(im.kind)} (expected service or support)`);
    if (typeof im.repository !== 'string' || !REPOSITORY.test(im.repository)) fail(at, `repository ${JSON.stringify(im.repository)} is not host[:port]/path`);
    digest(im.digest, `${at}.digest`);
    const platforms = obj(im.platforms, `${at}.platforms`);
    if (Object.keys(platforms).length === 0) fail(`${at}.platforms`, 'no platform');
    for (const [p, d] of Object.entries(platforms)) {
      if (!/^[a-z0-9]+\/[a-z0-9]+$/.test(p)) fail(`${at}.platforms`, `${JSON.stringify(p)} is not os/arch`);
      digest(d, `${at}.platforms["${p}"]`);
    }
    if (!Array.isArray(im.referrers)) fail(at, 'referrers is not an array');
    (im.referrers as unknown[]).forEach((r, j) => {
      const rr = obj(r, `${at}.referrers[${j}]`);
      digest(rr.subject, `${at}.referrers[${j}].subject`);
      digest(rr.digest, `${at}.referrers[${j}].digest`);
      if (typeof rr.mediaType !== 'string' || typeof rr.size !== 'number') fail(`${at}.referrers[${j}]`, 'mediaType or size missing');
    });
    for (const [tag, d] of Object.entries(obj(im.legacy, `${at}.legacy`))) {
      if (!/^sha256-[0-9a-f]{64}\.(sig|att)$/.test(tag)) fail(`${at}.legacy`, `${JSON.stringify(tag)} is not a sha256-<hex>.sig tag`);
      digest(d, `${at}.legacy["${tag}"]`);
    }
  });
  return value as ImagesLock;
}

export function validateBundleManifest(value: unknown, where = BundlePath.manifest): BundleManifest {
  const o = obj(value, where);
  if (o.format !== BUNDLE_FORMAT) fail(where, `format is ${JSON.stringify(o.format)} (this tool reads ${BUNDLE_FORMAT})`);
  if (typeof o.version !== 'string') fail(where, 'version is missing');
  if (!Number.isInteger(o.created)) fail(where, 'created is not whole seconds');
  if (o.base !== undefined) {
    const b = obj(o.base, `${where}.base`);
    if (typeof b.version !== 'string') fail(`${where}.base`, 'version is missing');
    digest(b.checksums, `${where}.base.checksums`);
    if (!Array.isArray(b.omitted)) fail(`${where}.base`, 'omitted is not an array');
    (b.omitted as unknown[]).forEach((x, i) => digest(obj(x, `${where}.base.omitted[${i}]`).digest, `${where}.base.omitted[${i}].digest`));
  }
  return value as BundleManifest;
}

/** `host[:port]/path` → the same path on another registry host. */
export function relocate(repository: string, to: string): string {
  const slash = repository.indexOf('/');
  return `${to}${repository.slice(slash)}`;
}
