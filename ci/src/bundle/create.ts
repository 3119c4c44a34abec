/**
 * `bundle`: one release, every image of it with everything that vouches for it, the
 * quickstart and the chart, in one signed, byte-identical archive (format: ./format.ts).
 *
 *   collect   each image (StellaOps and support) by digest from its registry into ONE OCI
 *             layout: index, platform manifests, blobs (each stored once), the referrers of
 *             the index and of every platform manifest (signatures, SBOMs, provenance) and
 *             the legacy `.sig` manifests; images.lock.json records all of their digests
 *   assemble  compose/ (pinned by digest), helm/ (the chart packaged as `chart` packages it),
 *             keys/, docs/, load.sh, verify.sh, bundle.json
 *   since     differential: blobs the base bundle holds are left out and named in bundle.json
 *   sign      checksums.txt over every file, its raw signature and its Sigstore bundle
 *   write     tar.zst, deterministic, via a `.part` file renamed when complete
 *
 * The staging folder is kept when a run fails, and a re-run reuses what it holds (blobs are
 * verified, not fetched again); it is removed after success.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, rm, stat, writeFile, lstat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readTar } from '../oci/tar.ts';
import { createZstdDecompress } from 'node:zlib';
import { StellaError } from '../errors.ts';
import type { BuildDocument } from '../build/document.ts';
import { catalog } from '../catalog/index.ts';
import { packageChart, releasePins, type SupportLockLike } from '../chart/index.ts';
import { composeFiles, COMPOSE_DIR } from '../compose/index.ts';
import { OciLayout } from '../oci/layout.ts';
import { MediaType, type ImageIndex, type ImageManifest } from '../oci/types.ts';
import { pullToLayout } from '../registry/copy.ts';
import type { Registries, Signing } from '../release/context.ts';
import { verifyImage } from '../release/verify.ts';
import { emptyTrustedRoot, legacySignatureTag, signBlob, signBytes, verifyBundle } from '../sign/index.ts';
import { readBundle } from '../release/attach.ts';
import { planTags } from '../tags/index.ts';
import { listTree, writeArchive } from './archive.ts';
import { formatChecksums, sha256File } from './checksums.ts';
import {
  BUNDLE_FORMAT,
  BundlePath,
  SIGNATURE_FILES,
  ZSTD_LEVEL,
  bundleFileName,
  type BundleManifest,
  type ImageKind,
  type ImagesLock,
  type LockedImage,
  type LockedReferrer,
} from './format.ts';

/** The support image lock as the bundle reads it (deploy/support-images.lock.json). */
export type SupportImageLock = Omit<SupportLockLike, 'images'> & { readonly images: Readonly<Record<string, { readonly repository: string; readonly digest: string; readonly version: string; readonly platforms?: Readonly<Record<string, string | undefined>> }>> };

export interface BundleImage {
  readonly name: string;
  readonly kind: ImageKind;
  readonly repository: string;
  readonly digest: string;
  readonly platforms: Readonly<Record<string, string>>;
}

export interface CreateBundleOptions {
  /** The repository checkout: deploy/compose, deploy/helm/stella, docs/install. */
  readonly source: string;
  /** vX.Y.Z, vX.Y.Z-rc.N, edge or nightly (as `release`). */
  readonly version: string;
  readonly images: BuildDocument;
  readonly supportLock: SupportImageLock;
  readonly registries: Registries;
  /** A key signer: the signature over checksums.txt is then deterministic. */
  readonly signing: Signing;
  readonly sourceDateEpoch: number;
  readonly commit?: string;
  /** Directory the .tar.zst is written to. */
  readonly outDir: string;
  /**
   * Verify every image at its source (signature, SBOMs, provenance) before bundling it, with
   * the signing key's public half; default true. A bundle never carries an image we do not vouch for.
   */
  readonly verifySource?: boolean;
  /** Images (`repository@digest`) the caller verified under the same trust in this run: not verified again. */
  readonly verified?: ReadonlySet<string>;
  /** Differential: the previous release's bundle; its blobs are left out. */
  readonly since?: string;
  readonly zstdLevel?: number;
  readonly progress?: (line: string) => void;
}

export interface CreatedBundle {
  readonly file: string;
  readonly sha256: string;
  readonly bytes: number;
  readonly version: string;
  readonly images: number;
  readonly blobs: { readonly count: number; readonly bytes: number };
  readonly omitted?: number;
  readonly base?: string;
}

const SCRIPTS_DIR = fileURLToPath(new URL('./scripts/', import.meta.url));
/** The install docs that travel with the bundle (docs/<path>). */
export const OFFLINE_DOCS: readonly string[] = ['install/airgap.md', 'install/compose-quickstart.md', 'install/helm-prod.md', 'install/overview.md', 'install/configuration-reference.md', 'security/supply-chain.md', 'operations/health-and-readiness.md'];
/** What in deploy/compose is a user's, not the release's. */
const COMPOSE_EXCLUDED = new Set(['.env', '.secrets', 'backups', 'data']);

function json(v: unknown): string {
  return `${JSON.stringify(v, null, 2)}\n`;
}

/** Every image of the release, StellaOps first (catalog order), then the support images. */
export function bundleImages(images: BuildDocument, lock: CreateBundleOptions['supportLock']): BundleImage[] {
  const out: BundleImage[] = [];
  for (const s of catalog.services) {
    const i = images.images.find((x) => x.service === s.name);
    if (!i) throw new StellaError('INVALID_ARGUMENT', `bundle: the build document has no image for ${s.name}; a bundle carries every service (pass the release's build.json)`);
    out.push({ name: s.name, kind: 'service', repository: i.repository, digest: i.digest, platforms: i.platforms });
  }
  for (const s of catalog.support) {
    if (!lock.images[s.name]) throw new StellaError('INVALID_ARGUMENT', `bundle: the support image lock has no ${s.name}; run support-images first`);
  }
  // The catalog's support services in its order, then any other image the lock pins (e.g. nginx for the tls profile).
  const order = [...catalog.support.map((s) => s.name as string), ...Object.keys(lock.images).filter((n) => !catalog.support.some((s) => s.name === n)).sort()];
  for (const name of order) {
    const e = lock.images[name]!;
    const platforms = Object.fromEntries(Object.entries(e.platforms ?? {}).filter((x): x is [string, string] => typeof x[1] === 'string'));
    out.push({ name, kind: 'support', repository: e.repository, digest: e.digest, platforms });
  }
  return out;
}

function parse<T>(bytes: Uint8Array): T {
  return JSON.parse(new TextDecoder().decode(bytes)) as T;
}

/** Pulls one image and everything that travels with it into the layout; returns its lock entry. */
async function collectImage(image: BundleImage, layout: OciLayout, o: CreateBundleOptions, refName: string): Promise<LockedImage> {
  const { client, repo } = o.registries.forRepository(image.repository);
  const where = `${image.repository}@${image.digest}`;
  await pullToLayout(client, repo, image.digest, layout.root, { refName });
  const index = parse<ImageIndex>(await layout.readBlob(image.digest));
  const platforms: Record<string, string> = {};
  for (const m of index.manifests ?? []) {
    if (m.platform && m.platform.os !== 'unknown') platforms[`${m.platform.os}/${m.platform.architecture}`] = m.digest;
  }
  for (const [p, d] of Object.entries(image.platforms)) {
    if (platforms[p] !== d) throw new StellaError('DIGEST_MISMATCH', `bundle: ${where}: the index lists ${p} as ${platforms[p] ?? 'nothing'}, the release says ${d}`);
  }
  const referrers: LockedReferrer[] = [];
  const seen = new Set<string>();
  let foreign = 0;
  const trust = o.signing.trust;
  // The index, each platform manifest, and (one level down) the referrers' own referrers.
  const queue: string[] = [image.digest, ...Object.values(platforms)];
  for (let depth = 0; depth < 2 && queue.length; depth++) {
    const subjects = queue.splice(0);
    for (const subject of subjects) {
      for (const r of await client.referrers(repo, subject)) {
        if (seen.has(r.digest)) continue;
        seen.add(r.digest);
        // A signature or attestation travels only when it verifies under the release's trust:
        // one made with another key (a registry signed again and again) is not ours to carry.
        if (trust && r.artifactType === MediaType.sigstoreBundle) {
          try {
            verifyBundle(await readBundle({ client, repo, name: `${image.repository}@${subject}`, descriptor: { mediaType: r.mediaType, digest: subject, size: 0 } }, r), trust, { expectedSubjectDigest: subject });
          } catch {
            foreign++;
            continue;
          }
        }
        await pullToLayout(client, repo, r.digest, layout.root);
        referrers.push({ subject, digest: r.digest, mediaType: r.mediaType, size: r.size, ...(r.artifactType ? { artifactType: r.artifactType } : {}) });
        queue.push(r.digest);
      }
    }
  }
  const legacy: Record<string, string> = {};
  for (const subject of [image.digest]) {
    const tag = legacySignatureTag(subject);
    const d = await client.resolve(repo, tag);
    if (d) {
      await pullToLayout(client, repo, d, layout.root, { refName: `${refName.replace(/:[^:/]+$/, '')}:${tag}` });
      legacy[tag] = d;
    }
  }
  o.progress?.(`bundle: ${image.name}: ${Object.keys(platforms).length} platforms, ${referrers.length} referrers${Object.keys(legacy).length ? ', legacy signature' : ''}${foreign ? `; ${foreign} signed by another key left out` : ''} (${image.digest.slice(0, 19)})`);
  return { name: image.name, kind: image.kind, repository: image.repository, digest: image.digest, platforms, referrers, legacy };
}

/** Every blob the lock's images need, with the repositories that hold it. */
async function blobsOf(layout: OciLayout, lock: ImagesLock): Promise<Map<string, { size: number; manifest: boolean; repositories: Set<string> }>> {
  const out = new Map<string, { size: number; manifest: boolean; repositories: Set<string> }>();
  const add = (digest: string, size: number, manifest: boolean, repository: string) => {
    const e = out.get(digest) ?? { size, manifest, repositories: new Set<string>() };
    e.repositories.add(repository);
    out.set(digest, e);
  };
  const visit = async (digest: string, size: number, repository: string): Promise<void> => {
    const bytes = await layout.readBlob(digest);
    add(digest, size || bytes.byteLength, true, repository);
    const m = parse<ImageIndex & ImageManifest>(bytes);
    if (Array.isArray(m.manifests)) for (const c of m.manifests) await visit(c.digest, c.size, repository);
    else for (const b of [m.config, ...(m.layers ?? [])]) if (b) add(b.digest, b.size, false, repository);
  };
  for (const im of lock.images) {
    await visit(im.digest, 0, im.repository);
    for (const r of im.referrers) await visit(r.digest, r.size, im.repository);
    for (const d of Object.values(im.legacy)) await visit(d, 0, im.repository);
  }
  return out;
}

/** The blob names (and the checksums.txt digest) of a bundle, read by streaming its archive. */
export async function bundleBlobIndex(file: string): Promise<{ blobs: Set<string>; checksums: string; version: string }> {
  if (!existsSync(file)) throw new StellaError('NOT_FOUND', `bundle --since ${file}: no such file`);
  const blobs = new Set<string>();
  let checksums = '';
  let version = '';
  try {
    await readTar(createReadStream(file).pipe(createZstdDecompress()), async (entry) => {
      const m = /^images\/blobs\/sha256\/([0-9a-f]{64})$/.exec(entry.path);
      if (m) blobs.add(`sha256:${m[1]}`);
      if (entry.path === BundlePath.checksums) checksums = `sha256:${createHash('sha256').update(await entry.content()).digest('hex')}`;
      if (entry.path === BundlePath.manifest) version = String((JSON.parse((await entry.content()).toString('utf8')) as { version?: unknown }).version ?? '');
    });
  } catch (e) {
    throw new StellaError('BUNDLE_INVALID', `bundle --since ${file}: cannot read it (${(e as Error).message})`);
  }
  if (!checksums || !version) throw new StellaError('BUNDLE_INVALID', `bundle --since ${file}: not a StellaOps bundle (no ${BundlePath.checksums} or ${BundlePath.manifest})`);
  return { blobs, checksums, version };
}

async function copyDir(from: string, to: string, skip: (name: string) => boolean): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const name of (await readdir(from)).sort()) {
    if (skip(name)) continue;
    const st = await lstat(join(from, name));
    if (st.isDirectory()) await copyDir(join(from, name), join(to, name), skip);
    else if (st.isFile()) await copyFile(join(from, name), join(to, name));
  }
}

export async function createBundle(o: CreateBundleOptions): Promise<CreatedBundle> {
  const progress = o.progress ?? (() => {});
  if (o.signing.signer.kind !== 'key') progress('bundle: keyless signing: bundle.sig differs between two creations (a Fulcio certificate is new each time); everything else is byte-identical');
  const plan = planTags({ version: o.version });
  const fileName = bundleFileName(o.version);
  await mkdir(o.outDir, { recursive: true });
  const staging = join(o.outDir, `.${fileName}.staging`);
  // What a previous, failed run collected is kept (blobs are verified before reuse); the rest is rebuilt.
  for (const p of [BundlePath.compose, BundlePath.helm, BundlePath.keys, BundlePath.docs]) await rm(join(staging, p), { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  const layout = await OciLayout.init(join(staging, BundlePath.images));
  await writeFile(join(layout.root, 'index.json'), json({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] }));

  // 1. Images, each verified where it is before it is bundled.
  const images = bundleImages(o.images, o.supportLock);
  if (o.verifySource ?? true) {
    const trust = o.signing.trust;
    if (!trust) throw new StellaError('INVALID_ARGUMENT', 'bundle: no trust to verify the images with (a key signer carries its public key)');
    const problems: string[] = [];
    for (const im of images) {
      if (o.verified?.has(`${im.repository}@${im.digest}`)) continue;
      const r = await verifyImage({ images: { images: [] }, registries: o.registries, trust, requireNode: im.kind === 'service' }, { service: im.name, repository: im.repository, digest: im.digest, platforms: im.platforms });
      if (!r.ok) problems.push(`${im.repository}@${im.digest}: ${r.problems.join('; ')}`);
    }
    if (problems.length) {
      throw new StellaError('VERIFY_FAILED', `bundle: ${problems.length} image(s) do not verify where they are, so they are not bundled (sign and attest them first: release, attest-support-images):\n  - ${problems.join('\n  - ')}`);
    }
    progress(`all ${images.length} images verify at their source (signature, SBOMs, provenance)`);
  }
  const locked: LockedImage[] = [];
  for (const im of images) {
    const path = im.repository.slice(im.repository.indexOf('/') + 1);
    locked.push(await collectImage(im, layout, o, `${path}:${plan.imageVersion}`));
  }
  const imagesLock: ImagesLock = { apiVersion: 'stellaops.dev/images-lock/v1', version: o.version, images: locked };
  const blobs = await blobsOf(layout, imagesLock);
  // The layout's index.json in a fixed order: by ref name, then digest.
  const idx = await layout.readIndexJson();
  const sorted = [...idx.manifests].sort((a, b) => {
    const ra = a.annotations?.['org.opencontainers.image.ref.name'] ?? '~';
    const rb = b.annotations?.['org.opencontainers.image.ref.name'] ?? '~';
    return ra === rb ? (a.digest < b.digest ? -1 : 1) : ra < rb ? -1 : 1;
  });
  await writeFile(join(layout.root, 'index.json'), json({ ...idx, manifests: sorted }));
  // Blobs a previous run left that no image needs any more.
  const blobDir = join(layout.root, 'blobs', 'sha256');
  for (const hex of await readdir(blobDir)) if (!blobs.has(`sha256:${hex}`)) await rm(join(blobDir, hex), { force: true });

  // 2. Differential.
  let base: BundleManifest['base'];
  if (o.since) {
    const prev = await bundleBlobIndex(o.since);
    const omitted: { digest: string; size: number; repositories: string[] }[] = [];
    for (const [digest, b] of [...blobs].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      if (b.manifest || !prev.blobs.has(digest)) continue;
      await rm(layout.blobPath(digest), { force: true });
      omitted.push({ digest, size: b.size, repositories: [...b.repositories].sort() });
    }
    base = { version: prev.version, checksums: prev.checksums, omitted };
    progress(`differential since ${prev.version}: ${omitted.length} blobs (${omitted.reduce((n, x) => n + x.size, 0)} bytes) left out, held by the base bundle`);
  }
  const shipped = [...blobs].filter(([d]) => !base?.omitted.some((x) => x.digest === d));

  // 3. compose/, helm/, keys/, docs/, scripts.
  const composeSrc = join(o.source, COMPOSE_DIR);
  const composeDst = join(staging, BundlePath.compose);
  await copyDir(composeSrc, composeDst, (n) => COMPOSE_EXCLUDED.has(n) || (n.startsWith('.') && n !== '.env.example'));
  const lockImages = Object.fromEntries(Object.entries(o.supportLock.images).map(([k, v]) => [k, { repository: v.repository, digest: v.digest }]));
  for (const f of composeFiles(o.source, o.images, lockImages)) {
    await writeFile(join(composeDst, f.path.slice(COMPOSE_DIR.length + 1)), f.content);
  }
  const pins = releasePins({ images: o.images, supportLock: o.supportLock, chartVersion: plan.chartVersion, appVersion: plan.imageVersion });
  const chart = packageChart({ source: o.source, pins, sourceDateEpoch: o.sourceDateEpoch });
  await mkdir(join(staging, BundlePath.helm), { recursive: true });
  await writeFile(join(staging, BundlePath.helm, chart.fileName), chart.bytes);
  await copyFile(join(o.source, 'deploy/helm/stella/values-airgap.yaml'), join(staging, BundlePath.helm, 'values-airgap.yaml'));
  await mkdir(join(staging, BundlePath.keys), { recursive: true });
  const publicKeyPem = o.signing.key?.publicKeyPem;
  if (publicKeyPem) await writeFile(join(staging, BundlePath.publicKey), publicKeyPem);
  await writeFile(join(staging, BundlePath.trustedRoot), json(emptyTrustedRoot()));
  for (const d of OFFLINE_DOCS) {
    const src = join(o.source, 'docs', d);
    if (!existsSync(src)) continue;
    await mkdir(dirname(join(staging, BundlePath.docs, d)), { recursive: true });
    await copyFile(src, join(staging, BundlePath.docs, d));
  }
  for (const s of [BundlePath.loadScript, BundlePath.verifyScript]) await copyFile(join(SCRIPTS_DIR, s), join(staging, s));
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    version: o.version,
    created: o.sourceDateEpoch,
    ...(o.commit ? { commit: o.commit } : {}),
    chart: { file: `${BundlePath.helm}/${chart.fileName}`, version: plan.chartVersion },
    images: locked.length,
    blobs: { count: shipped.length, bytes: shipped.reduce((n, [, b]) => n + b.size, 0) },
    ...(base ? { base } : {}),
  };
  await writeFile(join(staging, BundlePath.manifest), json(manifest));
  await writeFile(join(staging, BundlePath.imagesLock), json(imagesLock));
  await writeFile(
    join(staging, BundlePath.loadPlan),
    `# <repository path> <index digest> [<legacy signature tag> <its manifest digest>]…\n${locked
      .map((im) => [im.repository.slice(im.repository.indexOf('/') + 1), im.digest, ...Object.entries(im.legacy).flat()].join(' '))
      .join('\n')}\n`,
  );
  const platformLines: string[] = [];
  for (const im of locked) {
    const path = im.repository.slice(im.repository.indexOf('/') + 1);
    for (const [platform, digest] of Object.entries(im.platforms).sort()) {
      const m = await layout.readManifest(digest);
      platformLines.push([im.name, path, platform, digest, m.config.digest, ...m.layers.map((l) => l.digest)].join(' '));
    }
  }
  await writeFile(join(staging, BundlePath.platformPlan), `# <name> <repository path> <os/arch> <manifest digest> <config digest> <layer digest>…\n${platformLines.join('\n')}\n`);

  // 4. Checksums and signatures.
  for (const f of SIGNATURE_FILES) await rm(join(staging, f), { force: true });
  const tree = await listTree(staging);
  const files = tree.filter((e) => e.type === 'file');
  const sums: { path: string; sha256: string }[] = [];
  for (const f of files) sums.push({ path: f.path, sha256: await sha256File(f.source!) });
  const checksums = new TextEncoder().encode(formatChecksums(sums));
  await writeFile(join(staging, BundlePath.checksums), checksums);
  if (o.signing.key) await writeFile(join(staging, BundlePath.checksumsSignature), signBytes(o.signing.key, checksums));
  await writeFile(join(staging, BundlePath.signature), json(await signBlob(checksums, o.signing.signer, BundlePath.checksums)));

  // 5. The archive.
  const out = join(o.outDir, o.since ? bundleFileName(o.version, base?.version) : fileName);
  const entries = await listTree(staging);
  const totalBytes = entries.reduce((n, e) => n + e.size, 0);
  let last = 0;
  progress(`writing ${out} (${entries.length} entries, ${(totalBytes / 1e6).toFixed(1)} MB)`);
  await writeArchive(entries, out, {
    mtime: o.sourceDateEpoch,
    level: o.zstdLevel ?? ZSTD_LEVEL,
    progress: (done, total) => {
      const pct = Math.floor((done / Math.max(total, 1)) * 10);
      if (pct > last) {
        last = pct;
        progress(`${pct * 10}% (${(done / 1e6).toFixed(0)} of ${(total / 1e6).toFixed(0)} MB)`);
      }
    },
  });
  const sha256 = await sha256File(out);
  const size = (await stat(out)).size;
  await writeFile(`${out}.sha256`, `${sha256}  ${out.slice(out.lastIndexOf('/') + 1)}\n`);
  await rm(staging, { recursive: true, force: true });
  progress(`${out}: ${(size / 1e6).toFixed(1)} MB, sha256 ${sha256}`);
  return {
    file: out,
    sha256,
    bytes: size,
    version: o.version,
    images: locked.length,
    blobs: manifest.blobs,
    ...(base ? { omitted: base.omitted.length, base: base.version } : {}),
  };
}
