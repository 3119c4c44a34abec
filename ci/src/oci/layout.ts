/**
 * OCI image layout directories (image-spec `image-layout.md`):
 *
 *   <root>/oci-layout            {"imageLayoutVersion":"1.0.0"}
 *   <root>/index.json            an image index: the layout's entry points
 *   <root>/blobs/sha256/<hex>    content-addressed blobs
 *
 *   const layout = await OciLayout.init('out/base');          // creates if missing
 *   const cfg = await layout.writeJson(MediaType.ociConfig, config);
 *   const lay = await layout.writeBlob(layer.blob, layer.digest);
 *   const man = await layout.writeManifest({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: cfg, layers: [...] });
 *   await layout.setIndexEntry(man, 'base');                  // index.json entry, ref.name "base"
 *   const img = await layout.walk(man.digest);                // every blob verified
 *
 * Safety: every digest passes assertDigest BEFORE a path is built from it
 * (`sha256:../../x` is refused without touching the file system); every read
 * verifies the content against its digest (and size, when known); writes go to
 * a temp file in the same directory and are renamed into place (atomic), and
 * writing a blob that is already there intact does nothing (idempotent).
 */
import { mkdir, readFile, rename, stat, rm, open } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { StellaError } from '../errors.ts';
import {
  MediaType,
  assertDigest,
  digestHex,
  jsonBytes,
  sha256Digest,
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
} from './types.ts';

export const OCI_LAYOUT_FILE = 'oci-layout';
export const OCI_INDEX_FILE = 'index.json';
export const OCI_BLOBS_DIR = join('blobs', 'sha256');
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

/** One image (platform manifest) reached by a walk. */
export interface WalkedImage {
  readonly descriptor: Descriptor;
  readonly manifest: ImageManifest;
  /** The parsed config blob. */
  readonly config: unknown;
}

export interface WalkResult {
  /** The root descriptor the walk started from (mediaType as stored). */
  readonly root: Descriptor;
  /** Set when the root (or a nested entry) is an image index. */
  readonly indexes: readonly { descriptor: Descriptor; index: ImageIndex }[];
  readonly images: readonly WalkedImage[];
  /** Every blob reached, root first, each once, all verified. */
  readonly blobs: readonly Descriptor[];
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/** Writes bytes to `path` via a temp file + fsync + rename in the same directory. */
async function atomicWrite(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

function parseJson<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as T;
  } catch (e) {
    throw new StellaError('INVALID_ARGUMENT', `${what}: is not JSON (${(e as Error).message})`);
  }
}

function isIndexType(mt: string | undefined): boolean {
  return mt === MediaType.ociIndex || mt === MediaType.dockerManifestList;
}

function isManifestType(mt: string | undefined): boolean {
  return mt === MediaType.ociManifest || mt === MediaType.dockerManifest;
}

export class OciLayout {
  /** The layout's root directory. */
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  /** Opens a layout, creating `oci-layout`, `index.json` and `blobs/sha256` when missing. */
  static async init(root: string): Promise<OciLayout> {
    const layout = new OciLayout(root);
    await mkdir(join(root, OCI_BLOBS_DIR), { recursive: true });
    if (!(await exists(join(root, OCI_LAYOUT_FILE)))) {
      await atomicWrite(join(root, OCI_LAYOUT_FILE), jsonBytes({ imageLayoutVersion: '1.0.0' }));
    }
    if (!(await exists(join(root, OCI_INDEX_FILE)))) {
      await atomicWrite(join(root, OCI_INDEX_FILE), jsonBytes({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] }));
    }
    return layout;
  }

  /** Opens an existing layout; throws NOT_FOUND when it has no `oci-layout` file of version 1.0.0. */
  static async open(root: string): Promise<OciLayout> {
    const file = join(root, OCI_LAYOUT_FILE);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(file);
    } catch {
      throw new StellaError('NOT_FOUND', `OCI layout ${root}: no ${OCI_LAYOUT_FILE} file (expected an OCI image layout directory)`);
    }
    const v = parseJson<{ imageLayoutVersion?: unknown }>(bytes, `OCI layout ${file}`).imageLayoutVersion;
    if (v !== '1.0.0') {
      throw new StellaError('INVALID_ARGUMENT', `OCI layout ${file}: imageLayoutVersion is ${JSON.stringify(v)} (expected "1.0.0")`);
    }
    return new OciLayout(root);
  }

  /** The file path of a blob. The digest is validated first. */
  blobPath(digest: string): string {
    return join(this.root, OCI_BLOBS_DIR, digestHex(assertDigest(digest, `OCI layout ${this.root}: blob digest`)));
  }

  async hasBlob(digest: string): Promise<boolean> {
    return exists(this.blobPath(digest));
  }

  /**
   * Stores `bytes`; when `expectedDigest` is given the content must hash to it.
   * Idempotent: an intact blob already present is left as is (a corrupt one is replaced).
   */
  async writeBlob(bytes: Uint8Array, expectedDigest?: string): Promise<{ digest: string; size: number }> {
    if (expectedDigest !== undefined) assertDigest(expectedDigest, `OCI layout ${this.root}: blob to write`);
    const digest = sha256Digest(bytes);
    if (expectedDigest !== undefined && digest !== expectedDigest) {
      throw new StellaError('DIGEST_MISMATCH', `OCI layout ${this.root}: blob to write does not match its digest: expected ${expectedDigest}, got ${digest}`);
    }
    const path = this.blobPath(digest);
    if (await exists(path)) {
      const have = await hashFile(path);
      if (have === digest) return { digest, size: bytes.byteLength };
    }
    await mkdir(join(this.root, OCI_BLOBS_DIR), { recursive: true });
    await atomicWrite(path, bytes);
    return { digest, size: bytes.byteLength };
  }

  /** Reads a blob and verifies it against its digest (and `size` when given). */
  async readBlob(digest: string, size?: number): Promise<Uint8Array> {
    const path = this.blobPath(digest);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(path));
    } catch (e) {
      throw new StellaError('NOT_FOUND', `OCI layout ${this.root}: blob ${digest} is missing (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    const got = sha256Digest(bytes);
    if (got !== digest) {
      throw new StellaError('DIGEST_MISMATCH', `OCI layout ${this.root}: blob ${path} is corrupt: expected ${digest}, got ${got}`);
    }
    if (size !== undefined && bytes.byteLength !== size) {
      throw new StellaError('DIGEST_MISMATCH', `OCI layout ${this.root}: blob ${digest} has ${bytes.byteLength} bytes (expected ${size} from its descriptor)`);
    }
    return bytes;
  }

  /** Verifies a blob on disk without holding it in memory. Returns its size. */
  async verifyBlob(digest: string, size?: number): Promise<number> {
    const path = this.blobPath(digest);
    if (!(await exists(path))) throw new StellaError('NOT_FOUND', `OCI layout ${this.root}: blob ${digest} is missing`);
    const got = await hashFile(path);
    if (got !== digest) {
      throw new StellaError('DIGEST_MISMATCH', `OCI layout ${this.root}: blob ${path} is corrupt: expected ${digest}, got ${got}`);
    }
    const n = (await stat(path)).size;
    if (size !== undefined && n !== size) {
      throw new StellaError('DIGEST_MISMATCH', `OCI layout ${this.root}: blob ${digest} has ${n} bytes (expected ${size} from its descriptor)`);
    }
    return n;
  }

  /** Writes `value` as compact JSON (keys in the order given) and returns its descriptor. */
  async writeJson(mediaType: string, value: unknown, extra: Partial<Descriptor> = {}): Promise<Descriptor> {
    const bytes = jsonBytes(value);
    const { digest, size } = await this.writeBlob(bytes);
    return { mediaType, digest, size, ...extra };
  }

  /** Writes an image manifest; the descriptor carries the manifest's mediaType (and `extra`, e.g. platform). */
  async writeManifest(manifest: ImageManifest, extra: Partial<Descriptor> = {}): Promise<Descriptor> {
    if (!isManifestType(manifest.mediaType)) {
      throw new StellaError('INVALID_ARGUMENT', `OCI layout ${this.root}: manifest mediaType ${manifest.mediaType} (expected ${MediaType.ociManifest})`);
    }
    for (const d of [manifest.config, ...manifest.layers]) assertDigest(d.digest, `manifest blob ${d.mediaType}`);
    return this.writeJson(manifest.mediaType, manifest, extra);
  }

  /** Writes an image index and returns its descriptor. */
  async writeIndex(index: ImageIndex, extra: Partial<Descriptor> = {}): Promise<Descriptor> {
    if (!isIndexType(index.mediaType)) {
      throw new StellaError('INVALID_ARGUMENT', `OCI layout ${this.root}: index mediaType ${index.mediaType} (expected ${MediaType.ociIndex})`);
    }
    for (const d of index.manifests) assertDigest(d.digest, `index entry ${d.mediaType}`);
    return this.writeJson(index.mediaType, index, extra);
  }

  /** The layout's `index.json`. */
  async readIndexJson(): Promise<ImageIndex> {
    const file = join(this.root, OCI_INDEX_FILE);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(file);
    } catch {
      throw new StellaError('NOT_FOUND', `OCI layout ${this.root}: no ${OCI_INDEX_FILE}`);
    }
    const idx = parseJson<ImageIndex>(bytes, `OCI layout ${file}`);
    if (idx.schemaVersion !== 2 || !Array.isArray(idx.manifests)) {
      throw new StellaError('INVALID_ARGUMENT', `OCI layout ${file}: not an image index (expected schemaVersion 2 and a manifests array)`);
    }
    for (const d of idx.manifests) assertDigest(d.digest, `OCI layout ${file} entry`);
    return idx;
  }

  /**
   * Adds `descriptor` to `index.json`. With `refName` it gets the
   * `org.opencontainers.image.ref.name` annotation and replaces any entry of that
   * name; without, it replaces an entry of the same digest that has no name.
   */
  async setIndexEntry(descriptor: Descriptor, refName?: string): Promise<void> {
    assertDigest(descriptor.digest, `OCI layout ${this.root}: index.json entry`);
    if (refName !== undefined && (refName.length === 0 || /[\s\0]/.test(refName))) {
      throw new StellaError('INVALID_ARGUMENT', `OCI layout ${this.root}: ref name ${JSON.stringify(refName)} is empty or has whitespace`);
    }
    const idx = await this.readIndexJson();
    const entry: Descriptor = refName === undefined ? descriptor : { ...descriptor, annotations: { ...descriptor.annotations, [REF_NAME_ANNOTATION]: refName } };
    const keep = idx.manifests.filter((d) => {
      const name = d.annotations?.[REF_NAME_ANNOTATION];
      return refName === undefined ? !(name === undefined && d.digest === descriptor.digest) : name !== refName;
    });
    const next: ImageIndex = { ...idx, schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [...keep, entry] };
    await atomicWrite(join(this.root, OCI_INDEX_FILE), jsonBytes(next));
  }

  /** The index.json entry named `refName`, or undefined. */
  async resolveRef(refName: string): Promise<Descriptor | undefined> {
    return (await this.readIndexJson()).manifests.find((d) => d.annotations?.[REF_NAME_ANNOTATION] === refName);
  }

  async readManifest(digest: string, size?: number): Promise<ImageManifest> {
    const m = parseJson<ImageManifest>(await this.readBlob(digest, size), `OCI layout ${this.root}: manifest ${digest}`);
    if (m.schemaVersion !== 2 || !m.config || !Array.isArray(m.layers)) {
      throw new StellaError('INVALID_ARGUMENT', `OCI layout ${this.root}: blob ${digest} is not an image manifest (expected schemaVersion 2, config and layers)`);
    }
    return m;
  }

  async readImageIndex(digest: string, size?: number): Promise<ImageIndex> {
    const i = parseJson<ImageIndex>(await this.readBlob(digest, size), `OCI layout ${this.root}: index ${digest}`);
    if (i.schemaVersion !== 2 || !Array.isArray(i.manifests)) {
      throw new StellaError('INVALID_ARGUMENT', `OCI layout ${this.root}: blob ${digest} is not an image index (expected schemaVersion 2 and manifests)`);
    }
    return i;
  }

  /**
   * Walks an index or manifest: index → manifests → config + layers, verifying
   * every blob's digest and size on the way. `root` is a digest (its type read
   * from the content) or a descriptor.
   */
  async walk(root: string | Descriptor): Promise<WalkResult> {
    const rootDesc: Descriptor = typeof root === 'string' ? await this.describe(root) : root;
    const indexes: { descriptor: Descriptor; index: ImageIndex }[] = [];
    const images: WalkedImage[] = [];
    const blobs = new Map<string, Descriptor>();
    const visit = async (d: Descriptor, depth: number): Promise<void> => {
      assertDigest(d.digest, `OCI layout ${this.root}: descriptor`);
      if (depth > 8) throw new StellaError('INVALID_ARGUMENT', `OCI layout ${this.root}: index nesting deeper than 8 at ${d.digest}`);
      if (isIndexType(d.mediaType)) {
        const index = await this.readImageIndex(d.digest, d.size);
        if (!blobs.has(d.digest)) blobs.set(d.digest, d);
        indexes.push({ descriptor: d, index });
        for (const child of index.manifests) await visit(child, depth + 1);
      } else if (isManifestType(d.mediaType)) {
        const manifest = await this.readManifest(d.digest, d.size);
        if (!blobs.has(d.digest)) blobs.set(d.digest, d);
        const config = parseJson<unknown>(await this.readBlob(assertDigest(manifest.config.digest, 'config'), manifest.config.size), `config ${manifest.config.digest}`);
        if (!blobs.has(manifest.config.digest)) blobs.set(manifest.config.digest, manifest.config);
        for (const l of manifest.layers) {
          await this.verifyBlob(assertDigest(l.digest, `layer of ${d.digest}`), l.size);
          if (!blobs.has(l.digest)) blobs.set(l.digest, l);
        }
        images.push({ descriptor: d, manifest, config });
      } else {
        // Any other artifact: verify the blob itself.
        await this.verifyBlob(d.digest, d.size);
        if (!blobs.has(d.digest)) blobs.set(d.digest, d);
      }
    };
    await visit(rootDesc, 0);
    return { root: rootDesc, indexes, images, blobs: [...blobs.values()] };
  }

  /** A descriptor for a stored manifest or index blob, its mediaType taken from the content. */
  async describe(digest: string): Promise<Descriptor> {
    const bytes = await this.readBlob(digest);
    const mt = parseJson<{ mediaType?: string; manifests?: unknown }>(bytes, `OCI layout ${this.root}: blob ${digest}`);
    const mediaType = mt.mediaType ?? (Array.isArray(mt.manifests) ? MediaType.ociIndex : MediaType.ociManifest);
    return { mediaType, digest, size: bytes.byteLength };
  }
}

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return `sha256:${h.digest('hex')}`;
}

/** Convenience: write a blob to the layout at `root` (creating the layout if needed). */
export async function writeBlob(root: string, bytes: Uint8Array, expectedDigest?: string): Promise<{ digest: string; size: number }> {
  return (await OciLayout.init(root)).writeBlob(bytes, expectedDigest);
}

/** Convenience: read and verify a blob from the layout at `root`. */
export async function readBlob(root: string, digest: string, size?: number): Promise<Uint8Array> {
  assertDigest(digest, `OCI layout ${root}: blob to read`);
  return new OciLayout(root).readBlob(digest, size);
}
