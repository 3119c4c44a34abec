/**
 * An OCI distribution-spec v1.1 client over the built-in `fetch`: the registry
 * API (blobs, manifests, tags, cross-repository mounts) on top of the
 * transport (transport.ts: HTTP, auth, retries, redaction), and the referrers
 * of a digest (referrers.ts: the OCI 1.1 API, else the `sha256-<hex>` fallback
 * tag, read-modify-written under a per-subject lock).
 *
 * - Names are checked before any URL is built (repository grammar, tag grammar, digests).
 * - Content is verified: blobs and manifests fetched by digest must hash to it; a
 *   manifest is pushed byte for byte and the registry's `Docker-Content-Digest`
 *   must equal sha256 of those bytes.
 * - Auth: anonymous, Basic, and the bearer-token flow; tokens cached per scope;
 *   Docker config credentials including credential helpers. Credentials go only
 *   to the registry's own origin and its token realm, and never into a message
 *   or an event (see Redactor).
 * - Faults: 5xx, 408, 429 (with Retry-After) and network errors are retried with
 *   backoff; an interrupted blob upload restarts from a new session. After the
 *   last attempt a StellaError names the operation, repository, digest or tag,
 *   the status and a short body excerpt.
 */
import { MediaType, assertDigest, isDigest, sha256Digest, type Descriptor } from '../oci/types.ts';
import { assertReference, assertRepository } from './names.ts';
import { attachReferrer, listReferrers, type AttachResult, type ReferrersOptions } from './referrers.ts';
import { Transport, type BlobPushResult, type Ctx, type RegistryClientOptions, type Scope } from './transport.ts';

export { insecureByEnvironment, type BlobPushResult, type RegistryClientOptions, type RegistryEvent } from './transport.ts';
export type { AttachResult, ReferrersOptions } from './referrers.ts';

/** Every manifest type the client asks for. */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerManifestList,
  MediaType.dockerManifest,
];

/** Manifests larger than this are refused (the distribution spec lets registries stop at 4 MiB). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** Bytes in memory, or something that can be streamed again for each attempt. */
export type BlobSource =
  | Uint8Array
  | { readonly size: number; open(): ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> };

export interface PushBlobOptions {
  /** A repository on the same registry that may hold the blob: mount from it instead of uploading. */
  readonly mountFrom?: string;
}

export interface FetchedManifest {
  readonly bytes: Uint8Array;
  readonly mediaType: string;
  readonly digest: string;
}

function mediaTypeOf(contentType: string | null, bytes: Uint8Array): string {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(bytes)) as { mediaType?: unknown };
    if (typeof parsed.mediaType === 'string' && parsed.mediaType) return parsed.mediaType;
  } catch {
    // fall through to the header
  }
  return (contentType ?? '').split(';')[0]!.trim();
}

const transports = new WeakMap<RegistryClient, Transport>();

/** The client's transport, for the referrers module (not part of the public API). */
export function transportOf(client: RegistryClient): Transport {
  return transports.get(client)!;
}

export class RegistryClient {
  /** host[:port] as given. */
  readonly registry: string;
  readonly #t: Transport;

  constructor(opts: RegistryClientOptions) {
    this.#t = new Transport(opts);
    this.registry = this.#t.registry;
    transports.set(this, this.#t);
  }

  /** `https://host[:port]` or `http://…` for insecure registries. */
  get baseUrl(): string {
    return this.#t.base;
  }

  /** Removes every known secret from `text` (for callers that print registry errors in their own words). */
  redact(text: string): string {
    return this.#t.redactor.text(text);
  }

  // ---------------------------------------------------------------- API

  /** `GET /v2/`: true when the registry answers and accepts our credentials. */
  async ping(): Promise<true> {
    const ctx: Ctx = { op: 'ping' };
    return this.#t.withRetry(ctx, async () => {
      const res = await this.#t.exchange(ctx, 'GET', '/v2/', undefined);
      await this.#t.expect(ctx, res, [200]);
      await res.body?.cancel();
      return true as const;
    });
  }

  async hasBlob(repo: string, digest: string): Promise<boolean> {
    assertRepository(repo);
    assertDigest(digest, `blob of ${repo}`);
    const ctx: Ctx = { op: 'check blob', repo, ref: digest };
    return this.#t.withRetry(ctx, async () => {
      const res = await this.#t.exchange(ctx, 'HEAD', `/v2/${repo}/blobs/${digest}`, { repo });
      if (res.status === 404) return false;
      await this.#t.expect(ctx, res, [200]);
      return true;
    });
  }

  /** The blob's bytes, verified against `digest`. */
  async getBlob(repo: string, digest: string): Promise<Uint8Array> {
    assertRepository(repo);
    assertDigest(digest, `blob of ${repo}`);
    const ctx: Ctx = { op: 'get blob', repo, ref: digest };
    return this.#t.withRetry(ctx, async () => {
      const res = await this.#t.exchange(ctx, 'GET', `/v2/${repo}/blobs/${digest}`, { repo });
      if (res.status === 404) throw this.#t.error(ctx, 'NOT_FOUND', 'the registry has no such blob (HTTP 404)');
      await this.#t.expect(ctx, res, [200]);
      const bytes = await this.#t.readBody(res);
      this.#t.verify(ctx, bytes, digest, 'blob');
      return bytes;
    });
  }

  /**
   * Uploads a blob unless the repository has it. With `mountFrom`, asks the
   * registry to mount it from that repository first (no bytes sent). An
   * interrupted upload restarts from a new session.
   */
  async pushBlob(repo: string, source: BlobSource, digest: string, opts: PushBlobOptions = {}): Promise<BlobPushResult> {
    assertRepository(repo);
    assertDigest(digest, `blob for ${repo}`);
    if (opts.mountFrom !== undefined) assertRepository(opts.mountFrom, 'mount source repository');
    const ctx: Ctx = { op: 'push blob', repo, ref: digest };
    const size = source instanceof Uint8Array ? source.byteLength : source.size;
    if (source instanceof Uint8Array) this.#t.verify(ctx, source, digest, 'blob to push');
    if (await this.hasBlob(repo, digest)) {
      this.#t.emit({ type: 'blob', action: 'skipped', repository: repo, digest, size });
      return 'skipped';
    }
    const mountFrom = opts.mountFrom !== undefined && opts.mountFrom !== repo ? opts.mountFrom : undefined;
    const result = await this.#t.withRetry(ctx, async () => {
      const scope: Scope = mountFrom ? { repo, push: true, from: mountFrom } : { repo, push: true };
      const start = mountFrom
        ? `/v2/${repo}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(mountFrom)}`
        : `/v2/${repo}/blobs/uploads/`;
      const res = await this.#t.exchange(ctx, 'POST', start, scope, { headers: { 'content-length': '0' } });
      if (res.status === 201 && mountFrom) {
        await res.body?.cancel();
        this.#t.checkDigestHeader(ctx, res, digest);
        return 'mounted' as const;
      }
      await this.#t.expect(ctx, res, [202]);
      await res.body?.cancel();
      const location = this.#t.location(ctx, res);
      location.searchParams.set('digest', digest);
      let put: Response;
      try {
        put = await this.#t.exchange(ctx, 'PUT', location.href, scope, {
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
          body: () => (source instanceof Uint8Array ? source : source.open()),
        });
      } catch (e) {
        this.#t.cancelUpload(location);
        throw e;
      }
      if (put.status === 400) {
        const excerpt = await this.#t.excerpt(put);
        throw this.#t.error(ctx, 'DIGEST_MISMATCH', `the registry refused the upload (HTTP 400): the content does not hash to ${digest} or is not ${size} bytes: ${excerpt}`);
      }
      if (put.status !== 201) this.#t.cancelUpload(location);
      await this.#t.expect(ctx, put, [201]);
      await put.body?.cancel();
      this.#t.checkDigestHeader(ctx, put, digest);
      return 'pushed' as const;
    });
    this.#t.emit({ type: 'blob', action: result, repository: repo, digest, size });
    return result;
  }

  async hasManifest(repo: string, digest: string): Promise<boolean> {
    assertDigest(digest, `manifest of ${repo}`);
    return (await this.resolve(repo, digest)) !== undefined;
  }

  /**
   * HEAD on a manifest: its digest, or undefined when the registry has no such
   * tag. Reads the manifest when the registry gives no `Docker-Content-Digest`.
   */
  async resolve(repo: string, ref: string): Promise<string | undefined> {
    assertRepository(repo);
    assertReference(ref, `manifest reference in ${repo}`);
    const ctx: Ctx = { op: 'resolve manifest', repo, ref };
    const header = await this.#t.withRetry(ctx, async () => {
      const res = await this.#t.exchange(ctx, 'HEAD', `/v2/${repo}/manifests/${ref}`, { repo }, { headers: { accept: MANIFEST_MEDIA_TYPES.join(', ') } });
      if (res.status === 404) return null;
      await this.#t.expect(ctx, res, [200]);
      return res.headers.get('docker-content-digest') ?? '';
    });
    if (header === null) return undefined;
    if (isDigest(header)) {
      if (isDigest(ref) && header !== ref) {
        throw this.#t.error(ctx, 'DIGEST_MISMATCH', `the registry's Docker-Content-Digest is ${header}, expected ${ref}`);
      }
      return header;
    }
    return (await this.getManifest(repo, ref)).digest;
  }

  /** A manifest or index, byte for byte; verified against `ref` when it is a digest, and against `Docker-Content-Digest`. */
  async getManifest(repo: string, ref: string): Promise<FetchedManifest> {
    assertRepository(repo);
    assertReference(ref, `manifest reference in ${repo}`);
    const ctx: Ctx = { op: 'get manifest', repo, ref };
    return this.#t.withRetry(ctx, async () => {
      const res = await this.#t.exchange(ctx, 'GET', `/v2/${repo}/manifests/${ref}`, { repo }, { headers: { accept: MANIFEST_MEDIA_TYPES.join(', ') } });
      if (res.status === 404) throw this.#t.error(ctx, 'NOT_FOUND', 'the registry has no such manifest (HTTP 404)');
      await this.#t.expect(ctx, res, [200]);
      const bytes = await this.#t.readBody(res, MAX_MANIFEST_BYTES);
      const digest = sha256Digest(bytes);
      if (isDigest(ref)) this.#t.verify(ctx, bytes, ref, 'manifest');
      this.#t.checkDigestHeader(ctx, res, digest);
      return { bytes, mediaType: mediaTypeOf(res.headers.get('content-type'), bytes), digest };
    });
  }

  /**
   * Pushes manifest bytes exactly as given under `ref` (a tag, or their digest)
   * and returns their digest, after checking the registry computed the same.
   */
  async putManifest(repo: string, ref: string, bytes: Uint8Array, mediaType: string): Promise<string> {
    return (await this.pushManifest(repo, ref, bytes, mediaType)).digest;
  }

  /** Deletes a manifest by digest. False when the registry did not have it. */
  async deleteManifest(repo: string, digest: string): Promise<boolean> {
    assertRepository(repo);
    assertDigest(digest, `manifest of ${repo}`);
    const ctx: Ctx = { op: 'delete manifest', repo, ref: digest };
    return this.#t.withRetry(ctx, async () => {
      const res = await this.#t.exchange(ctx, 'DELETE', `/v2/${repo}/manifests/${digest}`, { repo, push: true });
      if (res.status === 404) return false;
      await this.#t.expect(ctx, res, [202, 200]);
      await res.body?.cancel();
      return true;
    });
  }

  /** Every tag of the repository, following `Link` pagination; [] when the repository does not exist. */
  async listTags(repo: string, pageSize = 1000): Promise<string[]> {
    assertRepository(repo);
    const ctx: Ctx = { op: 'list tags', repo };
    const tags: string[] = [];
    let next: string | undefined = `/v2/${repo}/tags/list?n=${pageSize}`;
    for (let page = 0; next !== undefined; page++) {
      if (page >= 10_000) throw this.#t.error(ctx, 'REGISTRY_ERROR', 'more than 10000 pages of tags; stopping');
      const url: string = next;
      const result = await this.#t.withRetry(ctx, async () => {
        const res = await this.#t.exchange(ctx, 'GET', url, { repo });
        if (res.status === 404) return { tags: [] as string[], link: null };
        await this.#t.expect(ctx, res, [200]);
        const body = JSON.parse(new TextDecoder().decode(await this.#t.readBody(res, 64 * 1024 * 1024))) as { tags?: unknown };
        return { tags: Array.isArray(body.tags) ? body.tags.filter((t): t is string => typeof t === 'string') : [], link: res.headers.get('link') };
      });
      tags.push(...result.tags);
      next = undefined;
      const m = result.link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(result.link) : null;
      if (m) {
        const u = new URL(m[1]!, this.#t.base);
        if (u.origin !== this.#t.origin) throw this.#t.error(ctx, 'REGISTRY_ERROR', `the tag list's next page points to another origin (${u.origin}); refusing to follow`);
        next = u.pathname + u.search;
      }
    }
    return tags;
  }

  /**
   * The referrers of `subject` (descriptors with artifactType and annotations):
   * from the OCI 1.1 referrers API when the registry has it, else from the
   * `sha256-<hex>` fallback index. See referrers.ts.
   */
  referrers(repo: string, subject: string, opts: ReferrersOptions = {}): Promise<Descriptor[]> {
    return listReferrers(this, repo, subject, opts);
  }

  /**
   * Pushes a referrer manifest (whose `subject` must be `subject`) by its digest;
   * when the registry does not index it, adds it to the fallback index. See referrers.ts.
   */
  attachReferrer(repo: string, subject: string, manifestBytes: Uint8Array, mediaType: string): Promise<AttachResult> {
    return attachReferrer(this, repo, subject, manifestBytes, mediaType);
  }

  /**
   * putManifest, also returning the registry's `OCI-Subject` answer: the
   * subject digest when the registry indexed the manifest for the referrers API.
   */
  async pushManifest(repo: string, ref: string, bytes: Uint8Array, mediaType: string): Promise<{ digest: string; ociSubject: string | null }> {
    assertRepository(repo);
    assertReference(ref, `manifest reference in ${repo}`);
    const digest = sha256Digest(bytes);
    const ctx: Ctx = { op: 'put manifest', repo, ref };
    if (!MANIFEST_MEDIA_TYPES.includes(mediaType)) {
      throw this.#t.error(ctx, 'INVALID_ARGUMENT', `media type "${mediaType}" is not a manifest type (expected one of ${MANIFEST_MEDIA_TYPES.join(', ')})`);
    }
    if (bytes.byteLength > MAX_MANIFEST_BYTES) {
      throw this.#t.error(ctx, 'INVALID_ARGUMENT', `the manifest is ${bytes.byteLength} bytes, more than the ${MAX_MANIFEST_BYTES} registries accept`);
    }
    if (isDigest(ref) && ref !== digest) {
      throw this.#t.error(ctx, 'DIGEST_MISMATCH', `the manifest bytes hash to ${digest}, not to the reference ${ref}`);
    }
    const parsed = this.#t.parseJson(ctx, bytes) as { mediaType?: unknown };
    if (typeof parsed.mediaType === 'string' && parsed.mediaType !== mediaType) {
      throw this.#t.error(ctx, 'INVALID_ARGUMENT', `the manifest declares mediaType ${parsed.mediaType}, but it is being pushed as ${mediaType}`);
    }
    const result = await this.#t.withRetry(ctx, async () => {
      const res = await this.#t.exchange(ctx, 'PUT', `/v2/${repo}/manifests/${ref}`, { repo, push: true }, {
        headers: { 'content-type': mediaType, 'content-length': String(bytes.byteLength) },
        body: () => bytes,
      });
      await this.#t.expect(ctx, res, [201]);
      await res.body?.cancel();
      this.#t.checkDigestHeader(ctx, res, digest);
      return { digest, ociSubject: res.headers.get('oci-subject') };
    });
    this.#t.emit({ type: 'manifest', action: 'pushed', repository: repo, reference: ref, digest, size: bytes.byteLength });
    return result;
  }
}
