/**
 * Pointing a tag at a digest that is already in the repository, by the tag
 * scheme's rules (ci/src/tags): a new tag is created, the same digest is a
 * no-op, a mutable tag moves, and an immutable release tag that points
 * elsewhere is refused (IMMUTABLE_TAG) before anything is written.
 */
import { StellaError } from '../errors.ts';
import { assertDigest } from '../oci/types.ts';
import { decideTagWrite, type TagWrite } from '../tags/index.ts';
import type { RegistryClient } from './client.ts';
import { assertRepository, assertTag } from './names.ts';

export interface TagResult {
  readonly tag: string;
  readonly digest: string;
  /** What was (or, with dryRun, would be) done. */
  readonly action: TagWrite;
  /** The digest the tag pointed to before, when it existed. */
  readonly previous?: string;
}

export interface TagImageOptions {
  /** Decide and report, write nothing. */
  readonly dryRun?: boolean;
}

/** Tags `repo@digest` as `repo:tag`, pushing the manifest's exact bytes under the tag. */
export async function tagImage(client: RegistryClient, repo: string, tag: string, digest: string, opts: TagImageOptions = {}): Promise<TagResult> {
  assertRepository(repo);
  assertTag(tag, `tag for ${repo}`);
  assertDigest(digest, `image to tag ${repo}:${tag}`);
  const previous = await client.resolve(repo, tag);
  const action = decideTagWrite(`${client.registry}/${repo}`, tag, digest, previous);
  const result: TagResult = previous === undefined ? { tag, digest, action } : { tag, digest, action, previous };
  if (action === 'unchanged' || opts.dryRun) return result;
  const m = await client.getManifest(repo, digest);
  const written = await client.putManifest(repo, tag, m.bytes, m.mediaType);
  if (written !== digest) {
    throw new StellaError('DIGEST_MISMATCH', `tag ${client.registry}/${repo}:${tag}: the registry stored ${written}, expected ${digest}`);
  }
  return result;
}
