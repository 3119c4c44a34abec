/**
 * Where the build reads its base from and writes its images to, behind one
 * small interface: an OCI layout directory (ci/src/oci/layout.ts) or a registry
 * repository (ci/src/registry). Manifests travel as bytes, never re-serialised,
 * so their digests hold from end to end.
 */
import { StellaError } from '../errors.ts';
import { OciLayout } from '../oci/layout.ts';
import { assertDigest, sha256Digest, verifyDigest } from '../oci/types.ts';

/** Read side: a base image source. */
export interface ImageSource {
  /** For messages, e.g. `oci:/tmp/base` or `127.0.0.1:5000/stellaops/base`. */
  readonly name: string;
  /** The raw bytes of a manifest or index, verified against `digest`. */
  manifest(digest: string): Promise<Uint8Array>;
  /** The raw bytes of a blob, verified against `digest`. */
  blob(digest: string, size?: number): Promise<Uint8Array>;
}

/** Write side: one image repository (a registry repository, or a layout). */
export interface ImageSink {
  readonly name: string;
  hasBlob(digest: string): Promise<boolean>;
  /** Stores a blob; `load` is called only when the sink does not have it and cannot mount it. */
  putBlob(digest: string, size: number, load: () => Promise<Uint8Array>): Promise<void>;
  /** Stores a manifest or index under its digest (never a tag). */
  putManifest(bytes: Uint8Array, mediaType: string): Promise<string>;
}

export class LayoutSource implements ImageSource {
  readonly name: string;
  readonly layout: OciLayout;

  constructor(layout: OciLayout) {
    this.layout = layout;
    this.name = `oci:${layout.root}`;
  }

  async manifest(digest: string): Promise<Uint8Array> {
    return this.layout.readBlob(assertDigest(digest, `${this.name}: manifest`));
  }

  async blob(digest: string, size?: number): Promise<Uint8Array> {
    return this.layout.readBlob(assertDigest(digest, `${this.name}: blob`), size);
  }
}

/** Writes blobs and manifests into an OCI layout; the caller records index.json entries. */
export class LayoutSink implements ImageSink {
  readonly name: string;
  readonly layout: OciLayout;
  /** Blobs this sink wrote or verified: not hashed again (base layers are shared by every image). */
  readonly #done = new Set<string>();

  constructor(layout: OciLayout) {
    this.layout = layout;
    this.name = `oci:${layout.root}`;
  }

  hasBlob(digest: string): Promise<boolean> {
    return this.layout.hasBlob(digest);
  }

  async putBlob(digest: string, size: number, load: () => Promise<Uint8Array>): Promise<void> {
    if (this.#done.has(digest)) return;
    if (await this.layout.hasBlob(digest)) {
      await this.layout.verifyBlob(digest, size).catch(async () => {
        await this.layout.writeBlob(await load(), digest);
      });
    } else {
      const bytes = await load();
      if (bytes.byteLength !== size) {
        throw new StellaError('DIGEST_MISMATCH', `${this.name}: blob ${digest} has ${bytes.byteLength} bytes (expected ${size})`);
      }
      await this.layout.writeBlob(bytes, digest);
    }
    this.#done.add(digest);
  }

  async putManifest(bytes: Uint8Array): Promise<string> {
    return (await this.layout.writeBlob(bytes)).digest;
  }
}

/** An in-memory cache in front of a source: each base blob is read once per build. */
export class CachingSource implements ImageSource {
  readonly name: string;
  readonly #inner: ImageSource;
  readonly #cache = new Map<string, Promise<Uint8Array>>();

  constructor(inner: ImageSource) {
    this.#inner = inner;
    this.name = inner.name;
  }

  manifest(digest: string): Promise<Uint8Array> {
    return this.#memo(`m:${digest}`, () => this.#inner.manifest(digest));
  }

  blob(digest: string, size?: number): Promise<Uint8Array> {
    return this.#memo(`b:${digest}`, () => this.#inner.blob(digest, size));
  }

  #memo(key: string, f: () => Promise<Uint8Array>): Promise<Uint8Array> {
    let p = this.#cache.get(key);
    if (!p) {
      p = f();
      p.catch(() => this.#cache.delete(key));
      this.#cache.set(key, p);
    }
    return p;
  }
}

/** Checks bytes from any source against the digest that named them. */
export function checked(bytes: Uint8Array, digest: string, what: string): Uint8Array {
  verifyDigest(bytes, digest, what);
  return bytes;
}

export { sha256Digest };
