/**
 * An OCI distribution-spec v1.1 client over the built-in `fetch`.
 *
 * - Names are checked before any URL is built (repository grammar, tag grammar, digests).
 * - Content is verified: blobs and manifests fetched by digest must hash to it; a
 *   manifest is pushed byte for byte and the registry's `Docker-Content-Digest`
 *   must equal sha256 of those bytes.
 * - Auth: anonymous, Basic, and the bearer-token flow; tokens cached per scope.
 *   Credentials go only to the registry's own origin and its token realm, and
 *   never into a message or an event (see Redactor).
 * - Faults: 5xx, 408, 429 (with Retry-After) and network errors are retried with
 *   backoff; an interrupted blob upload restarts from a new session. After the
 *   last attempt a StellaError names the operation, repository, digest or tag,
 *   the status and a short body excerpt.
 * - Referrers: the OCI 1.1 API when the registry has it, else the `sha256-<hex>`
 *   fallback tag, read-modify-written under a per-subject lock.
 */
import { StellaError, type ErrorCode } from '../errors.ts';
import {
  MediaType,
  assertDigest,
  isDigest,
  referrersFallbackTag,
  sha256Digest,
  verifyDigest,
  jsonBytes,
  type Descriptor,
  type ImageIndex,
} from '../oci/types.ts';
import {
  basicHeader,
  parseChallenges,
  parseTokenResponse,
  resolveCredentials,
  type Challenge,
  type Credentials,
  type ResolvedCredentials,
  type Token,
} from './auth.ts';
import { assertReference, assertRegistryHost, assertRepository, isLoopback } from './names.ts';
import { Redactor } from './redact.ts';
import { DEFAULT_RETRY, backoffDelay, parseRetryAfter, sleep, validateRetryPolicy, type RetryPolicy } from './retry.ts';

/** Every manifest type the client asks for. */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerManifestList,
  MediaType.dockerManifest,
];

/** Manifests larger than this are refused (the distribution spec lets registries stop at 4 MiB). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface RegistryClientOptions {
  /** host[:port], no scheme, e.g. `127.0.0.1:5000` or `ghcr.io`. */
  readonly registry: string;
  /** Plain HTTP. Default: true for 127.0.0.1/localhost/::1, otherwise false (HTTPS). */
  readonly insecure?: boolean;
  /** `{username, password}` for Basic and the token flow, or `{token}`: a registry bearer token sent as is. */
  readonly credentials?: Credentials;
  /** Path to a Docker config.json; used when `credentials` is not given. */
  readonly dockerConfig?: string;
  readonly retry?: RetryPolicy;
  /** Progress and retry events; they never carry credentials. */
  readonly onEvent?: (e: RegistryEvent) => void;
  /** Per HTTP request; default 10 minutes (a large layer on a slow link). */
  readonly timeoutMs?: number;
}

export type RegistryEvent =
  | { readonly type: 'request'; readonly method: string; readonly path: string; readonly status: number }
  | { readonly type: 'retry'; readonly op: string; readonly target: string; readonly attempt: number; readonly delayMs: number; readonly reason: string }
  | { readonly type: 'auth'; readonly scheme: 'basic' | 'bearer'; readonly scope: string }
  | { readonly type: 'blob'; readonly action: BlobPushResult; readonly repository: string; readonly digest: string; readonly size: number }
  | { readonly type: 'manifest'; readonly action: 'pushed'; readonly repository: string; readonly reference: string; readonly digest: string; readonly size: number }
  | { readonly type: 'referrer'; readonly mode: 'api' | 'fallback'; readonly action: 'added' | 'unchanged'; readonly repository: string; readonly subject: string; readonly digest: string };

/** Bytes in memory, or something that can be streamed again for each attempt. */
export type BlobSource =
  | Uint8Array
  | { readonly size: number; open(): ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> };

export type BlobPushResult = 'pushed' | 'skipped' | 'mounted';

export interface PushBlobOptions {
  /** A repository on the same registry that may hold the blob: mount from it instead of uploading. */
  readonly mountFrom?: string;
}

export interface FetchedManifest {
  readonly bytes: Uint8Array;
  readonly mediaType: string;
  readonly digest: string;
}

export interface ReferrersOptions {
  readonly artifactType?: string;
}

export interface AttachResult {
  readonly digest: string;
  /** `api`: the registry indexes the subject itself; `fallback`: we maintain the `sha256-<hex>` index. */
  readonly mode: 'api' | 'fallback';
  /** False when the fallback index already listed this referrer exactly. */
  readonly changed: boolean;
}

/** What a request body may be; a factory makes a fresh one per send. */
type SendBody = Uint8Array | string | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

type Scope = { readonly repo: string; readonly push?: boolean; readonly from?: string } | undefined;

/** A bearer token and the scope atoms (`repository:<name>:<action>`) it was asked for. */
interface CachedToken {
  readonly atoms: ReadonlySet<string>;
  readonly token: Token;
}

interface Ctx {
  readonly op: string;
  readonly repo?: string;
  readonly ref?: string;
}

/** A failure worth another attempt: 5xx, 408, 429 or a network error. Internal. */
class Retryable extends Error {
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;
  constructor(detail: string, status?: number, retryAfterMs?: number) {
    super(detail);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * Registries named in STELLA_INSECURE_REGISTRIES (comma-separated host[:port]) are
 * reached over plain HTTP, like loopback ones: e.g. a registry service bound into
 * a Dagger container as `registry:5000`.
 */
export function insecureByEnvironment(registry: string): boolean {
  return (process.env.STELLA_INSECURE_REGISTRIES ?? '').split(',').map((s) => s.trim()).filter(Boolean).includes(registry);
}

/** Serializes writers of one fallback index within this process. */
const fallbackLocks = new Map<string, Promise<unknown>>();

async function withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = fallbackLocks.get(key) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  const tail = run.catch(() => undefined);
  fallbackLocks.set(key, tail);
  try {
    return await run;
  } finally {
    if (fallbackLocks.get(key) === tail) fallbackLocks.delete(key);
  }
}

function describeNetworkError(e: unknown): string {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err?.name === 'TimeoutError') return 'request timed out';
  const code = err?.cause?.code;
  const msg = err?.cause?.message ?? err?.message ?? String(e);
  return code ? `${code} (${msg})` : msg;
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

export class RegistryClient {
  /** host[:port] as given. */
  readonly registry: string;
  readonly #base: string;
  readonly #origin: string;
  readonly #creds: ResolvedCredentials;
  readonly #retry: RetryPolicy;
  readonly #onEvent: ((e: RegistryEvent) => void) | undefined;
  readonly #timeoutMs: number;
  readonly #redactor = new Redactor();
  /** What the registry asked for, learnt from its first challenge. */
  #scheme: 'none' | 'basic' | 'bearer' = 'none';
  #bearer: { realm: string; service: string | undefined } | undefined;
  #tokens: CachedToken[] = [];
  readonly #pendingTokens = new Map<string, Promise<CachedToken>>();
  #referrersApi: boolean | undefined;

  constructor(opts: RegistryClientOptions) {
    this.registry = assertRegistryHost(opts.registry);
    const insecure = opts.insecure ?? (isLoopback(this.registry) || insecureByEnvironment(this.registry));
    this.#base = `${insecure ? 'http' : 'https'}://${this.registry}`;
    this.#origin = new URL(this.#base).origin;
    this.#creds = resolveCredentials(opts, this.registry);
    switch (this.#creds.kind) {
      case 'basic':
        this.#redactor.addBasic(this.#creds.username, this.#creds.password);
        break;
      case 'token':
        this.#redactor.add(this.#creds.token);
        break;
      case 'identity':
        this.#redactor.add(this.#creds.identityToken);
        break;
      case 'anonymous':
        break;
    }
    this.#retry = validateRetryPolicy(opts.retry ?? DEFAULT_RETRY);
    this.#onEvent = opts.onEvent;
    this.#timeoutMs = opts.timeoutMs ?? 600_000;
  }

  /** `https://host[:port]` or `http://…` for insecure registries. */
  get baseUrl(): string {
    return this.#base;
  }

  /** Removes every known secret from `text` (for callers that print registry errors in their own words). */
  redact(text: string): string {
    return this.#redactor.redact(text);
  }

  // ---------------------------------------------------------------- API

  /** `GET /v2/`: true when the registry answers and accepts our credentials. */
  async ping(): Promise<true> {
    const ctx: Ctx = { op: 'ping' };
    return this.#withRetry(ctx, async () => {
      const res = await this.#exchange(ctx, 'GET', '/v2/', undefined);
      await this.#expect(ctx, res, [200]);
      await res.body?.cancel();
      return true as const;
    });
  }

  async hasBlob(repo: string, digest: string): Promise<boolean> {
    assertRepository(repo);
    assertDigest(digest, `blob of ${repo}`);
    const ctx: Ctx = { op: 'check blob', repo, ref: digest };
    return this.#withRetry(ctx, async () => {
      const res = await this.#exchange(ctx, 'HEAD', `/v2/${repo}/blobs/${digest}`, { repo });
      if (res.status === 404) return false;
      await this.#expect(ctx, res, [200]);
      return true;
    });
  }

  /** The blob's bytes, verified against `digest`. */
  async getBlob(repo: string, digest: string): Promise<Uint8Array> {
    assertRepository(repo);
    assertDigest(digest, `blob of ${repo}`);
    const ctx: Ctx = { op: 'get blob', repo, ref: digest };
    return this.#withRetry(ctx, async () => {
      const res = await this.#exchange(ctx, 'GET', `/v2/${repo}/blobs/${digest}`, { repo });
      if (res.status === 404) throw this.#error(ctx, 'NOT_FOUND', 'the registry has no such blob (HTTP 404)');
      await this.#expect(ctx, res, [200]);
      const bytes = await this.#readBody(res);
      this.#verify(ctx, bytes, digest, 'blob');
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
    if (source instanceof Uint8Array) this.#verify(ctx, source, digest, 'blob to push');
    if (await this.hasBlob(repo, digest)) {
      this.#emit({ type: 'blob', action: 'skipped', repository: repo, digest, size });
      return 'skipped';
    }
    const mountFrom = opts.mountFrom !== undefined && opts.mountFrom !== repo ? opts.mountFrom : undefined;
    const result = await this.#withRetry(ctx, async () => {
      const scope: Scope = mountFrom ? { repo, push: true, from: mountFrom } : { repo, push: true };
      const start = mountFrom
        ? `/v2/${repo}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(mountFrom)}`
        : `/v2/${repo}/blobs/uploads/`;
      const res = await this.#exchange(ctx, 'POST', start, scope, { headers: { 'content-length': '0' } });
      if (res.status === 201 && mountFrom) {
        await res.body?.cancel();
        this.#checkDigestHeader(ctx, res, digest);
        return 'mounted' as const;
      }
      await this.#expect(ctx, res, [202]);
      await res.body?.cancel();
      const location = this.#location(ctx, res);
      location.searchParams.set('digest', digest);
      let put: Response;
      try {
        put = await this.#exchange(ctx, 'PUT', location.href, scope, {
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
          body: () => (source instanceof Uint8Array ? source : source.open()),
        });
      } catch (e) {
        this.#cancelUpload(location);
        throw e;
      }
      if (put.status === 400) {
        const excerpt = await this.#excerpt(put);
        throw this.#error(ctx, 'DIGEST_MISMATCH', `the registry refused the upload (HTTP 400): the content does not hash to ${digest} or is not ${size} bytes: ${excerpt}`);
      }
      if (put.status !== 201) this.#cancelUpload(location);
      await this.#expect(ctx, put, [201]);
      await put.body?.cancel();
      this.#checkDigestHeader(ctx, put, digest);
      return 'pushed' as const;
    });
    this.#emit({ type: 'blob', action: result, repository: repo, digest, size });
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
    const header = await this.#withRetry(ctx, async () => {
      const res = await this.#exchange(ctx, 'HEAD', `/v2/${repo}/manifests/${ref}`, { repo }, { headers: { accept: MANIFEST_MEDIA_TYPES.join(', ') } });
      if (res.status === 404) return null;
      await this.#expect(ctx, res, [200]);
      return res.headers.get('docker-content-digest') ?? '';
    });
    if (header === null) return undefined;
    if (isDigest(header)) {
      if (isDigest(ref) && header !== ref) {
        throw this.#error(ctx, 'DIGEST_MISMATCH', `the registry's Docker-Content-Digest is ${header}, expected ${ref}`);
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
    return this.#withRetry(ctx, async () => {
      const res = await this.#exchange(ctx, 'GET', `/v2/${repo}/manifests/${ref}`, { repo }, { headers: { accept: MANIFEST_MEDIA_TYPES.join(', ') } });
      if (res.status === 404) throw this.#error(ctx, 'NOT_FOUND', 'the registry has no such manifest (HTTP 404)');
      await this.#expect(ctx, res, [200]);
      const bytes = await this.#readBody(res, MAX_MANIFEST_BYTES);
      const digest = sha256Digest(bytes);
      if (isDigest(ref)) this.#verify(ctx, bytes, ref, 'manifest');
      this.#checkDigestHeader(ctx, res, digest);
      return { bytes, mediaType: mediaTypeOf(res.headers.get('content-type'), bytes), digest };
    });
  }

  /**
   * Pushes manifest bytes exactly as given under `ref` (a tag, or their digest)
   * and returns their digest, after checking the registry computed the same.
   */
  async putManifest(repo: string, ref: string, bytes: Uint8Array, mediaType: string): Promise<string> {
    return (await this.#putManifest(repo, ref, bytes, mediaType)).digest;
  }

  /** Deletes a manifest by digest. False when the registry did not have it. */
  async deleteManifest(repo: string, digest: string): Promise<boolean> {
    assertRepository(repo);
    assertDigest(digest, `manifest of ${repo}`);
    const ctx: Ctx = { op: 'delete manifest', repo, ref: digest };
    return this.#withRetry(ctx, async () => {
      const res = await this.#exchange(ctx, 'DELETE', `/v2/${repo}/manifests/${digest}`, { repo, push: true });
      if (res.status === 404) return false;
      await this.#expect(ctx, res, [202, 200]);
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
      if (page >= 10_000) throw this.#error(ctx, 'REGISTRY_ERROR', 'more than 10000 pages of tags; stopping');
      const url: string = next;
      const result = await this.#withRetry(ctx, async () => {
        const res = await this.#exchange(ctx, 'GET', url, { repo });
        if (res.status === 404) return { tags: [] as string[], link: null };
        await this.#expect(ctx, res, [200]);
        const body = JSON.parse(new TextDecoder().decode(await this.#readBody(res, 64 * 1024 * 1024))) as { tags?: unknown };
        return { tags: Array.isArray(body.tags) ? body.tags.filter((t): t is string => typeof t === 'string') : [], link: res.headers.get('link') };
      });
      tags.push(...result.tags);
      next = undefined;
      const m = result.link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(result.link) : null;
      if (m) {
        const u = new URL(m[1]!, this.#base);
        if (u.origin !== this.#origin) throw this.#error(ctx, 'REGISTRY_ERROR', `the tag list's next page points to another origin (${u.origin}); refusing to follow`);
        next = u.pathname + u.search;
      }
    }
    return tags;
  }

  /**
   * The referrers of `subject` (descriptors with artifactType and annotations):
   * from the OCI 1.1 referrers API when the registry has it, else from the
   * `sha256-<hex>` fallback index.
   */
  async referrers(repo: string, subject: string, opts: ReferrersOptions = {}): Promise<Descriptor[]> {
    assertRepository(repo);
    assertDigest(subject, `referrers subject in ${repo}`);
    const filter = (list: readonly Descriptor[]) =>
      opts.artifactType === undefined ? [...list] : list.filter((d) => d.artifactType === opts.artifactType);
    if (this.#referrersApi !== false) {
      const fromApi = await this.#referrersFromApi(repo, subject, opts.artifactType);
      if (fromApi) return filter(fromApi);
    }
    return filter(await this.#fallbackIndexEntries(repo, subject));
  }

  /**
   * Pushes a referrer manifest (whose `subject` must be `subject`) by its digest.
   * When the registry does not index it (no `OCI-Subject` in the answer), adds
   * it to the `sha256-<hex>` fallback index, keeping every other entry.
   */
  async attachReferrer(repo: string, subject: string, manifestBytes: Uint8Array, mediaType: string): Promise<AttachResult> {
    assertRepository(repo);
    assertDigest(subject, `referrers subject in ${repo}`);
    const digest = sha256Digest(manifestBytes);
    const ctx: Ctx = { op: 'attach referrer', repo, ref: digest };
    const manifest = this.#parseJson(ctx, manifestBytes) as {
      subject?: { digest?: unknown };
      artifactType?: unknown;
      config?: { mediaType?: unknown };
      annotations?: unknown;
    };
    if (manifest.subject?.digest !== subject) {
      throw this.#error(ctx, 'INVALID_ARGUMENT', `the referrer's subject is ${String(manifest.subject?.digest)}, expected ${subject}`);
    }
    // Already stored and listed: a re-run writes nothing.
    if ((await this.hasManifest(repo, digest)) && (await this.referrers(repo, subject)).some((d) => d.digest === digest)) {
      const mode = this.#referrersApi ? 'api' : 'fallback';
      this.#emit({ type: 'referrer', mode, action: 'unchanged', repository: repo, subject, digest });
      return { digest, mode, changed: false };
    }
    const put = await this.#putManifest(repo, digest, manifestBytes, mediaType);
    if (put.ociSubject === subject) {
      this.#referrersApi = true;
      this.#emit({ type: 'referrer', mode: 'api', action: 'added', repository: repo, subject, digest });
      return { digest, mode: 'api', changed: true };
    }
    const entry: Record<string, unknown> = { mediaType, digest, size: manifestBytes.byteLength };
    const artifactType = typeof manifest.artifactType === 'string' ? manifest.artifactType : typeof manifest.config?.mediaType === 'string' ? manifest.config.mediaType : undefined;
    if (artifactType !== undefined) entry.artifactType = artifactType;
    if (manifest.annotations && typeof manifest.annotations === 'object' && Object.keys(manifest.annotations).length > 0) {
      entry.annotations = manifest.annotations;
    }
    const changed = await withLock(`${this.registry}/${repo}@${subject}`, () => this.#addFallbackEntry(repo, subject, entry as unknown as Descriptor));
    this.#emit({ type: 'referrer', mode: 'fallback', action: changed ? 'added' : 'unchanged', repository: repo, subject, digest });
    return { digest, mode: 'fallback', changed };
  }

  // ---------------------------------------------------------------- referrers internals

  async #referrersFromApi(repo: string, subject: string, artifactType: string | undefined): Promise<Descriptor[] | undefined> {
    const ctx: Ctx = { op: 'list referrers', repo, ref: subject };
    const q = artifactType !== undefined ? `?artifactType=${encodeURIComponent(artifactType)}` : '';
    return this.#withRetry(ctx, async () => {
      const res = await this.#exchange(ctx, 'GET', `/v2/${repo}/referrers/${subject}${q}`, { repo }, { headers: { accept: MediaType.ociIndex } });
      if (res.status === 404 || res.status === 405 || res.status === 400) {
        // The registry has no referrers API (distribution 2.8 answers 404).
        await res.body?.cancel();
        this.#referrersApi = false;
        return undefined;
      }
      await this.#expect(ctx, res, [200]);
      const bytes = await this.#readBody(res, MAX_MANIFEST_BYTES);
      const index = this.#parseJson(ctx, bytes) as Partial<ImageIndex>;
      if (!Array.isArray(index.manifests)) {
        throw this.#error(ctx, 'REGISTRY_ERROR', `the referrers API answered 200 without an image index (media type ${String(index.mediaType)})`);
      }
      this.#referrersApi = true;
      return index.manifests.filter((d) => isDigest(d.digest));
    });
  }

  async #readFallbackIndex(repo: string, subject: string): Promise<{ index: Record<string, unknown> & { manifests: Descriptor[] }; digest: string } | undefined> {
    const tag = referrersFallbackTag(subject);
    const ctx: Ctx = { op: 'read referrers fallback index', repo, ref: tag };
    let m: FetchedManifest;
    try {
      m = await this.getManifest(repo, tag);
    } catch (e) {
      if (e instanceof StellaError && e.code === 'NOT_FOUND') return undefined;
      throw e;
    }
    const index = this.#parseJson(ctx, m.bytes) as Record<string, unknown>;
    if (!Array.isArray(index.manifests)) {
      throw this.#error(ctx, 'REGISTRY_ERROR', `the fallback tag holds a ${m.mediaType}, expected an image index listing referrers`);
    }
    return { index: index as Record<string, unknown> & { manifests: Descriptor[] }, digest: m.digest };
  }

  async #fallbackIndexEntries(repo: string, subject: string): Promise<Descriptor[]> {
    const current = await this.#readFallbackIndex(repo, subject);
    return current ? current.index.manifests.filter((d) => isDigest(d.digest)) : [];
  }

  /** Read-modify-write of the fallback index; re-reads afterwards and retries when another writer replaced it. */
  async #addFallbackEntry(repo: string, subject: string, entry: Descriptor): Promise<boolean> {
    const tag = referrersFallbackTag(subject);
    const ctx: Ctx = { op: 'update referrers fallback index', repo, ref: tag };
    let changed = false;
    for (let round = 1; round <= 5; round++) {
      const current = await this.#readFallbackIndex(repo, subject);
      const existing = current?.index.manifests ?? [];
      const same = existing.find((d) => d.digest === entry.digest);
      if (same && JSON.stringify(same) === JSON.stringify(entry) && existing.filter((d) => d.digest === entry.digest).length === 1) {
        return changed;
      }
      const manifests: Descriptor[] = [];
      let placed = false;
      for (const d of existing) {
        if (d.digest === entry.digest) {
          if (!placed) manifests.push(entry);
          placed = true;
        } else {
          manifests.push(d);
        }
      }
      if (!placed) manifests.push(entry);
      const index = current ? { ...current.index, manifests } : { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests };
      const bytes = jsonBytes(index);
      const written = await this.putManifest(repo, tag, bytes, MediaType.ociIndex);
      changed = true;
      if ((await this.resolve(repo, tag)) === written) return changed;
      // Another writer (another process) replaced the index between our read and write: merge again.
    }
    throw this.#error(ctx, 'REGISTRY_ERROR', 'the fallback index kept changing under concurrent writers; gave up after 5 rounds');
  }

  // ---------------------------------------------------------------- manifests internals

  async #putManifest(repo: string, ref: string, bytes: Uint8Array, mediaType: string): Promise<{ digest: string; ociSubject: string | null }> {
    assertRepository(repo);
    assertReference(ref, `manifest reference in ${repo}`);
    const digest = sha256Digest(bytes);
    const ctx: Ctx = { op: 'put manifest', repo, ref };
    if (!MANIFEST_MEDIA_TYPES.includes(mediaType)) {
      throw this.#error(ctx, 'INVALID_ARGUMENT', `media type "${mediaType}" is not a manifest type (expected one of ${MANIFEST_MEDIA_TYPES.join(', ')})`);
    }
    if (bytes.byteLength > MAX_MANIFEST_BYTES) {
      throw this.#error(ctx, 'INVALID_ARGUMENT', `the manifest is ${bytes.byteLength} bytes, more than the ${MAX_MANIFEST_BYTES} registries accept`);
    }
    if (isDigest(ref) && ref !== digest) {
      throw this.#error(ctx, 'DIGEST_MISMATCH', `the manifest bytes hash to ${digest}, not to the reference ${ref}`);
    }
    const parsed = this.#parseJson(ctx, bytes) as { mediaType?: unknown };
    if (typeof parsed.mediaType === 'string' && parsed.mediaType !== mediaType) {
      throw this.#error(ctx, 'INVALID_ARGUMENT', `the manifest declares mediaType ${parsed.mediaType}, but it is being pushed as ${mediaType}`);
    }
    const result = await this.#withRetry(ctx, async () => {
      const res = await this.#exchange(ctx, 'PUT', `/v2/${repo}/manifests/${ref}`, { repo, push: true }, {
        headers: { 'content-type': mediaType, 'content-length': String(bytes.byteLength) },
        body: () => bytes,
      });
      await this.#expect(ctx, res, [201]);
      await res.body?.cancel();
      this.#checkDigestHeader(ctx, res, digest);
      return { digest, ociSubject: res.headers.get('oci-subject') };
    });
    this.#emit({ type: 'manifest', action: 'pushed', repository: repo, reference: ref, digest, size: bytes.byteLength });
    return result;
  }

  // ---------------------------------------------------------------- HTTP, auth, retries

  async #withRetry<T>(ctx: Ctx, fn: (attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (e) {
        if (!(e instanceof Retryable)) throw e;
        if (attempt >= this.#retry.attempts) {
          throw this.#error(ctx, 'REGISTRY_ERROR', `${e.message}; gave up after ${attempt} attempt${attempt === 1 ? '' : 's'}`);
        }
        const delayMs = backoffDelay(this.#retry, attempt, e.retryAfterMs);
        this.#emit({ type: 'retry', op: ctx.op, target: this.#target(ctx), attempt, delayMs, reason: e.message });
        await sleep(delayMs);
      }
    }
  }

  /** One HTTP exchange, with auth: credentials attached for our origin, one re-send after a challenge. */
  async #exchange(
    ctx: Ctx,
    method: string,
    pathOrUrl: string,
    scope: Scope,
    init: { headers?: Record<string, string>; body?: () => SendBody } = {},
  ): Promise<Response> {
    const url = new URL(pathOrUrl, this.#base);
    const sameOrigin = url.origin === this.#origin;
    const needed = scopeAtoms(scopeString(scope));
    const headers = new Headers(init.headers);
    headers.set('accept-encoding', 'identity');
    headers.set('user-agent', 'stella-release');
    let used: CachedToken | undefined;
    if (sameOrigin) {
      const auth = await this.#authHeader(ctx, needed, false);
      if (auth) {
        headers.set('authorization', auth.header);
        used = auth.cached;
      }
    }
    let res = await this.#send(method, url, headers, init.body);
    if (res.status === 401 && sameOrigin) {
      const challenges = parseChallenges(res.headers.get('www-authenticate'));
      await res.body?.cancel();
      const hadAuth = headers.has('authorization');
      if (used) this.#dropToken(used);
      this.#learnChallenge(ctx, challenges, hadAuth);
      const auth = await this.#authHeader(ctx, needed, true, challenges);
      if (!auth) {
        throw this.#error(ctx, 'REGISTRY_AUTH', 'the registry requires authentication (HTTP 401) and no credentials were given (set credentials or dockerConfig)');
      }
      headers.set('authorization', auth.header);
      res = await this.#send(method, url, headers, init.body);
      if (res.status === 401 && auth.cached) this.#dropToken(auth.cached);
    }
    return res;
  }

  async #send(method: string, url: URL, headers: Headers, body: (() => SendBody) | undefined): Promise<Response> {
    let res: Response;
    try {
      const b = body?.();
      res = await fetch(url, {
        method,
        headers,
        redirect: 'follow',
        signal: AbortSignal.timeout(this.#timeoutMs),
        ...(b !== undefined ? { body: b, duplex: 'half' } : {}),
      } as RequestInit);
    } catch (e) {
      throw new Retryable(`${method} ${url.pathname}: connection failed: ${this.#redactor.redact(describeNetworkError(e))}`);
    }
    this.#emit({ type: 'request', method, path: url.pathname, status: res.status });
    return res;
  }

  #learnChallenge(ctx: Ctx, challenges: Challenge[], hadAuth: boolean): void {
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    if (bearer) {
      const realm = bearer.params.realm;
      if (!realm) throw this.#error(ctx, 'REGISTRY_AUTH', 'the registry sent a Bearer challenge without a realm');
      this.#scheme = 'bearer';
      this.#bearer = { realm, service: bearer.params.service };
      if (this.#creds.kind === 'token' && hadAuth) {
        throw this.#error(ctx, 'REGISTRY_AUTH', 'the registry refused the given bearer token (HTTP 401)');
      }
      return;
    }
    if (basic) {
      this.#scheme = 'basic';
      if (hadAuth) throw this.#error(ctx, 'REGISTRY_AUTH', 'the registry refused the given credentials (HTTP 401, Basic)');
      return;
    }
    throw this.#error(ctx, 'REGISTRY_AUTH', `the registry answered 401 without a usable challenge (WWW-Authenticate: ${challenges.map((c) => c.scheme).join(', ') || 'none'})`);
  }

  /**
   * The Authorization header for a request needing `needed` scope atoms: a
   * cached token that covers them, else one fetched from the realm (one fetch
   * per scope set at a time, shared by concurrent requests).
   */
  async #authHeader(ctx: Ctx, needed: string[], challenged: boolean, challenges: Challenge[] = []): Promise<{ header: string; cached?: CachedToken } | undefined> {
    const creds = this.#creds;
    if (creds.kind === 'token') return { header: `Bearer ${creds.token}` };
    if (this.#scheme === 'basic') {
      if (creds.kind === 'basic') return { header: basicHeader(creds.username, creds.password) };
      if (challenged) throw this.#error(ctx, 'REGISTRY_AUTH', 'the registry requires Basic authentication (HTTP 401) and no credentials were given (set credentials or dockerConfig)');
      return undefined;
    }
    if (this.#scheme !== 'bearer' || !this.#bearer) return undefined;
    const hit = this.#findToken(needed);
    if (hit) return { header: `Bearer ${hit.token.token}`, cached: hit };
    const asked = challenges.find((c) => c.scheme === 'bearer')?.params.scope;
    const atoms = [...new Set([...scopeAtoms(asked ?? ''), ...needed])];
    const scopes = atomsToScopes(atoms);
    const key = scopes.join(' ');
    let pending = this.#pendingTokens.get(key);
    if (!pending) {
      const { realm, service } = this.#bearer;
      pending = this.#fetchToken(ctx, realm, service, scopes).then((token) => {
        const entry: CachedToken = { atoms: new Set(atoms), token };
        this.#tokens.push(entry);
        return entry;
      });
      this.#pendingTokens.set(key, pending);
      const clear = () => {
        if (this.#pendingTokens.get(key) === pending) this.#pendingTokens.delete(key);
      };
      pending.then(clear, clear);
    }
    const entry = await pending;
    return { header: `Bearer ${entry.token.token}`, cached: entry };
  }

  #findToken(needed: string[]): CachedToken | undefined {
    const now = Date.now();
    this.#tokens = this.#tokens.filter((t) => t.token.expiresAt > now);
    return this.#tokens.find((t) => needed.every((a) => t.atoms.has(a)));
  }

  #dropToken(t: CachedToken): void {
    this.#tokens = this.#tokens.filter((x) => x !== t);
  }

  async #fetchToken(ctx: Ctx, realm: string, service: string | undefined, scopes: string[]): Promise<Token> {
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw this.#error(ctx, 'REGISTRY_AUTH', `the token realm "${realm.slice(0, 200)}" is not a URL`);
    }
    const creds = this.#creds;
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw this.#error(ctx, 'REGISTRY_AUTH', `the token realm ${url.origin} is not http(s)`);
    }
    if (url.protocol === 'http:' && creds.kind !== 'anonymous' && !isLoopback(url.host) && url.origin !== this.#origin) {
      throw this.#error(ctx, 'REGISTRY_AUTH', `refusing to send credentials to the plain-HTTP token realm ${url.origin}`);
    }
    const scopeText = scopes.join(' ') || '(none)';
    this.#emit({ type: 'auth', scheme: 'bearer', scope: scopeText });
    const headers = new Headers({ 'user-agent': 'stella-release', 'accept-encoding': 'identity' });
    let method = 'GET';
    let body: (() => SendBody) | undefined;
    if (creds.kind === 'identity') {
      method = 'POST';
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'stella-release' });
      if (service) form.set('service', service);
      if (scopes.length) form.set('scope', scopes.join(' '));
      headers.set('content-type', 'application/x-www-form-urlencoded');
      const text = form.toString();
      body = () => text;
    } else {
      if (service) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      if (creds.kind === 'basic') {
        url.searchParams.set('account', creds.username);
        headers.set('authorization', basicHeader(creds.username, creds.password));
      }
    }
    const res = await this.#send(method, url, headers, body);
    if (res.status >= 500 || res.status === 429 || res.status === 408) {
      const excerpt = await this.#excerpt(res);
      throw new Retryable(`token endpoint ${url.origin}${url.pathname} answered HTTP ${res.status}: ${excerpt}`, res.status, parseRetryAfter(res.headers.get('retry-after')));
    }
    if (res.status !== 200) {
      const excerpt = await this.#excerpt(res);
      throw this.#error(ctx, 'REGISTRY_AUTH', `the token endpoint ${url.origin}${url.pathname} refused a token for scope ${scopeText} (HTTP ${res.status}, expected 200${creds.kind === 'anonymous' ? '; no credentials were given' : ''}): ${excerpt}`);
    }
    const raw = await this.#readBody(res, 1024 * 1024);
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(raw));
    } catch {
      parsed = undefined;
    }
    const token = parseTokenResponse(parsed, Date.now());
    if (token) this.#redactor.add(token.token);
    const refresh = (parsed as { refresh_token?: unknown } | undefined)?.refresh_token;
    if (typeof refresh === 'string') this.#redactor.add(refresh);
    if (!token) throw this.#error(ctx, 'REGISTRY_AUTH', `the token endpoint ${url.origin}${url.pathname} answered 200 without a token`);
    return token;
  }

  /** Passes on `ok`; retryable statuses become Retryable; others a StellaError with a body excerpt. */
  async #expect(ctx: Ctx, res: Response, ok: number[]): Promise<void> {
    if (ok.includes(res.status)) return;
    const excerpt = await this.#excerpt(res);
    const what = `HTTP ${res.status} (expected ${ok.join(' or ')})${excerpt ? `: ${excerpt}` : ''}`;
    if (res.status >= 500 || res.status === 429 || res.status === 408) {
      throw new Retryable(`registry answered ${what}`, res.status, parseRetryAfter(res.headers.get('retry-after')));
    }
    if (res.status === 401 || res.status === 403) throw this.#error(ctx, 'REGISTRY_AUTH', `the registry refused access: ${what}`);
    throw this.#error(ctx, 'REGISTRY_ERROR', `the registry answered ${what}`);
  }

  async #excerpt(res: Response): Promise<string> {
    try {
      const text = new TextDecoder().decode(await this.#readBody(res, 64 * 1024));
      const flat = text.replace(/\s+/g, ' ').trim();
      return this.#redactor.redact(flat.length > 300 ? `${flat.slice(0, 300)}…` : flat);
    } catch {
      return '';
    }
  }

  /** The whole body, or Retryable when the connection breaks while reading. Refuses bodies larger than `limit`. */
  async #readBody(res: Response, limit = Number.MAX_SAFE_INTEGER): Promise<Uint8Array> {
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (declared > limit) {
      await res.body?.cancel();
      throw new StellaError('REGISTRY_ERROR', `${res.url ? new URL(res.url).pathname : 'response'}: body of ${declared} bytes is larger than the ${limit} allowed`);
    }
    if (!res.body) return new Uint8Array(0);
    const chunks: Uint8Array[] = [];
    let total = 0;
    try {
      for await (const chunk of res.body) {
        total += chunk.byteLength;
        if (total > limit) {
          await res.body.cancel().catch(() => undefined);
          throw new StellaError('REGISTRY_ERROR', `${new URL(res.url).pathname}: body larger than the ${limit} bytes allowed`);
        }
        chunks.push(chunk);
      }
    } catch (e) {
      if (e instanceof StellaError) throw e;
      throw new Retryable(`reading the response of ${new URL(res.url).pathname} failed: ${this.#redactor.redact(describeNetworkError(e))}`);
    }
    const out = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) {
      out.set(c, off);
      off += c.byteLength;
    }
    return out;
  }

  #location(ctx: Ctx, res: Response): URL {
    const loc = res.headers.get('location');
    if (!loc) throw this.#error(ctx, 'REGISTRY_ERROR', `the registry started an upload (HTTP ${res.status}) without a Location header`);
    const url = new URL(loc, this.#base);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw this.#error(ctx, 'REGISTRY_ERROR', `the upload Location ${url.protocol} is not http(s)`);
    }
    return url;
  }

  /** Best effort: ends an abandoned upload session so the registry can drop it. */
  #cancelUpload(location: URL): void {
    if (location.origin !== this.#origin) return;
    const headers = new Headers({ 'user-agent': 'stella-release' });
    void (async () => {
      try {
        const auth = this.#creds.kind === 'token' ? `Bearer ${this.#creds.token}` : undefined;
        if (auth) headers.set('authorization', auth);
        const u = new URL(location.href);
        u.searchParams.delete('digest');
        const res = await fetch(u, { method: 'DELETE', headers, signal: AbortSignal.timeout(5000) });
        await res.body?.cancel();
      } catch {
        // ignored: the registry expires stale sessions itself
      }
    })();
  }

  #checkDigestHeader(ctx: Ctx, res: Response, expected: string): void {
    const got = res.headers.get('docker-content-digest');
    if (got && got !== expected) {
      throw this.#error(ctx, 'DIGEST_MISMATCH', `the registry's Docker-Content-Digest is ${got.slice(0, 80)}, expected ${expected} (sha256 of the bytes)`);
    }
  }

  #verify(ctx: Ctx, bytes: Uint8Array, digest: string, what: string): void {
    try {
      verifyDigest(bytes, digest, what);
    } catch (e) {
      throw this.#error(ctx, 'DIGEST_MISMATCH', (e as Error).message);
    }
  }

  #parseJson(ctx: Ctx, bytes: Uint8Array): Record<string, unknown> {
    try {
      const v = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
      if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      // below
    }
    throw this.#error(ctx, 'INVALID_ARGUMENT', 'the manifest is not a JSON object');
  }

  #target(ctx: Ctx): string {
    if (!ctx.repo) return this.registry;
    if (!ctx.ref) return `${this.registry}/${ctx.repo}`;
    return `${this.registry}/${ctx.repo}${isDigest(ctx.ref) ? '@' : ':'}${ctx.ref}`;
  }

  #error(ctx: Ctx, code: ErrorCode, text: string): StellaError {
    return new StellaError(code, this.#redactor.redact(`${ctx.op} ${this.#target(ctx)}: ${text}`));
  }

  #emit(e: RegistryEvent): void {
    if (!this.#onEvent) return;
    try {
      this.#onEvent(this.#redactor.redactValue(e));
    } catch {
      // a listener's failure never breaks a push
    }
  }
}

/** `repository:a:pull,push repository:b:pull` → one atom per action: `repository:a:pull`, `repository:a:push`, `repository:b:pull`. */
function scopeAtoms(scopes: string): string[] {
  const out: string[] = [];
  for (const s of scopes.split(' ').filter(Boolean)) {
    const i = s.lastIndexOf(':');
    if (i <= 0) {
      out.push(s);
      continue;
    }
    for (const action of s.slice(i + 1).split(',').filter(Boolean)) out.push(`${s.slice(0, i)}:${action}`);
  }
  return out;
}

/** The inverse of scopeAtoms: one scope per resource, its actions joined (sorted). */
function atomsToScopes(atoms: string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const a of atoms) {
    const i = a.lastIndexOf(':');
    const resource = i > 0 ? a.slice(0, i) : a;
    const set = byResource.get(resource) ?? new Set<string>();
    if (i > 0) set.add(a.slice(i + 1));
    byResource.set(resource, set);
  }
  return [...byResource].map(([r, actions]) => (actions.size ? `${r}:${[...actions].sort().join(',')}` : r));
}

function scopeString(scope: Scope): string {
  if (!scope) return '';
  const own = `repository:${scope.repo}:${scope.push ? 'pull,push' : 'pull'}`;
  return scope.from ? `${own} repository:${scope.from}:pull` : own;
}
