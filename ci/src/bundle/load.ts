/**
 * `bundle-load --to HOST:PORT`: a verified bundle into a private registry, every index,
 * manifest and blob byte for byte (same digests), with its referrers, then re-verified from
 * that registry.
 *
 *   verify    the whole bundle first (./verify.ts): nothing unverified is pushed
 *   base      differential bundles: every blob left to the base must already be at the
 *             target, checked before anything is pushed (else refused, naming the base)
 *   push      per image: blobs (skipped when present), child manifests, the index by digest;
 *             referrers through the referrers API where the target has it, else the
 *             `sha256-<hex>` tag fallback; legacy `.sig` tags. Nothing present is sent again,
 *             so a run that was killed finishes on re-run and pushes nothing twice
 *   reverify  every image's signature, SBOMs (index and platforms) and provenance, read back
 *             from the TARGET registry with the bundle's key (ci/src/release/verify.ts)
 *   tag       only then the release's version tag on each image
 *   relocate  images.lock.json, compose/ and helm values rewritten to the target, digests kept
 */
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, rm, writeFile, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { StellaError } from '../errors.ts';
import { OciLayout } from '../oci/layout.ts';
import { type ImageIndex, type ImageManifest, type Descriptor } from '../oci/types.ts';
import type { RegistryClient } from '../registry/client.ts';
import { Tally } from '../registry/copy.ts';
import { tagImage } from '../registry/referrers.ts';
import type { Registries } from '../release/context.ts';
import { verifyImage } from '../release/verify.ts';
import type { BundleTrust } from '../sign/index.ts';
import { planTags } from '../tags/index.ts';
import { BundlePath, relocate, type ExtractBudget, type ImagesLock, type LockedImage } from './format.ts';
import { verifyBundle, type VerifiedBundle } from './verify.ts';

export interface LoadBundleOptions {
  readonly file: string;
  /** Target registry `host[:port]`; repositories keep their path (`stellaops/stella-api`). */
  readonly to: string;
  readonly registries: Registries;
  readonly publicKeyPem?: string;
  readonly trust?: BundleTrust;
  /** Where the relocated install files go (compose/, helm/, images.lock.json, keys/). */
  readonly out: string;
  /** Write the version tags after re-verification; default true. */
  readonly tag?: boolean;
  readonly budget?: ExtractBudget;
  readonly progress?: (line: string) => void;
}

export interface LoadedImage {
  readonly name: string;
  readonly repository: string;
  readonly digest: string;
  /** pushed: bytes sent; mounted: from another repository of the target (no bytes); skipped: already there. */
  readonly blobs: { readonly pushed: number; readonly mounted: number; readonly skipped: number; readonly bytesPushed: number };
  readonly manifests: { readonly pushed: number; readonly skipped: number };
  readonly referrers: { readonly attached: number; readonly unchanged: number; readonly mode: string };
  readonly verified: readonly string[];
}

export interface LoadResult {
  readonly version: string;
  readonly to: string;
  readonly images: readonly LoadedImage[];
  readonly out: string;
  readonly tags: readonly string[];
  readonly seconds: { readonly verify: number; readonly push: number; readonly reverify: number };
}

function parse<T>(bytes: Uint8Array): T {
  return JSON.parse(new TextDecoder().decode(bytes)) as T;
}

class ImagePusher {
  readonly tally = new Tally();

  readonly client: RegistryClient;
  readonly repo: string;
  readonly layout: OciLayout;
  readonly omitted: ReadonlySet<string>;
  /** Blob → a repository of this registry that has it (from this load): mounted, not sent again. */
  readonly seen: Map<string, string>;

  constructor(client: RegistryClient, repo: string, layout: OciLayout, omitted: ReadonlySet<string>, seen: Map<string, string>) {
    this.client = client;
    this.repo = repo;
    this.layout = layout;
    this.omitted = omitted;
    this.seen = seen;
  }

  async blob(d: Descriptor): Promise<void> {
    if (this.omitted.has(d.digest) && !(await this.layout.hasBlob(d.digest))) {
      // Checked before anything was pushed; a differential bundle's base blob.
      this.tally.blob('skipped', d.size);
      return;
    }
    const path = this.layout.blobPath(d.digest);
    const from = this.seen.get(d.digest);
    const r = await this.client.pushBlob(this.repo, { size: d.size, open: () => createReadStream(path) }, d.digest, from ? { mountFrom: from } : {});
    if (!this.seen.has(d.digest)) this.seen.set(d.digest, this.repo);
    this.tally.blob(r, d.size);
  }

  /** Pushes a manifest's content and children; the manifest itself too unless `skipSelf`. */
  async tree(digest: string, skipSelf = false): Promise<{ bytes: Uint8Array; mediaType: string }> {
    const bytes = await this.layout.readBlob(digest);
    const m = parse<ImageIndex & ImageManifest & { mediaType?: string }>(bytes);
    const mediaType = m.mediaType ?? (Array.isArray(m.manifests) ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json');
    if (!skipSelf && (await this.client.hasManifest(this.repo, digest))) {
      this.tally.manifestsSkipped++;
      return { bytes, mediaType };
    }
    if (Array.isArray(m.manifests)) for (const c of m.manifests) await this.tree(c.digest);
    else for (const b of [m.config, ...(m.layers ?? [])]) if (b) await this.blob(b);
    if (!skipSelf) {
      await this.client.putManifest(this.repo, digest, bytes, mediaType);
      this.tally.manifestsPushed++;
    }
    return { bytes, mediaType };
  }
}

/** Refuses a differential bundle whose base blobs the target does not hold, before any push. */
async function checkBase(v: VerifiedBundle, o: LoadBundleOptions): Promise<void> {
  const base = v.manifest.base;
  if (!base || base.omitted.length === 0) return;
  const absent: string[] = [];
  for (const b of base.omitted) {
    let found = false;
    for (const r of b.repositories) {
      const { client, repo } = o.registries.forRepository(relocate(r, o.to));
      if (await client.hasBlob(repo, b.digest)) {
        found = true;
        break;
      }
    }
    if (!found) absent.push(b.digest);
  }
  if (absent.length) {
    throw new StellaError(
      'BUNDLE_INVALID',
      `bundle ${o.file} is differential (since ${base.version}) and ${o.to} lacks ${absent.length} of the ${base.omitted.length} blobs it leaves to that release (e.g. ${absent[0]}): load stella-bundle-${base.version}.tar.zst into ${o.to} first, then this one; nothing was pushed`,
    );
  }
  o.progress?.(`differential since ${base.version}: all ${base.omitted.length} base blobs are at ${o.to}`);
}

async function pushImage(im: LockedImage, layout: OciLayout, o: LoadBundleOptions, omitted: ReadonlySet<string>, seen: Map<string, string>): Promise<Omit<LoadedImage, 'verified'>> {
  const repository = relocate(im.repository, o.to);
  const { client, repo } = o.registries.forRepository(repository);
  const p = new ImagePusher(client, repo, layout, omitted, seen);
  await p.tree(im.digest);
  let attached = 0;
  let unchanged = 0;
  let mode = 'none';
  for (const r of im.referrers) {
    const { bytes, mediaType } = await p.tree(r.digest, true);
    const a = await client.attachReferrer(repo, r.subject, bytes, mediaType);
    mode = a.mode;
    if (a.changed) attached++;
    else unchanged++;
  }
  for (const [tag, d] of Object.entries(im.legacy)) {
    const { bytes, mediaType } = await p.tree(d, true);
    if ((await client.resolve(repo, tag)) !== d) await client.putManifest(repo, tag, bytes, mediaType);
  }
  const t = p.tally;
  o.progress?.(
    `${im.name}: ${repository}@${im.digest.slice(0, 19)}: blobs ${t.blobsPushed} pushed (${(t.bytesPushed / 1e6).toFixed(1)} MB), ${t.blobsMounted} mounted, ${t.blobsSkipped} present; manifests ${t.manifestsPushed} pushed, ${t.manifestsSkipped} present; referrers ${attached} attached, ${unchanged} present (${mode})`,
  );
  return {
    name: im.name,
    repository,
    digest: im.digest,
    blobs: { pushed: t.blobsPushed, mounted: t.blobsMounted, skipped: t.blobsSkipped, bytesPushed: t.bytesPushed },
    manifests: { pushed: t.manifestsPushed, skipped: t.manifestsSkipped },
    referrers: { attached, unchanged, mode },
  };
}

/** The lock with every repository moved to `to`. */
export function relocateLock(lock: ImagesLock, to: string): ImagesLock {
  return { ...lock, images: lock.images.map((im) => ({ ...im, repository: relocate(im.repository, to) })) };
}

async function copyTree(from: string, to: string, rewrite?: (text: string) => string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const name of await readdir(from)) {
    const src = join(from, name);
    const st = await lstat(src);
    if (st.isDirectory()) await copyTree(src, join(to, name), rewrite);
    else if (rewrite && /\.(ya?ml|example|json)$/.test(name)) await writeFile(join(to, name), rewrite(await readFile(src, 'utf8')));
    else await copyFile(src, join(to, name));
  }
}

/** compose/, helm/ and images.lock.json for the target registry: the same digests under the new host. */
export async function writeRelocated(dir: string, lock: ImagesLock, to: string, out: string): Promise<void> {
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  const moved = relocateLock(lock, to);
  const pairs = lock.images.map((im, i) => [`${im.repository}@`, `${moved.images[i]!.repository}@`] as const);
  const rewrite = (text: string) => pairs.reduce((t, [a, b]) => t.split(a).join(b), text);
  await copyTree(join(dir, BundlePath.compose), join(out, BundlePath.compose), rewrite);
  await copyTree(join(dir, BundlePath.helm), join(out, BundlePath.helm));
  await writeFile(
    join(out, BundlePath.helm, 'values-relocated.yaml'),
    `# Written by bundle-load: every image from ${to}, digests unchanged.\n# helm install stella ./${BundlePath.helm}/<chart>.tgz -f ${BundlePath.helm}/values-airgap.yaml -f ${BundlePath.helm}/values-relocated.yaml\nglobal:\n  imageRegistry: ${JSON.stringify(to)}\n`,
  );
  await copyTree(join(dir, BundlePath.keys), join(out, BundlePath.keys));
  await writeFile(join(out, BundlePath.imagesLock), `${JSON.stringify(moved, null, 2)}\n`);
}

export async function loadBundle(o: LoadBundleOptions): Promise<LoadResult> {
  const progress = o.progress ?? (() => {});
  if (!/^[A-Za-z0-9.-]+(:[0-9]+)?$/.test(o.to)) throw new StellaError('INVALID_ARGUMENT', `bundle-load --to ${JSON.stringify(o.to)}: expected a registry host[:port], e.g. registry.local:5000`);
  const t0 = performance.now();
  const v = await verifyBundle({ file: o.file, publicKeyPem: o.publicKeyPem, trust: o.trust, keep: true, budget: o.budget, progress });
  const tVerify = performance.now();
  try {
    const trust: BundleTrust = o.trust ?? { publicKeyPem: o.publicKeyPem ?? (await readFile(join(v.dir, BundlePath.publicKey), 'utf8')) };
    await checkBase(v, o);
    const layout = await OciLayout.open(join(v.dir, BundlePath.images));
    const omitted = new Set(v.manifest.base?.omitted.map((x) => x.digest) ?? []);
    const pushed: Omit<LoadedImage, 'verified'>[] = [];
    const seen = new Map<string, string>();
    for (const im of v.lock.images) pushed.push(await pushImage(im, layout, o, omitted, seen));
    const tPush = performance.now();

    // Re-verify everything from the target, as an operator's admission policy would.
    const results: LoadedImage[] = [];
    const problems: string[] = [];
    for (const [i, im] of v.lock.images.entries()) {
      const p = pushed[i]!;
      const r = await verifyImage(
        { images: { images: [] }, registries: o.registries, trust, requireNode: im.kind === 'service', requireLegacy: Object.keys(im.legacy).length > 0 },
        { service: im.name, repository: p.repository, digest: im.digest, platforms: im.platforms },
      );
      if (!r.ok) problems.push(`${p.repository}@${im.digest}: ${r.problems.join('; ')}`);
      results.push({ ...p, verified: r.checked });
    }
    if (problems.length) {
      throw new StellaError('VERIFY_FAILED', `bundle-load: after loading into ${o.to}, ${problems.length} image(s) do not verify from the target registry:\n  - ${problems.join('\n  - ')}`);
    }
    const tVerified = performance.now();
    progress(`every image's signature, SBOMs and provenance verify from ${o.to}`);

    const tags: string[] = [];
    if (o.tag ?? true) {
      const plan = planTags({ version: v.manifest.version });
      for (const p of results) {
        const { client, repo } = o.registries.forRepository(p.repository);
        for (const tag of plan.tags) {
          await tagImage(client, repo, tag, p.digest);
          tags.push(`${p.repository}:${tag}`);
        }
      }
    }
    await writeRelocated(v.dir, v.lock, o.to, o.out);
    progress(`relocated install files in ${o.out} (compose/, helm/values-relocated.yaml, images.lock.json)`);
    return {
      version: v.manifest.version,
      to: o.to,
      images: results,
      out: o.out,
      tags,
      seconds: { verify: +((tVerify - t0) / 1000).toFixed(2), push: +((tPush - tVerify) / 1000).toFixed(2), reverify: +((tVerified - tPush) / 1000).toFixed(2) },
    };
  } finally {
    await rm(join(v.dir, '..'), { recursive: true, force: true });
  }
}

