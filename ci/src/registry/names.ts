/**
 * Name checks for the distribution API, applied before any URL is built:
 * repository names per the distribution-spec grammar, tags per the tag grammar,
 * digests via `assertDigest`. Nothing user-supplied reaches a URL path unchecked.
 */
import { StellaError } from '../errors.ts';
import { assertDigest } from '../oci/types.ts';

/** distribution-spec: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*` */
const REPOSITORY_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
/** distribution-spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}` */
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
/** host, IPv4 or [IPv6], optional :port. */
const REGISTRY_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

export const MAX_REPOSITORY_LENGTH = 255;

function show(s: unknown): string {
  return JSON.stringify(String(s).slice(0, 100));
}

export function isRepository(s: unknown): s is string {
  return typeof s === 'string' && s.length <= MAX_REPOSITORY_LENGTH && REPOSITORY_RE.test(s);
}

export function isTag(s: unknown): s is string {
  return typeof s === 'string' && TAG_RE.test(s);
}

export function assertRepository(s: unknown, where = 'repository'): string {
  if (!isRepository(s)) {
    throw new StellaError(
      'INVALID_ARGUMENT',
      `${where}: ${show(s)} is not a repository name (expected lowercase path components [a-z0-9] joined by ".", "_", "__" or "-", separated by "/", at most ${MAX_REPOSITORY_LENGTH} characters, e.g. stellaops/stella-api)`,
    );
  }
  return s;
}

export function assertTag(s: unknown, where = 'tag'): string {
  if (!isTag(s)) {
    throw new StellaError('INVALID_ARGUMENT', `${where}: ${show(s)} is not a tag (expected [A-Za-z0-9_][A-Za-z0-9._-]{0,127}, e.g. v1.4.0)`);
  }
  return s;
}

/** A manifest reference: a tag, or a digest (anything starting with `sha256:` or containing `:` must be a valid digest). */
export function assertReference(s: unknown, where = 'reference'): string {
  if (typeof s === 'string' && s.includes(':')) return assertDigest(s, where);
  if (isTag(s)) return s;
  throw new StellaError(
    'INVALID_ARGUMENT',
    `${where}: ${show(s)} is neither a tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127}) nor a digest (sha256:<64 hex>)`,
  );
}

export function assertRegistryHost(s: unknown): string {
  if (typeof s !== 'string' || !REGISTRY_RE.test(s)) {
    throw new StellaError('INVALID_ARGUMENT', `registry: ${show(s)} is not host[:port] (e.g. 127.0.0.1:5000 or ghcr.io); give no scheme and no path`);
  }
  return s;
}

/** The host part without port, brackets removed: used to pick plain HTTP for loopback. */
export function hostOnly(registry: string): string {
  if (registry.startsWith('[')) return registry.slice(1, registry.indexOf(']'));
  const i = registry.lastIndexOf(':');
  return i >= 0 ? registry.slice(0, i) : registry;
}

export function isLoopback(registry: string): boolean {
  const h = hostOnly(registry).toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
