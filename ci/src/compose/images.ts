/**
 * The image references of the Compose quickstart: every image is a variable
 * (`${STELLA_API_IMAGE:-…}`) whose default is pinned by digest.
 *
 *   - StellaOps images: `<repository>@<index digest>` from a build document (build.json) when one
 *     is given at generation; the committed file has none (a release's digests are only known
 *     after the commit), so its defaults name the upstream repositories
 *     (ghcr.io/stellaops/stella-<service>) with the placeholder digest `sha256:000…0`, which
 *     quickstart.sh refuses to start with: `--images build.json` writes the real pins into .env.
 *   - Support images: from deploy/support-images.lock.json (written by `support-images`), by
 *     index digest; the catalog's upstream reference with the placeholder while there is no lock.
 *     nginx (the tls profile's sidecar) is in the lock too, as `nginx`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { StellaError } from '../errors.ts';
import { isDigest } from '../oci/types.ts';
import { SUPPORT_IMAGE_NAMES, RECIPES, type SupportImageName } from '../support/recipes.ts';
import type { BuildDocument } from '../build/document.ts';
import { catalog } from '../catalog/index.ts';

/** The digest of an image that has not been pinned yet; quickstart.sh refuses to start with it. */
export const PLACEHOLDER_DIGEST = `sha256:${'0'.repeat(64)}`;
/** Where the committed defaults point: the upstream registry and namespace of the release. */
export const UPSTREAM_NAMESPACE = 'ghcr.io/stellaops';
/** The support image lock, relative to the repository root. */
export const SUPPORT_LOCK_PATH = 'deploy/support-images.lock.json';

export interface PinnedImage {
  readonly repository: string;
  readonly digest: string;
}

export type SupportLockImages = Readonly<Partial<Record<SupportImageName, PinnedImage>>>;

/** `repository@digest`. */
export function imageRef(p: PinnedImage): string {
  return `${p.repository}@${p.digest}`;
}

/** The upstream repository of a catalog support image, without its tag. */
function upstreamRepository(name: SupportImageName): string {
  const s = catalog.support.find((x) => x.name === name);
  return (s?.upstreamImage ?? RECIPES[name].upstream!).replace(/:[^/:@]+$/, '');
}

/**
 * Reads the support image lock. Accepts the lock's entries as an array of
 * `{name|service, repository, digest, platforms}` or as a record keyed by support name,
 * at the top level or under `images`/`support`; returns only what it can pin by digest.
 */
export function parseSupportLock(value: unknown, where = SUPPORT_LOCK_PATH): SupportLockImages {
  const fail = (what: string): never => {
    throw new StellaError('INVALID_ARGUMENT', `${where}: ${what}`);
  };
  if (typeof value !== 'object' || value === null) fail('expected a JSON object');
  const top = value as Record<string, unknown>;
  const body = (top.images ?? top.support ?? top) as unknown;
  const entries: [string, unknown][] = Array.isArray(body)
    ? body.map((e) => [String((e as Record<string, unknown>)?.name ?? (e as Record<string, unknown>)?.service ?? ''), e])
    : Object.entries(body as Record<string, unknown>);
  const out: Partial<Record<SupportImageName, PinnedImage>> = {};
  for (const [name, e] of entries) {
    if (!(SUPPORT_IMAGE_NAMES as readonly string[]).includes(name)) continue;
    const o = e as Record<string, unknown>;
    if (typeof o?.repository !== 'string' || !o.repository) fail(`${name}.repository is ${JSON.stringify(o?.repository)} (expected a repository such as 127.0.0.1:5000/stellaops/support-postgres)`);
    const digest = o.digest ?? o.indexDigest;
    if (!isDigest(digest)) fail(`${name}.digest is ${JSON.stringify(digest)} (expected sha256:<64 hex>, the index digest)`);
    out[name as SupportImageName] = { repository: o.repository as string, digest: digest as string };
  }
  return out;
}

/** The lock on disk under `root`, or `{}` when there is none yet. */
export function readSupportLock(root: string): SupportLockImages {
  const path = join(root, SUPPORT_LOCK_PATH);
  if (!existsSync(path)) return {};
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new StellaError('INVALID_ARGUMENT', `${SUPPORT_LOCK_PATH} is not JSON: ${(e as Error).message}`);
  }
  return parseSupportLock(value);
}

/** The default reference of each image variable. */
export interface ComposeImages {
  readonly stella: Readonly<Record<string, string>>;
  readonly support: Readonly<Record<SupportImageName, string>>;
}

export function composeImages(build?: BuildDocument, lock: SupportLockImages = {}): ComposeImages {
  const stella: Record<string, string> = {};
  for (const s of catalog.services) {
    const b = build?.images.find((i) => i.service === s.name);
    stella[s.name] = b ? imageRef(b) : imageRef({ repository: `${UPSTREAM_NAMESPACE}/${s.image}`, digest: PLACEHOLDER_DIGEST });
  }
  const support = {} as Record<SupportImageName, string>;
  for (const n of SUPPORT_IMAGE_NAMES) support[n] = lock[n] ? imageRef(lock[n]!) : imageRef({ repository: upstreamRepository(n), digest: PLACEHOLDER_DIGEST });
  return { stella, support };
}
