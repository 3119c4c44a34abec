/**
 * Every write of the supply chain to a registry, in one place, over the
 * registry API of client.ts:
 *
 *   referrers       `attachReferrer`: a referrer manifest pushed by digest; when
 *                   the registry does not index it itself (no `OCI-Subject` in
 *                   its answer: no OCI 1.1 referrers API, e.g. distribution 2.8),
 *                   it is added to the subject's `sha256-<hex>` fallback index,
 *                   read-modify-written keeping every other tool's entries.
 *                   `pushReferrer` pushes a built referrer's blobs first.
 *                   `listReferrers`: the API when the registry has it, else the
 *                   fallback index; filtered by artifactType either way.
 *   tagged manifests `updateTaggedManifest`: read-modify-write of a manifest
 *                   under a tag (the legacy cosign `.sig`/`.att` tags).
 *   tags            `tagImage`: a tag pointed at a digest under the tag scheme.
 *
 * Read-modify-writes of one tag are serialized within this process (one lock
 * per registry/repository:tag, shared by all clients), and re-read after the
 * write so a writer in another process that replaced the tag in between is
 * merged with instead of lost.
 */
import { StellaError } from '../errors.ts';
import { MediaType, assertDigest, isDigest, jsonBytes, referrersFallbackTag, sha256Digest, type Descriptor, type ImageIndex } from '../oci/types.ts';
import { decideTagWrite, type TagWrite } from '../tags/index.ts';
import { MAX_MANIFEST_BYTES, transportOf, type FetchedManifest, type RegistryClient } from './client.ts';
import { assertRepository, assertTag } from './names.ts';
import type { Ctx } from './transport.ts';

export interface ReferrersOptions {
  readonly artifactType?: string;
}

export interface AttachResult {
  readonly digest: string;
  /** `api`: the registry indexes the subject itself; `fallback`: we maintain the `sha256-<hex>` index. */
  readonly mode: 'api' | 'fallback';
  /** False when the referrer was already stored and listed. */
  readonly changed: boolean;
}

/** A manifest and the blobs it references (push the blobs first). */
export interface ManifestToPush {
  readonly manifestBytes: Uint8Array;
  readonly mediaType: string;
  readonly blobs: readonly { readonly digest: string; readonly bytes: Uint8Array }[];
}

/** What each client learnt: true once the registry answered the referrers API, false once it did not. */
const referrersApi = new WeakMap<RegistryClient, boolean>();

/** Serializes read-modify-writes of one tag within this process. */
const locks = new Map<string, Promise<unknown>>();

async function withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(key) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  const tail = run.catch(() => undefined);
  locks.set(key, tail);
  try {
    return await run;
  } finally {
    if (locks.get(key) === tail) locks.delete(key);
  }
}

// ---------------------------------------------------------------- referrers

/**
 * The referrers of `subject` (descriptors with artifactType and annotations):
 * from the OCI 1.1 referrers API when the registry has it, else from the
 * `sha256-<hex>` fallback index. The artifactType filter is applied here too
 * (a registry may ignore it).
 */
export async function listReferrers(client: RegistryClient, repo: string, subject: string, opts: ReferrersOptions = {}): Promise<Descriptor[]> {
  assertRepository(repo);
  assertDigest(subject, `referrers subject in ${repo}`);
  const filter = (list: readonly Descriptor[]) => (opts.artifactType === undefined ? [...list] : list.filter((d) => d.artifactType === opts.artifactType));
  if (referrersApi.get(client) !== false) {
    const fromApi = await referrersFromApi(client, repo, subject, opts.artifactType);
    if (fromApi) return filter(fromApi);
  }
  return filter(await fallbackIndexEntries(client, repo, subject));
}

/**
 * Pushes a referrer manifest (whose `subject` must be `subject`) by its digest.
 * When the registry does not index it (no `OCI-Subject` in the answer), adds
 * it to the `sha256-<hex>` fallback index, keeping every other entry. A
 * referrer already stored and listed is not written again.
 */
export async function attachReferrer(client: RegistryClient, repo: string, subject: string, manifestBytes: Uint8Array, mediaType: string): Promise<AttachResult> {
  assertRepository(repo);
  assertDigest(subject, `referrers subject in ${repo}`);
  const t = transportOf(client);
  const digest = sha256Digest(manifestBytes);
  const ctx: Ctx = { op: 'attach referrer', repo, ref: digest };
  const manifest = t.parseJson(ctx, manifestBytes) as {
    subject?: { digest?: unknown };
    artifactType?: unknown;
    config?: { mediaType?: unknown };
    annotations?: unknown;
  };
  if (manifest.subject?.digest !== subject) {
    throw t.error(ctx, 'INVALID_ARGUMENT', `the referrer's subject is ${String(manifest.subject?.digest)}, expected ${subject}`);
  }
  // Already stored and listed: a re-run writes nothing.
  if ((await client.hasManifest(repo, digest)) && (await listReferrers(client, repo, subject)).some((d) => d.digest === digest)) {
    const mode = referrersApi.get(client) ? 'api' : 'fallback';
    t.emit({ type: 'referrer', mode, action: 'unchanged', repository: repo, subject, digest });
    return { digest, mode, changed: false };
  }
  const put = await client.pushManifest(repo, digest, manifestBytes, mediaType);
  if (put.ociSubject === subject) {
    referrersApi.set(client, true);
    t.emit({ type: 'referrer', mode: 'api', action: 'added', repository: repo, subject, digest });
    return { digest, mode: 'api', changed: true };
  }
  const entry: Record<string, unknown> = { mediaType, digest, size: manifestBytes.byteLength };
  const artifactType = typeof manifest.artifactType === 'string' ? manifest.artifactType : typeof manifest.config?.mediaType === 'string' ? manifest.config.mediaType : undefined;
  if (artifactType !== undefined) entry.artifactType = artifactType;
  if (manifest.annotations && typeof manifest.annotations === 'object' && Object.keys(manifest.annotations).length > 0) {
    entry.annotations = manifest.annotations;
  }
  const changed = await withLock(`${client.registry}/${repo}:${referrersFallbackTag(subject)}`, () => addFallbackEntry(client, repo, subject, entry as unknown as Descriptor));
  t.emit({ type: 'referrer', mode: 'fallback', action: changed ? 'added' : 'unchanged', repository: repo, subject, digest });
  return { digest, mode: 'fallback', changed };
}

/** Pushes a built referrer's blobs, then attaches the manifest to `subject`. */
export async function pushReferrer(client: RegistryClient, repo: string, subject: string, built: ManifestToPush): Promise<AttachResult> {
  for (const b of built.blobs) await client.pushBlob(repo, b.bytes, b.digest);
  return attachReferrer(client, repo, subject, built.manifestBytes, built.mediaType);
}

async function referrersFromApi(client: RegistryClient, repo: string, subject: string, artifactType: string | undefined): Promise<Descriptor[] | undefined> {
  const t = transportOf(client);
  const ctx: Ctx = { op: 'list referrers', repo, ref: subject };
  const q = artifactType !== undefined ? `?artifactType=${encodeURIComponent(artifactType)}` : '';
  return t.withRetry(ctx, async () => {
    const res = await t.exchange(ctx, 'GET', `/v2/${repo}/referrers/${subject}${q}`, { repo }, { headers: { accept: MediaType.ociIndex } });
    if (res.status === 404 || res.status === 405 || res.status === 400) {
      // The registry has no referrers API (distribution 2.8 answers 404).
      await res.body?.cancel();
      referrersApi.set(client, false);
      return undefined;
    }
    await t.expect(ctx, res, [200]);
    const bytes = await t.readBody(res, MAX_MANIFEST_BYTES);
    const index = t.parseJson(ctx, bytes) as Partial<ImageIndex>;
    if (!Array.isArray(index.manifests)) {
      throw t.error(ctx, 'REGISTRY_ERROR', `the referrers API answered 200 without an image index (media type ${String(index.mediaType)})`);
    }
    referrersApi.set(client, true);
    return index.manifests.filter((d) => isDigest(d.digest));
  });
}

async function readTagged(client: RegistryClient, repo: string, tag: string): Promise<FetchedManifest | undefined> {
  try {
    return await client.getManifest(repo, tag);
  } catch (e) {
    if (e instanceof StellaError && e.code === 'NOT_FOUND') return undefined;
    throw e;
  }
}

async function readFallbackIndex(client: RegistryClient, repo: string, subject: string): Promise<{ index: Record<string, unknown> & { manifests: Descriptor[] }; digest: string } | undefined> {
  const t = transportOf(client);
  const tag = referrersFallbackTag(subject);
  const ctx: Ctx = { op: 'read referrers fallback index', repo, ref: tag };
  const m = await readTagged(client, repo, tag);
  if (!m) return undefined;
  const index = t.parseJson(ctx, m.bytes);
  if (!Array.isArray(index.manifests)) {
    throw t.error(ctx, 'REGISTRY_ERROR', `the fallback tag holds a ${m.mediaType}, expected an image index listing referrers`);
  }
  return { index: index as Record<string, unknown> & { manifests: Descriptor[] }, digest: m.digest };
}

async function fallbackIndexEntries(client: RegistryClient, repo: string, subject: string): Promise<Descriptor[]> {
  const current = await readFallbackIndex(client, repo, subject);
  return current ? current.index.manifests.filter((d) => isDigest(d.digest)) : [];
}

/** Read-modify-write of the fallback index; re-reads afterwards and merges again when another writer replaced it. */
async function addFallbackEntry(client: RegistryClient, repo: string, subject: string, entry: Descriptor): Promise<boolean> {
  const t = transportOf(client);
  const tag = referrersFallbackTag(subject);
  const ctx: Ctx = { op: 'update referrers fallback index', repo, ref: tag };
  let changed = false;
  for (let round = 1; round <= 5; round++) {
    const current = await readFallbackIndex(client, repo, subject);
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
    const written = await client.putManifest(repo, tag, jsonBytes(index), MediaType.ociIndex);
    changed = true;
    if ((await client.resolve(repo, tag)) === written) return changed;
    // Another writer (another process) replaced the index between our read and write: merge again.
  }
  throw t.error(ctx, 'REGISTRY_ERROR', 'the fallback index kept changing under concurrent writers; gave up after 5 rounds');
}

// ---------------------------------------------------------------- tagged manifests (legacy .sig / .att)

/**
 * Read-modify-write of the manifest under `tag`: `update` gets the current
 * manifest (undefined when the tag is absent) and returns what to store, or
 * undefined to leave it as is. Its blobs are pushed, then the manifest under
 * the tag. Returns the digest under the tag afterwards and whether it changed.
 */
export async function updateTaggedManifest(
  client: RegistryClient,
  repo: string,
  tag: string,
  update: (current: FetchedManifest | undefined) => ManifestToPush | undefined,
): Promise<{ digest: string | undefined; changed: boolean }> {
  assertRepository(repo);
  assertTag(tag, `tag in ${repo}`);
  const t = transportOf(client);
  return withLock(`${client.registry}/${repo}:${tag}`, async () => {
    let changed = false;
    for (let round = 1; round <= 5; round++) {
      const current = await readTagged(client, repo, tag);
      const next = update(current);
      if (!next) return { digest: current?.digest, changed };
      for (const b of next.blobs) await client.pushBlob(repo, b.bytes, b.digest);
      const written = await client.putManifest(repo, tag, next.manifestBytes, next.mediaType);
      changed = true;
      if ((await client.resolve(repo, tag)) === written) return { digest: written, changed };
    }
    throw t.error({ op: 'update tagged manifest', repo, ref: tag }, 'REGISTRY_ERROR', 'the tag kept changing under concurrent writers; gave up after 5 rounds');
  });
}

// ---------------------------------------------------------------- tags

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

/**
 * Tags `repo@digest` as `repo:tag` (a digest already in the repository), by the
 * tag scheme's rules (ci/src/tags): a new tag is created, the same digest is a
 * no-op, a mutable tag moves, and an immutable release tag that points
 * elsewhere is refused (IMMUTABLE_TAG) before anything is written. The
 * manifest's exact bytes are pushed under the tag.
 */
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
