/**
 * `bundle-verify`: signature → checksums → every file, offline, failing closed.
 *
 *   1. the archive is extracted safely (./archive.ts) into a new folder;
 *   2. bundle.sig verifies over checksums.txt with the key given (--public-key: a key the
 *      operator obtained separately) or, without one, the bundle's own keys/cosign.pub —
 *      which proves integrity, not origin, and the result says so;
 *   3. every line of checksums.txt names a file that exists and hashes as listed; every file
 *      in the archive is listed (an added file fails as surely as a changed one);
 *   4. bundle.json and images.lock.json are well-formed (every digest `sha256:<64 hex>`
 *      before it is used as a path) and the OCI layout holds every manifest and blob they
 *      name (minus the blobs a differential bundle leaves to its base).
 * Nothing is trusted before step 2 succeeds; a failure removes the extraction folder.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StellaError } from '../errors.ts';
import { OciLayout } from '../oci/layout.ts';
import type { ImageIndex, ImageManifest } from '../oci/types.ts';
import { keyFingerprint, loadPublicKey, verifyBlob, type BundleTrust } from '../sign/index.ts';
import { extractArchive } from './archive.ts';
import { parseChecksums, sha256File } from './checksums.ts';
import { BundlePath, DEFAULT_BUDGET, SIGNATURE_FILES, validateBundleManifest, validateImagesLock, type BundleManifest, type ExtractBudget, type ImagesLock } from './format.ts';

export interface VerifyBundleOptions {
  readonly file: string;
  /** The key to trust (PEM). Without it (and without `trust`), the bundle's own key. */
  readonly publicKeyPem?: string;
  /** Keyless: an identity and trusted root instead of a key. */
  readonly trust?: BundleTrust;
  /** Extract here (must not exist); default a temporary folder, removed unless `keep`. */
  readonly dest?: string;
  readonly keep?: boolean;
  readonly budget?: ExtractBudget;
  readonly progress?: (line: string) => void;
}

export interface VerifiedBundle {
  /** The extraction folder (removed again unless `keep` was set). */
  readonly dir: string;
  readonly manifest: BundleManifest;
  readonly lock: ImagesLock;
  readonly files: number;
  readonly bytes: number;
  /** `given`: the operator's key; `bundled`: the bundle's own key (integrity only). */
  readonly key: 'given' | 'bundled' | 'identity';
  readonly fingerprint?: string;
  readonly checked: readonly string[];
}

function invalid(file: string, why: string): never {
  throw new StellaError('BUNDLE_INVALID', `bundle ${file}: ${why}`);
}

async function readJson(path: string, file: string, name: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    invalid(file, `${name} is missing`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    invalid(file, `${name} is not JSON (${(e as Error).message})`);
  }
}

export async function verifyBundle(o: VerifyBundleOptions): Promise<VerifiedBundle> {
  const progress = o.progress ?? (() => {});
  const dir = o.dest ?? join(await mkdtemp(join(tmpdir(), 'stella-bundle-')), 'bundle');
  const t0 = performance.now();
  const extracted = await extractArchive(o.file, dir, o.budget ?? DEFAULT_BUDGET);
  progress(`extracted ${extracted.files} files (${(extracted.bytes / 1e6).toFixed(1)} MB) in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  try {
    const result = await verifyExtracted(o, dir, extracted.paths, extracted.bytes, progress);
    if (!o.keep) await rm(o.dest ?? join(dir, '..'), { recursive: true, force: true });
    return result;
  } catch (e) {
    await rm(o.dest ?? join(dir, '..'), { recursive: true, force: true });
    throw e;
  }
}

async function verifyExtracted(o: VerifyBundleOptions, dir: string, paths: readonly string[], bytes: number, progress: (l: string) => void): Promise<VerifiedBundle> {
  const file = o.file;
  const checked: string[] = [];
  for (const f of [BundlePath.checksums, BundlePath.signature]) if (!existsSync(join(dir, f))) invalid(file, `${f} is missing: the bundle is not signed (or was truncated)`);

  // 1. The signature over checksums.txt.
  const checksums = await readFile(join(dir, BundlePath.checksums));
  let trust: BundleTrust;
  let key: VerifiedBundle['key'];
  let fingerprint: string | undefined;
  if (o.trust) {
    trust = o.trust;
    key = 'publicKeyPem' in o.trust ? 'given' : 'identity';
  } else if (o.publicKeyPem) {
    trust = { publicKeyPem: o.publicKeyPem };
    key = 'given';
  } else {
    if (!existsSync(join(dir, BundlePath.publicKey))) invalid(file, `no --public-key given and the bundle carries no ${BundlePath.publicKey}`);
    trust = { publicKeyPem: await readFile(join(dir, BundlePath.publicKey), 'utf8') };
    key = 'bundled';
  }
  if ('publicKeyPem' in trust) fingerprint = keyFingerprint(loadPublicKey(trust.publicKeyPem, 'public key').spkiDer);
  try {
    verifyBlob(await readFile(join(dir, BundlePath.signature)), checksums, trust, `${BundlePath.signature} over ${BundlePath.checksums}`);
  } catch (e) {
    invalid(file, (e as Error).message);
  }
  checked.push(`${BundlePath.signature}: verifies over ${BundlePath.checksums} with ${key === 'identity' ? 'the given identity' : `key ${fingerprint} (${key === 'given' ? 'given' : "the bundle's own: integrity only; pass --public-key for origin"})`}`);

  // 2. Every file, and no other.
  const sums = parseChecksums(checksums.toString('utf8'));
  const listed = new Map(sums.map((s) => [s.path, s.sha256]));
  const present = new Set(paths);
  const missing = sums.filter((s) => !present.has(s.path)).map((s) => s.path);
  if (missing.length) invalid(file, `${missing.length} file(s) listed in ${BundlePath.checksums} are not in the archive: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`);
  const extra = paths.filter((p) => !listed.has(p) && !SIGNATURE_FILES.includes(p));
  if (extra.length) invalid(file, `${extra.length} file(s) in the archive are not in ${BundlePath.checksums} (added after signing): ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', …' : ''}`);
  for (const s of sums) {
    const got = await sha256File(join(dir, ...s.path.split('/')));
    if (got !== s.sha256) invalid(file, `${s.path}: sha256 is ${got}, ${BundlePath.checksums} says ${s.sha256} (changed after signing)`);
  }
  checked.push(`${sums.length} files match ${BundlePath.checksums}, none unlisted`);
  if (existsSync(join(dir, BundlePath.checksumsSignature)) && 'publicKeyPem' in trust) {
    const { verify } = await import('node:crypto');
    if (!verify('sha256', checksums, loadPublicKey(trust.publicKeyPem).key, await readFile(join(dir, BundlePath.checksumsSignature)))) {
      invalid(file, `${BundlePath.checksumsSignature} does not verify over ${BundlePath.checksums} (openssl users would be refused)`);
    }
  }

  // 3. The documents, and the layout they describe.
  const manifest = validateBundleManifest(await readJson(join(dir, BundlePath.manifest), file, BundlePath.manifest));
  const lock = validateImagesLock(await readJson(join(dir, BundlePath.imagesLock), file, BundlePath.imagesLock));
  if (lock.version !== manifest.version) invalid(file, `${BundlePath.imagesLock} is for ${lock.version}, ${BundlePath.manifest} for ${manifest.version}`);
  const omitted = new Set(manifest.base?.omitted.map((x) => x.digest) ?? []);
  const layout = await OciLayout.open(join(dir, BundlePath.images));
  const need = async (digest: string, what: string): Promise<void> => {
    if (!omitted.has(digest) && !(await layout.hasBlob(digest))) invalid(file, `${what} ${digest} is not in ${BundlePath.images}/`);
  };
  let manifests = 0;
  const walk = async (digest: string, what: string): Promise<void> => {
    await need(digest, what);
    manifests++;
    const m = JSON.parse(new TextDecoder().decode(await layout.readBlob(digest))) as ImageIndex & ImageManifest;
    if (Array.isArray(m.manifests)) for (const c of m.manifests) await walk(c.digest, `${what}: manifest`);
    else for (const b of [m.config, ...(m.layers ?? [])]) if (b) await need(b.digest, `${what}: blob`);
  };
  for (const im of lock.images) {
    await walk(im.digest, im.name);
    for (const d of Object.values(im.platforms)) await need(d, `${im.name} platform manifest`);
    for (const r of im.referrers) await walk(r.digest, `${im.name} referrer`);
    for (const d of Object.values(im.legacy)) await walk(d, `${im.name} legacy signature`);
  }
  checked.push(`${lock.images.length} images, ${manifests} manifests complete in ${BundlePath.images}/${omitted.size ? ` (${omitted.size} blobs left to base ${manifest.base!.version})` : ''}`);
  const sha = createHash('sha256').update(checksums).digest('hex');
  progress(`${file}: OK (${manifest.version}; checksums.txt sha256 ${sha.slice(0, 16)}…)`);
  for (const c of checked) progress(`  ✓ ${c}`);
  return { dir, manifest, lock, files: sums.length, bytes, key, ...(fingerprint ? { fingerprint } : {}), checked };
}
