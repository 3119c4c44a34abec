/**
 * Registry authentication: credential sources (options, a Docker config.json
 * with its `auths`, `credHelpers` and `credsStore`), `WWW-Authenticate`
 * challenge parsing, and the token flow of the distribution token spec (GET
 * with Basic or anonymously; POST with a refresh token for an identity token),
 * with tokens cached per scope (Authenticator).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { StellaError } from '../errors.ts';
import { isLoopback } from './names.ts';

export type Credentials = { readonly username: string; readonly password: string } | { readonly token: string };

/** What the client holds after resolving its options. */
export type ResolvedCredentials =
  | { readonly kind: 'anonymous' }
  | { readonly kind: 'basic'; readonly username: string; readonly password: string }
  /** A registry bearer token used as is (e.g. one a CI system hands out). */
  | { readonly kind: 'token'; readonly token: string }
  /** An OAuth2 refresh token (`identitytoken` in a Docker config): exchanged at the token realm. */
  | { readonly kind: 'identity'; readonly username: string; readonly identityToken: string };

export interface Challenge {
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

/**
 * Parses a `WWW-Authenticate` header into its challenges. Quoted values may
 * contain commas (`scope="repository:a:pull,push"`).
 */
export function parseChallenges(header: string | null): Challenge[] {
  if (!header) return [];
  const out: { scheme: string; params: Record<string, string> }[] = [];
  let i = 0;
  const n = header.length;
  const skipWs = () => {
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
  };
  while (i < n) {
    skipWs();
    while (i < n && header[i] === ',') i++;
    skipWs();
    const m = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+/.exec(header.slice(i));
    if (!m) break;
    const word = m[0];
    i += word.length;
    skipWs();
    if (header[i] === '=' && out.length > 0) {
      // key=value of the current challenge
      i++;
      skipWs();
      let value = '';
      if (header[i] === '"') {
        i++;
        while (i < n && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < n) i++;
          value += header[i];
          i++;
        }
        i++;
      } else {
        const v = /^[^,\s]*/.exec(header.slice(i))![0];
        value = v;
        i += v.length;
      }
      out[out.length - 1]!.params[word.toLowerCase()] = value;
      skipWs();
      if (header[i] === ',') i++;
    } else {
      out.push({ scheme: word.toLowerCase(), params: {} });
    }
  }
  return out;
}

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/** The keys a Docker config may use for one registry. */
function configKeys(registry: string): string[] {
  const keys = [registry, `https://${registry}`, `http://${registry}`, `https://${registry}/v1/`, `https://${registry}/v2/`];
  if (registry === 'docker.io' || registry === 'registry-1.docker.io' || registry === 'index.docker.io') {
    keys.push('https://index.docker.io/v1/', 'index.docker.io', 'docker.io');
  }
  return keys;
}

/**
 * Credentials for `registry` from a Docker config.json, as Docker resolves
 * them: a per-registry `credHelpers` entry first, else the `credsStore`, else
 * `auths[host]` (`auth`: base64 `user:password`, `username`/`password`, or
 * `identitytoken`). A helper is run as `docker-credential-<name> get` with the
 * server URL on stdin; its "credentials not found" answer means anonymous.
 * Returns undefined when nothing is configured for the registry.
 */
export function credentialsFromDockerConfig(path: string, registry: string): ResolvedCredentials | undefined {
  let cfg: DockerConfigFile;
  try {
    cfg = JSON.parse(readFileSync(path, 'utf8')) as DockerConfigFile;
  } catch (e) {
    // The file's content never goes into the message: it holds secrets.
    throw new StellaError('REGISTRY_AUTH', `Docker config ${path}: cannot be read as JSON (${(e as NodeJS.ErrnoException).code ?? 'invalid JSON'})`);
  }
  const helper = helperFor(cfg, registry);
  if (helper) return credentialsFromHelper(helper, registry, path);
  const auths = cfg.auths ?? {};
  for (const key of configKeys(registry)) {
    const entry = auths[key];
    if (!entry) continue;
    let username = entry.username;
    let password = entry.password;
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) {
        throw new StellaError('REGISTRY_AUTH', `Docker config ${path}: auths["${key}"].auth is not base64 of "user:password"`);
      }
      username = decoded.slice(0, colon);
      password = decoded.slice(colon + 1);
    }
    if (entry.identitytoken) {
      return { kind: 'identity', username: username ?? '<token>', identityToken: entry.identitytoken };
    }
    if (username !== undefined && password !== undefined) return { kind: 'basic', username, password };
  }
  return undefined;
}

/** The credential helper Docker would ask for `registry`: `credHelpers[host]`, else `credsStore`. */
function helperFor(cfg: DockerConfigFile, registry: string): string | undefined {
  for (const key of configKeys(registry)) {
    const h = cfg.credHelpers?.[key];
    if (typeof h === 'string' && h) return h;
  }
  return typeof cfg.credsStore === 'string' && cfg.credsStore ? cfg.credsStore : undefined;
}

/** The server URL Docker hands a helper: the host, or Docker Hub's legacy index URL. */
function helperServerUrl(registry: string): string {
  return registry === 'docker.io' || registry === 'registry-1.docker.io' || registry === 'index.docker.io' ? 'https://index.docker.io/v1/' : registry;
}

/**
 * Runs `docker-credential-<helper> get` (the docker-credential-helpers protocol).
 * A missing helper or a failure is a StellaError naming the helper and the
 * registry; nothing the helper printed on stdout (where secrets travel) is shown.
 */
export function credentialsFromHelper(helper: string, registry: string, configPath = 'Docker config'): ResolvedCredentials | undefined {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(helper)) {
    throw new StellaError('REGISTRY_AUTH', `${configPath}: credential helper name ${JSON.stringify(helper.slice(0, 60))} for ${registry} is not a plain name`);
  }
  const bin = `docker-credential-${helper}`;
  const r = spawnSync(bin, ['get'], { input: `${helperServerUrl(registry)}\n`, encoding: 'utf8', timeout: 60_000, maxBuffer: 1024 * 1024 });
  const where = `credential helper ${bin} (from ${configPath}) for registry ${registry}`;
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new StellaError('REGISTRY_AUTH', `${where}: ${bin} is not on PATH; install it, or remove "${helper}" from credsStore/credHelpers`);
    throw new StellaError('REGISTRY_AUTH', `${where}: could not be run (${code ?? r.error.message})`);
  }
  const stdout = (r.stdout ?? '').trim();
  if (r.status !== 0) {
    // The helpers' own "not found" answer (credentials.ErrCredentialsNotFound) means anonymous.
    if (/credentials not found/i.test(stdout) || /credentials not found/i.test(r.stderr ?? '')) return undefined;
    const stderr = (r.stderr ?? '').replace(/\s+/g, ' ').trim().slice(0, 200);
    throw new StellaError('REGISTRY_AUTH', `${where}: "${bin} get" failed (${r.status === null ? `killed by ${r.signal}` : `exit ${r.status}`})${stderr ? `: ${stderr}` : ''}`);
  }
  let parsed: { Username?: unknown; Secret?: unknown };
  try {
    parsed = JSON.parse(stdout) as { Username?: unknown; Secret?: unknown };
  } catch {
    throw new StellaError('REGISTRY_AUTH', `${where}: "${bin} get" answered something that is not JSON {ServerURL, Username, Secret}`);
  }
  const username = typeof parsed.Username === 'string' ? parsed.Username : '';
  const secret = typeof parsed.Secret === 'string' ? parsed.Secret : '';
  if (!secret) return undefined;
  // docker-credential-helpers: Username "<token>" means Secret is an identity (refresh) token.
  if (username === '<token>') return { kind: 'identity', username, identityToken: secret };
  return { kind: 'basic', username, password: secret };
}

export function resolveCredentials(opts: { credentials?: Credentials; dockerConfig?: string }, registry: string): ResolvedCredentials {
  const c = opts.credentials;
  if (c) {
    if ('token' in c) return { kind: 'token', token: c.token };
    return { kind: 'basic', username: c.username, password: c.password };
  }
  if (opts.dockerConfig) return credentialsFromDockerConfig(opts.dockerConfig, registry) ?? { kind: 'anonymous' };
  return { kind: 'anonymous' };
}

export function basicHeader(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

export interface Token {
  readonly token: string;
  /** ms since epoch */
  readonly expiresAt: number;
}

/** The token endpoint's JSON answer (distribution token spec). */
export function parseTokenResponse(body: unknown, now: number): Token | undefined {
  if (!body || typeof body !== 'object') return undefined;
  const b = body as { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
  const token = typeof b.token === 'string' && b.token ? b.token : typeof b.access_token === 'string' && b.access_token ? b.access_token : undefined;
  if (!token) return undefined;
  // Spec: default 60 s, minimum 60 s. Keep a 10 s margin so a token never expires in flight.
  const expiresIn = typeof b.expires_in === 'number' && b.expires_in >= 60 ? b.expires_in : 60;
  return { token, expiresAt: now + (expiresIn - 10) * 1000 };
}

// ---------------------------------------------------------------- the token flow

/** A bearer token and the scope atoms (`repository:<name>:<action>`) it was asked for. */
export interface CachedToken {
  readonly atoms: ReadonlySet<string>;
  readonly token: Token;
}

/** What the Authenticator needs from the transport: sending, reading, erroring, reporting. */
export interface AuthHost {
  readonly origin: string;
  send(method: string, url: URL, headers: Headers, body: (() => string) | undefined): Promise<Response>;
  readBody(res: Response, limit: number): Promise<Uint8Array>;
  excerpt(res: Response): Promise<string>;
  /** A StellaError (REGISTRY_AUTH) for the current operation. */
  fail(text: string): StellaError;
  /** A retryable failure (token endpoint 5xx/408/429). */
  retryable(text: string, status: number, retryAfter: string | null): Error;
  onToken(secret: string): void;
  onAuth(scope: string): void;
}

/**
 * Learns what the registry asks for from its first challenge (Basic or the
 * bearer-token flow) and produces Authorization headers: cached tokens that
 * cover the needed scope atoms, else one fetched from the realm (one fetch per
 * scope set at a time, shared by concurrent requests).
 */
export class Authenticator {
  readonly #creds: () => ResolvedCredentials;
  #scheme: 'none' | 'basic' | 'bearer' = 'none';
  #bearer: { realm: string; service: string | undefined } | undefined;
  #tokens: CachedToken[] = [];
  readonly #pending = new Map<string, Promise<CachedToken>>();

  constructor(creds: () => ResolvedCredentials) {
    this.#creds = creds;
  }

  learnChallenge(host: AuthHost, challenges: Challenge[], hadAuth: boolean): void {
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    if (bearer) {
      const realm = bearer.params.realm;
      if (!realm) throw host.fail('the registry sent a Bearer challenge without a realm');
      this.#scheme = 'bearer';
      this.#bearer = { realm, service: bearer.params.service };
      if (this.#creds().kind === 'token' && hadAuth) throw host.fail('the registry refused the given bearer token (HTTP 401)');
      return;
    }
    if (basic) {
      this.#scheme = 'basic';
      if (hadAuth) throw host.fail('the registry refused the given credentials (HTTP 401, Basic)');
      return;
    }
    throw host.fail(`the registry answered 401 without a usable challenge (WWW-Authenticate: ${challenges.map((c) => c.scheme).join(', ') || 'none'})`);
  }

  async header(host: AuthHost, needed: string[], challenged: boolean, challenges: Challenge[] = []): Promise<{ header: string; cached?: CachedToken } | undefined> {
    const creds = this.#creds();
    if (creds.kind === 'token') return { header: `Bearer ${creds.token}` };
    if (this.#scheme === 'basic') {
      if (creds.kind === 'basic') return { header: basicHeader(creds.username, creds.password) };
      if (challenged) throw host.fail('the registry requires Basic authentication (HTTP 401) and no credentials were given (set credentials or dockerConfig)');
      return undefined;
    }
    if (this.#scheme !== 'bearer' || !this.#bearer) return undefined;
    const hit = this.#find(needed);
    if (hit) return { header: `Bearer ${hit.token.token}`, cached: hit };
    const asked = challenges.find((c) => c.scheme === 'bearer')?.params.scope;
    const atoms = [...new Set([...scopeAtoms(asked ?? ''), ...needed])];
    const scopes = atomsToScopes(atoms);
    const key = scopes.join(' ');
    let pending = this.#pending.get(key);
    if (!pending) {
      const { realm, service } = this.#bearer;
      pending = this.#fetchToken(host, realm, service, scopes).then((token) => {
        const entry: CachedToken = { atoms: new Set(atoms), token };
        this.#tokens.push(entry);
        return entry;
      });
      this.#pending.set(key, pending);
      const clear = () => {
        if (this.#pending.get(key) === pending) this.#pending.delete(key);
      };
      pending.then(clear, clear);
    }
    const entry = await pending;
    return { header: `Bearer ${entry.token.token}`, cached: entry };
  }

  drop(t: CachedToken): void {
    this.#tokens = this.#tokens.filter((x) => x !== t);
  }

  #find(needed: string[]): CachedToken | undefined {
    const now = Date.now();
    this.#tokens = this.#tokens.filter((t) => t.token.expiresAt > now);
    return this.#tokens.find((t) => needed.every((a) => t.atoms.has(a)));
  }

  async #fetchToken(host: AuthHost, realm: string, service: string | undefined, scopes: string[]): Promise<Token> {
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw host.fail(`the token realm "${realm.slice(0, 200)}" is not a URL`);
    }
    const creds = this.#creds();
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw host.fail(`the token realm ${url.origin} is not http(s)`);
    if (url.protocol === 'http:' && creds.kind !== 'anonymous' && !isLoopback(url.host) && url.origin !== host.origin) {
      throw host.fail(`refusing to send credentials to the plain-HTTP token realm ${url.origin}`);
    }
    const scopeText = scopes.join(' ') || '(none)';
    host.onAuth(scopeText);
    const headers = new Headers({ 'user-agent': 'stella-release', 'accept-encoding': 'identity' });
    let method = 'GET';
    let body: (() => string) | undefined;
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
    const res = await host.send(method, url, headers, body);
    if (res.status >= 500 || res.status === 429 || res.status === 408) {
      const excerpt = await host.excerpt(res);
      throw host.retryable(`token endpoint ${url.origin}${url.pathname} answered HTTP ${res.status}: ${excerpt}`, res.status, res.headers.get('retry-after'));
    }
    if (res.status !== 200) {
      const excerpt = await host.excerpt(res);
      throw host.fail(`the token endpoint ${url.origin}${url.pathname} refused a token for scope ${scopeText} (HTTP ${res.status}, expected 200${creds.kind === 'anonymous' ? '; no credentials were given' : ''}): ${excerpt}`);
    }
    const raw = await host.readBody(res, 1024 * 1024);
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(raw));
    } catch {
      parsed = undefined;
    }
    const token = parseTokenResponse(parsed, Date.now());
    if (token) host.onToken(token.token);
    const refresh = (parsed as { refresh_token?: unknown } | undefined)?.refresh_token;
    if (typeof refresh === 'string') host.onToken(refresh);
    if (!token) throw host.fail(`the token endpoint ${url.origin}${url.pathname} answered 200 without a token`);
    return token;
  }
}

/** `repository:a:pull,push repository:b:pull` → one atom per action: `repository:a:pull`, `repository:a:push`, `repository:b:pull`. */
export function scopeAtoms(scopes: string): string[] {
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
