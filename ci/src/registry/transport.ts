/**
 * The registry client's HTTP layer: one exchange at a time over the built-in
 * `fetch`, with auth (credentials only to the registry's own origin and its
 * token realm, see auth.ts), retries of 5xx, 408, 429 (with Retry-After) and
 * network errors with backoff (retry.ts), bounded body reads, and errors that
 * name the operation, repository, digest or tag, the status and a short body
 * excerpt — with every known secret removed (Redactor).
 */
import { StellaError, type ErrorCode } from '../errors.ts';
import { isDigest, verifyDigest } from '../oci/types.ts';
import { Authenticator, parseChallenges, resolveCredentials, scopeAtoms, type AuthHost, type CachedToken, type Credentials, type ResolvedCredentials } from './auth.ts';
import { assertRegistryHost, isLoopback } from './names.ts';
import { Redactor } from '../redact/index.ts';
import { DEFAULT_RETRY, backoffDelay, parseRetryAfter, sleep, validateRetryPolicy, type RetryPolicy } from './retry.ts';

export interface RegistryClientOptions {
  /** host[:port], no scheme, e.g. `127.0.0.1:5000` or `ghcr.io`. */
  readonly registry: string;
  /** Plain HTTP. Default: true for 127.0.0.1/localhost/::1, otherwise false (HTTPS). */
  readonly insecure?: boolean;
  /** `{username, password}` for Basic and the token flow, or `{token}`: a registry bearer token sent as is. */
  readonly credentials?: Credentials;
  /**
   * Path to a Docker config.json; used when `credentials` is not given. Its
   * `credHelpers`/`credsStore` helpers are run (once, by the constructor) as Docker runs them.
   */
  readonly dockerConfig?: string;
  readonly retry?: RetryPolicy;
  /** Progress and retry events; they never carry credentials. */
  readonly onEvent?: (e: RegistryEvent) => void;
  /** Per HTTP request; default 10 minutes (a large layer on a slow link). */
  readonly timeoutMs?: number;
}

export type BlobPushResult = 'pushed' | 'skipped' | 'mounted';

export type RegistryEvent =
  | { readonly type: 'request'; readonly method: string; readonly path: string; readonly status: number }
  | { readonly type: 'retry'; readonly op: string; readonly target: string; readonly attempt: number; readonly delayMs: number; readonly reason: string }
  | { readonly type: 'auth'; readonly scheme: 'basic' | 'bearer'; readonly scope: string }
  | { readonly type: 'blob'; readonly action: BlobPushResult; readonly repository: string; readonly digest: string; readonly size: number }
  | { readonly type: 'manifest'; readonly action: 'pushed'; readonly repository: string; readonly reference: string; readonly digest: string; readonly size: number }
  | { readonly type: 'referrer'; readonly mode: 'api' | 'fallback'; readonly action: 'added' | 'unchanged'; readonly repository: string; readonly subject: string; readonly digest: string };

/** What a request body may be; a factory makes a fresh one per send. */
export type SendBody = Uint8Array | string | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

/** The repository access a request needs (for the token scope). */
export type Scope = { readonly repo: string; readonly push?: boolean; readonly from?: string } | undefined;

/** What an operation is about, for messages. */
export interface Ctx {
  readonly op: string;
  readonly repo?: string;
  readonly ref?: string;
}

/** A failure worth another attempt: 5xx, 408, 429 or a network error. */
export class Retryable extends Error {
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

function describeNetworkError(e: unknown): string {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err?.name === 'TimeoutError') return 'request timed out';
  const code = err?.cause?.code;
  const msg = err?.cause?.message ?? err?.message ?? String(e);
  return code ? `${code} (${msg})` : msg;
}

function scopeString(scope: Scope): string {
  if (!scope) return '';
  const own = `repository:${scope.repo}:${scope.push ? 'pull,push' : 'pull'}`;
  return scope.from ? `${own} repository:${scope.from}:pull` : own;
}

export class Transport {
  /** host[:port] as given. */
  readonly registry: string;
  /** `https://host[:port]` or `http://…` for insecure registries. */
  readonly base: string;
  readonly origin: string;
  readonly redactor = new Redactor();
  readonly #opts: RegistryClientOptions;
  #creds: ResolvedCredentials | undefined;
  readonly #auth: Authenticator;
  readonly #retry: RetryPolicy;
  readonly #onEvent: ((e: RegistryEvent) => void) | undefined;
  readonly #timeoutMs: number;

  constructor(opts: RegistryClientOptions) {
    this.registry = assertRegistryHost(opts.registry);
    const insecure = opts.insecure ?? (isLoopback(this.registry) || insecureByEnvironment(this.registry));
    this.base = `${insecure ? 'http' : 'https'}://${this.registry}`;
    this.origin = new URL(this.base).origin;
    this.#opts = opts;
    this.#retry = validateRetryPolicy(opts.retry ?? DEFAULT_RETRY);
    this.#onEvent = opts.onEvent;
    this.#timeoutMs = opts.timeoutMs ?? 600_000;
    this.#auth = new Authenticator(() => this.credentials());
    // Resolved now, so a bad Docker config or a failing credential helper is an error at construction.
    this.credentials();
  }

  /** The credentials, resolved once (a Docker config's credential helper runs here). */
  credentials(): ResolvedCredentials {
    if (this.#creds) return this.#creds;
    const creds = resolveCredentials(this.#opts, this.registry);
    switch (creds.kind) {
      case 'basic':
        this.redactor.addBasic(creds.username, creds.password);
        break;
      case 'token':
        this.redactor.add([creds.token]);
        break;
      case 'identity':
        this.redactor.add([creds.identityToken]);
        break;
      case 'anonymous':
        break;
    }
    this.#creds = creds;
    return creds;
  }

  async withRetry<T>(ctx: Ctx, fn: (attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (e) {
        if (!(e instanceof Retryable)) throw e;
        if (attempt >= this.#retry.attempts) {
          throw this.error(ctx, 'REGISTRY_ERROR', `${e.message}; gave up after ${attempt} attempt${attempt === 1 ? '' : 's'}`);
        }
        const delayMs = backoffDelay(this.#retry, attempt, e.retryAfterMs);
        this.emit({ type: 'retry', op: ctx.op, target: this.target(ctx), attempt, delayMs, reason: e.message });
        await sleep(delayMs);
      }
    }
  }

  #host(ctx: Ctx): AuthHost {
    return {
      origin: this.origin,
      send: (method, url, headers, body) => this.send(method, url, headers, body),
      readBody: (res, limit) => this.readBody(res, limit),
      excerpt: (res) => this.excerpt(res),
      fail: (text) => this.error(ctx, 'REGISTRY_AUTH', text),
      retryable: (text, status, retryAfter) => new Retryable(text, status, parseRetryAfter(retryAfter)),
      onToken: (secret) => this.redactor.add([secret]),
      onAuth: (scope) => this.emit({ type: 'auth', scheme: 'bearer', scope }),
    };
  }

  /** One HTTP exchange, with auth: credentials attached for our origin, one re-send after a challenge. */
  async exchange(ctx: Ctx, method: string, pathOrUrl: string, scope: Scope, init: { headers?: Record<string, string>; body?: () => SendBody } = {}): Promise<Response> {
    const url = new URL(pathOrUrl, this.base);
    const sameOrigin = url.origin === this.origin;
    const needed = scopeAtoms(scopeString(scope));
    const headers = new Headers(init.headers);
    headers.set('accept-encoding', 'identity');
    headers.set('user-agent', 'stella-release');
    const host = this.#host(ctx);
    let used: CachedToken | undefined;
    if (sameOrigin) {
      const auth = await this.#auth.header(host, needed, false);
      if (auth) {
        headers.set('authorization', auth.header);
        used = auth.cached;
      }
    }
    let res = await this.send(method, url, headers, init.body);
    if (res.status === 401 && sameOrigin) {
      const challenges = parseChallenges(res.headers.get('www-authenticate'));
      await res.body?.cancel();
      const hadAuth = headers.has('authorization');
      if (used) this.#auth.drop(used);
      this.#auth.learnChallenge(host, challenges, hadAuth);
      const auth = await this.#auth.header(host, needed, true, challenges);
      if (!auth) {
        throw this.error(ctx, 'REGISTRY_AUTH', 'the registry requires authentication (HTTP 401) and no credentials were given (set credentials or dockerConfig)');
      }
      headers.set('authorization', auth.header);
      res = await this.send(method, url, headers, init.body);
      if (res.status === 401 && auth.cached) this.#auth.drop(auth.cached);
    }
    return res;
  }

  async send(method: string, url: URL, headers: Headers, body: (() => SendBody) | undefined): Promise<Response> {
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
      throw new Retryable(`${method} ${url.pathname}: connection failed: ${this.redactor.text(describeNetworkError(e))}`);
    }
    this.emit({ type: 'request', method, path: url.pathname, status: res.status });
    return res;
  }

  /** Passes on `ok`; retryable statuses become Retryable; others a StellaError with a body excerpt. */
  async expect(ctx: Ctx, res: Response, ok: number[]): Promise<void> {
    if (ok.includes(res.status)) return;
    const excerpt = await this.excerpt(res);
    const what = `HTTP ${res.status} (expected ${ok.join(' or ')})${excerpt ? `: ${excerpt}` : ''}`;
    if (res.status >= 500 || res.status === 429 || res.status === 408) {
      throw new Retryable(`registry answered ${what}`, res.status, parseRetryAfter(res.headers.get('retry-after')));
    }
    if (res.status === 401 || res.status === 403) throw this.error(ctx, 'REGISTRY_AUTH', `the registry refused access: ${what}`);
    throw this.error(ctx, 'REGISTRY_ERROR', `the registry answered ${what}`);
  }

  async excerpt(res: Response): Promise<string> {
    try {
      const text = new TextDecoder().decode(await this.readBody(res, 64 * 1024));
      const flat = text.replace(/\s+/g, ' ').trim();
      return this.redactor.text(flat.length > 300 ? `${flat.slice(0, 300)}…` : flat);
    } catch {
      return '';
    }
  }

  /** The whole body, or Retryable when the connection breaks while reading. Refuses bodies larger than `limit`. */
  async readBody(res: Response, limit = Number.MAX_SAFE_INTEGER): Promise<Uint8Array> {
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
      throw new Retryable(`reading the response of ${new URL(res.url).pathname} failed: ${this.redactor.text(describeNetworkError(e))}`);
    }
    const out = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) {
      out.set(c, off);
      off += c.byteLength;
    }
    return out;
  }

  location(ctx: Ctx, res: Response): URL {
    const loc = res.headers.get('location');
    if (!loc) throw this.error(ctx, 'REGISTRY_ERROR', `the registry started an upload (HTTP ${res.status}) without a Location header`);
    const url = new URL(loc, this.base);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw this.error(ctx, 'REGISTRY_ERROR', `the upload Location ${url.protocol} is not http(s)`);
    }
    return url;
  }

  /** Best effort: ends an abandoned upload session so the registry can drop it. */
  cancelUpload(location: URL): void {
    if (location.origin !== this.origin) return;
    const headers = new Headers({ 'user-agent': 'stella-release' });
    void (async () => {
      try {
        const creds = this.#creds;
        if (creds?.kind === 'token') headers.set('authorization', `Bearer ${creds.token}`);
        const u = new URL(location.href);
        u.searchParams.delete('digest');
        const res = await fetch(u, { method: 'DELETE', headers, signal: AbortSignal.timeout(5000) });
        await res.body?.cancel();
      } catch {
        // ignored: the registry expires stale sessions itself
      }
    })();
  }

  checkDigestHeader(ctx: Ctx, res: Response, expected: string): void {
    const got = res.headers.get('docker-content-digest');
    if (got && got !== expected) {
      throw this.error(ctx, 'DIGEST_MISMATCH', `the registry's Docker-Content-Digest is ${got.slice(0, 80)}, expected ${expected} (sha256 of the bytes)`);
    }
  }

  verify(ctx: Ctx, bytes: Uint8Array, digest: string, what: string): void {
    try {
      verifyDigest(bytes, digest, what);
    } catch (e) {
      throw this.error(ctx, 'DIGEST_MISMATCH', (e as Error).message);
    }
  }

  parseJson(ctx: Ctx, bytes: Uint8Array): Record<string, unknown> {
    try {
      const v = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
      if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      // below
    }
    throw this.error(ctx, 'INVALID_ARGUMENT', 'the manifest is not a JSON object');
  }

  target(ctx: Ctx): string {
    if (!ctx.repo) return this.registry;
    if (!ctx.ref) return `${this.registry}/${ctx.repo}`;
    return `${this.registry}/${ctx.repo}${isDigest(ctx.ref) ? '@' : ':'}${ctx.ref}`;
  }

  error(ctx: Ctx, code: ErrorCode, text: string): StellaError {
    return new StellaError(code, this.redactor.text(`${ctx.op} ${this.target(ctx)}: ${text}`));
  }

  emit(e: RegistryEvent): void {
    if (!this.#onEvent) return;
    try {
      this.#onEvent(this.redactor.value(e) as RegistryEvent);
    } catch {
      // a listener's failure never breaks a push
    }
  }
}
