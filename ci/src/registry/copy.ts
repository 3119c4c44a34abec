/**
 * Moving whole images (an index or a manifest and everything it references):
 * OCI layout → registry, registry → OCI layout, registry → registry.
 *
 * Order is always blobs first, then child manifests by digest, then the root by
 * digest, so a registry never holds a manifest whose content is missing. Nothing
 * that exists is sent again, and no tag is written: tagging is the caller's
 * decision (see ci/src/tags). Each call reports what moved and what was
 * skipped, so a re-run can prove it pushed nothing new.
 */
import { createReadStream } from 'node:fs';
import { StellaError } from '../errors.ts';
import { OciLayout } from '../oci/layout.ts';
import { MediaType, assertDigest, isDigest, type Descriptor, type ImageIndex, type ImageManifest } from '../oci/types.ts';
import { type BlobSource, type FetchedManifest, type RegistryClient } from './client.ts';
import { assertReference, assertRepository } from './names.ts';

export interface TransferReport {
  /** The root's digest. */
  readonly digest: string;
  readonly mediaType: string;
  readonly blobs: {
    /** Uploaded. */
    readonly pushed: number;
    /** Cross-repository mounts (no bytes sent). */
    readonly mounted: number;
    /** Already at the destination. */
    readonly skipped: number;
    readonly bytesPushed: number;
    readonly bytesSkipped: number;
  };
  readonly manifests: { readonly pushed: number; readonly skipped: number };
  /** Referrers copied along (copyImage with `referrers: true`). */
  readonly referrers: number;
}

export interface TransferOptions {
  /** Blobs moved at once; default 3. */
  readonly concurrency?: number;
}

export interface ImageRef {
  readonly client: RegistryClient;
  readonly repo: string;
}

export interface CopyOptions extends TransferOptions {
  /** Also copy the root's referrers (signatures, SBOMs, attestations) and attach them at the destination. Default true. */
  readonly referrers?: boolean;
}

/** What a transfer moved and skipped (also counted by the bundle's loader, ci/src/bundle/load.ts). */
export class Tally {
  blobsPushed = 0;
  blobsMounted = 0;
  blobsSkipped = 0;
  bytesPushed = 0;
  bytesSkipped = 0;
  manifestsPushed = 0;
  manifestsSkipped = 0;
  referrers = 0;

  blob(result: 'pushed' | 'skipped' | 'mounted', size: number): void {
    if (result === 'pushed') {
      this.blobsPushed++;
      this.bytesPushed += size;
    } else if (result === 'mounted') {
      this.blobsMounted++;
    } else {
      this.blobsSkipped++;
      this.bytesSkipped += size;
    }
  }

  report(digest: string, mediaType: string): TransferReport {
    return {
      digest,
      mediaType,
      blobs: { pushed: this.blobsPushed, mounted: this.blobsMounted, skipped: this.blobsSkipped, bytesPushed: this.bytesPushed, bytesSkipped: this.bytesSkipped },
      manifests: { pushed: this.manifestsPushed, skipped: this.manifestsSkipped },
      referrers: this.referrers,
    };
  }
}

function isIndexType(mt: string | undefined): boolean {
  return mt === MediaType.ociIndex || mt === MediaType.dockerManifestList;
}

function isManifestType(mt: string | undefined): boolean {
  return mt === MediaType.ociManifest || mt === MediaType.dockerManifest;
}

async function pool<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  });
  await Promise.all(workers);
}

function parse<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as T;
  } catch {
    throw new StellaError('INVALID_ARGUMENT', `${what}: is not JSON`);
  }
}

/** A manifest's declared type, or the type its shape implies. */
function declaredType(bytes: Uint8Array, fallback: string): string {
  const v = parse<{ mediaType?: unknown; manifests?: unknown }>(bytes, 'manifest');
  if (typeof v.mediaType === 'string' && v.mediaType) return v.mediaType;
  if (Array.isArray(v.manifests)) return MediaType.ociIndex;
  return fallback || MediaType.ociManifest;
}

/**
 * Pushes `digest` (an image index or manifest in the OCI layout at
 * `layoutDir`) and everything it references to `repo`, by digest, no tags.
 * Every blob is verified in the layout before anything is sent.
 */
export async function pushLayout(client: RegistryClient, layoutDir: string, repo: string, digest: string, opts: TransferOptions = {}): Promise<TransferReport> {
  assertRepository(repo);
  assertDigest(digest, `image to push from ${layoutDir}`);
  const layout = await OciLayout.open(layoutDir);
  const walked = await layout.walk(digest);
  const manifests = new Map<string, Descriptor>();
  for (const img of walked.images) manifests.set(img.descriptor.digest, img.descriptor);
  for (const idx of walked.indexes) manifests.set(idx.descriptor.digest, idx.descriptor);
  const blobs = walked.blobs.filter((b) => !manifests.has(b.digest));
  const tally = new Tally();

  await pool(blobs, opts.concurrency ?? 3, async (b) => {
    const path = layout.blobPath(b.digest);
    const source: BlobSource = { size: b.size, open: () => createReadStream(path) };
    tally.blob(await client.pushBlob(repo, source, b.digest), b.size);
  });

  // Children before parents: images, then indexes deepest first (walk lists parents first).
  const order: Descriptor[] = [];
  const seen = new Set<string>();
  for (const d of [...walked.images.map((i) => i.descriptor), ...[...walked.indexes].reverse().map((i) => i.descriptor)]) {
    if (seen.has(d.digest)) continue;
    seen.add(d.digest);
    order.push(d);
  }
  for (const d of order) {
    if (await client.hasManifest(repo, d.digest)) {
      tally.manifestsSkipped++;
      continue;
    }
    const bytes = await layout.readBlob(d.digest);
    await client.putManifest(repo, d.digest, bytes, declaredType(bytes, d.mediaType));
    tally.manifestsPushed++;
  }
  return tally.report(digest, walked.root.mediaType);
}

export interface PullOptions extends TransferOptions {
  /** Name for the index.json entry (`org.opencontainers.image.ref.name`); default: `ref` when it is a tag. */
  readonly refName?: string;
}

/**
 * Fetches `repo:ref` (or `repo@digest`) and everything it references into the
 * OCI layout at `layoutDir` (created when missing), verifying every digest, and
 * adds the root to index.json. "pushed" in the report counts blobs written to the layout.
 */
export async function pullToLayout(client: RegistryClient, repo: string, ref: string, layoutDir: string, opts: PullOptions = {}): Promise<TransferReport> {
  assertRepository(repo);
  assertReference(ref, `image to pull from ${repo}`);
  const layout = await OciLayout.init(layoutDir);
  const tally = new Tally();
  const root = await client.getManifest(repo, ref);
  const blobs = new Map<string, Descriptor>();
  const stored = new Set<string>();

  const visit = async (m: FetchedManifest, depth: number): Promise<void> => {
    if (depth > 8) throw new StellaError('INVALID_ARGUMENT', `pull ${client.registry}/${repo}@${m.digest}: index nesting deeper than 8`);
    if (stored.has(m.digest)) return;
    stored.add(m.digest);
    const mediaType = declaredType(m.bytes, m.mediaType);
    if (isIndexType(mediaType)) {
      const index = parse<ImageIndex>(m.bytes, `index ${m.digest}`);
      for (const child of index.manifests ?? []) {
        assertDigest(child.digest, `entry of index ${m.digest}`);
        if (!isIndexType(child.mediaType) && !isManifestType(child.mediaType)) {
          throw new StellaError('INVALID_ARGUMENT', `pull ${client.registry}/${repo}@${m.digest}: index entry ${child.digest} has media type ${child.mediaType}, expected a manifest or index`);
        }
        await visit(await client.getManifest(repo, child.digest), depth + 1);
      }
    } else if (isManifestType(mediaType)) {
      const manifest = parse<ImageManifest>(m.bytes, `manifest ${m.digest}`);
      for (const d of [manifest.config, ...(manifest.layers ?? [])]) {
        if (!d) continue;
        assertDigest(d.digest, `blob of manifest ${m.digest}`);
        blobs.set(d.digest, d);
      }
    } else {
      throw new StellaError('INVALID_ARGUMENT', `pull ${client.registry}/${repo}@${m.digest}: media type ${mediaType} is neither an image manifest nor an index`);
    }
    await layout.writeBlob(m.bytes, m.digest);
  };

  // Blobs are written before the manifests that reference them are final in index.json.
  await visit(root, 0);
  await pool([...blobs.values()], opts.concurrency ?? 3, async (d) => {
    if (await layout.hasBlob(d.digest)) {
      try {
        await layout.verifyBlob(d.digest, d.size);
        tally.blob('skipped', d.size);
        return;
      } catch {
        // corrupt or wrong size: fetch again, writeBlob replaces it
      }
    }
    const bytes = await client.getBlob(repo, d.digest);
    if (bytes.byteLength !== d.size) {
      throw new StellaError('DIGEST_MISMATCH', `pull ${client.registry}/${repo}: blob ${d.digest} has ${bytes.byteLength} bytes, its descriptor says ${d.size}`);
    }
    await layout.writeBlob(bytes, d.digest);
    tally.blob('pushed', d.size);
  });
  tally.manifestsPushed = stored.size;
  const mediaType = declaredType(root.bytes, root.mediaType);
  const refName = opts.refName ?? (isDigest(ref) ? undefined : ref);
  await layout.setIndexEntry({ mediaType, digest: root.digest, size: root.bytes.byteLength }, refName);
  return tally.report(root.digest, mediaType);
}

/**
 * Copies `digest` and everything it references from one repository to another
 * (registry to registry), mounting blobs when both are on the same registry.
 * With `referrers` (default), also copies the root's referrers and attaches them.
 */
export async function copyImage(src: ImageRef, dst: ImageRef, digest: string, opts: CopyOptions = {}): Promise<TransferReport> {
  assertRepository(src.repo, 'source repository');
  assertRepository(dst.repo, 'destination repository');
  assertDigest(digest, `image to copy from ${src.repo}`);
  const tally = new Tally();
  const root = await copyTree(src, dst, digest, tally, opts);
  if (opts.referrers ?? true) {
    const present = new Set((await dst.client.referrers(dst.repo, digest)).map((r) => r.digest));
    for (const r of await src.client.referrers(src.repo, digest)) {
      if (!isManifestType(r.mediaType) && !isIndexType(r.mediaType)) continue;
      if (present.has(r.digest) && (await dst.client.hasManifest(dst.repo, r.digest))) {
        tally.manifestsSkipped++;
        continue;
      }
      const m = await copyTree(src, dst, r.digest, tally, opts, true);
      await dst.client.attachReferrer(dst.repo, digest, m.bytes, m.mediaType);
      tally.referrers++;
    }
  }
  return tally.report(digest, root.mediaType);
}

/** Copies a manifest tree; with `skipRoot` the root manifest itself is left for the caller to push (attachReferrer). */
async function copyTree(src: ImageRef, dst: ImageRef, digest: string, tally: Tally, opts: TransferOptions, skipRoot = false): Promise<FetchedManifest & { mediaType: string }> {
  const sameRegistry = src.client.baseUrl === dst.client.baseUrl;
  const visit = async (d: string, depth: number, isRoot: boolean): Promise<FetchedManifest & { mediaType: string }> => {
    if (depth > 8) throw new StellaError('INVALID_ARGUMENT', `copy ${src.client.registry}/${src.repo}@${d}: index nesting deeper than 8`);
    const m = await src.client.getManifest(src.repo, d);
    const mediaType = declaredType(m.bytes, m.mediaType);
    if (!(isRoot && skipRoot) && (await dst.client.hasManifest(dst.repo, d))) {
      tally.manifestsSkipped++;
      return { ...m, mediaType };
    }
    if (isIndexType(mediaType)) {
      const index = parse<ImageIndex>(m.bytes, `index ${d}`);
      for (const child of index.manifests ?? []) await visit(assertDigest(child.digest, `entry of index ${d}`), depth + 1, false);
    } else if (isManifestType(mediaType)) {
      const manifest = parse<ImageManifest>(m.bytes, `manifest ${d}`);
      const blobs = [manifest.config, ...(manifest.layers ?? [])].filter((b): b is Descriptor => !!b);
      await pool(blobs, opts.concurrency ?? 3, async (b) => {
        assertDigest(b.digest, `blob of manifest ${d}`);
        const source: BlobSource = {
          size: b.size,
          open: async function* () {
            yield await src.client.getBlob(src.repo, b.digest);
          },
        };
        tally.blob(await dst.client.pushBlob(dst.repo, source, b.digest, sameRegistry ? { mountFrom: src.repo } : {}), b.size);
      });
    } else {
      throw new StellaError('INVALID_ARGUMENT', `copy ${src.client.registry}/${src.repo}@${d}: media type ${mediaType} is neither an image manifest nor an index`);
    }
    if (!(isRoot && skipRoot)) {
      await dst.client.putManifest(dst.repo, d, m.bytes, mediaType);
      tally.manifestsPushed++;
    }
    return { ...m, mediaType };
  };
  return visit(digest, 0, true);
}
