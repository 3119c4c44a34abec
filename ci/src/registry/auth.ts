/**
 * Registry authentication: credential sources (options, a Docker config.json),
 * `WWW-Authenticate` challenge parsing, and the token flow of the distribution
 * token spec (GET with Basic or anonymously; POST with a refresh token for an
 * identity token).
 */
import { readFileSync } from 'node:fs';
import { StellaError } from '../errors.ts';

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
 * Credentials for `registry` from a Docker config.json: `auths[host].auth`
 * (base64 `user:password`), `username`/`password`, or `identitytoken`.
 * Returns undefined when the file has no entry for the registry. Credential
 * helpers are not run; an entry that only names one is reported as missing.
 */
export function credentialsFromDockerConfig(path: string, registry: string): ResolvedCredentials | undefined {
  let cfg: DockerConfigFile;
  try {
    cfg = JSON.parse(readFileSync(path, 'utf8')) as DockerConfigFile;
  } catch (e) {
    // The file's content never goes into the message: it holds secrets.
    throw new StellaError('REGISTRY_AUTH', `Docker config ${path}: cannot be read as JSON (${(e as NodeJS.ErrnoException).code ?? 'invalid JSON'})`);
  }
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
  if (cfg.credHelpers?.[registry] || cfg.credsStore) {
    // Not an error: anonymous access may still work. Said here so a later 401 is explainable.
    return undefined;
  }
  return undefined;
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
