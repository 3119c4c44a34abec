/**
 * The release's support-images and chart steps: the existing `support-images`
 * (ci/src/support/) and `chart` (ci/src/chart/) work, run from `release` when their inputs are
 * available, and skipped — saying why — when they are not.
 *
 *   support images  --support-images lock (default): the committed deploy/support-images.lock.json,
 *                   used when every image it pins is present at its digest in its registry;
 *                   --support-images build: built here and pushed to the release's registry
 *                   (the Go compiles take long cold: ci/src/support/); --support-images skip
 *   chart           when deploy/helm/stella exists and the build covers every catalog service
 *                   (the chart pins all of them); packaged deterministically, and pushed, signed
 *                   and verified unless its tag already holds exactly this package (a re-run
 *                   writes nothing). An immutable chart tag holding other content is refused.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { StellaError } from '../errors.ts';
import { catalog } from '../catalog/index.ts';
import type { BuildDocument } from '../build/index.ts';
import type { TagPlan } from '../tags/index.ts';
import { chartStep, SUPPORT_LOCK_PATH_IN_REPO, type ChartResult, type SupportLockLike } from '../chart/publish.ts';
import { buildSupportImages } from '../support/index.ts';
import { Registries, splitRepository, type RegistryAccess, type Signing, type StepIo } from './context.ts';
import type { StepOutcome } from './progress.ts';
import { RELEASE_CACHE_DIR } from './cache.ts';
import { readServiceEntries, writeServiceEntries } from '../build/cache.ts';

export type SupportImagesMode = 'lock' | 'build' | 'skip';

export function parseSupportImagesMode(v: string | undefined): SupportImagesMode {
  if (v === undefined || v === '') return 'lock';
  if (v === 'lock' || v === 'build' || v === 'skip') return v;
  throw new StellaError('INVALID_ARGUMENT', `--support-images takes lock, build or skip, not "${v}"`);
}

export interface SupportImageRecord {
  readonly name: string;
  readonly repository: string;
  readonly digest: string;
  readonly version?: string;
}

export interface SupportStepResult {
  readonly lock?: SupportLockLike;
  /** The lock file used (committed, or written by the build into <out>). */
  readonly lockFile?: string;
  readonly images: readonly SupportImageRecord[];
}

/** The committed support image lock, when present (the chart function reads it the same way). */
async function committedSupportLock(source: string): Promise<SupportLockLike | undefined> {
  const path = join(source, SUPPORT_LOCK_PATH_IN_REPO);
  if (!existsSync(path)) return undefined;
  let lock: { lockVersion?: unknown; images?: unknown };
  try {
    lock = JSON.parse(await readFile(path, 'utf8')) as typeof lock;
  } catch (e) {
    throw new StellaError('LOCK_MISMATCH', `${path} is not JSON: ${(e as Error).message}`);
  }
  if (lock.lockVersion !== 1 || typeof lock.images !== 'object' || lock.images === null) throw new StellaError('LOCK_MISMATCH', `${path}: not a support image lock (expected {lockVersion: 1, images: {…}})`);
  return lock as unknown as SupportLockLike;
}

const recordsOf = (lock: SupportLockLike): SupportImageRecord[] =>
  Object.entries(lock.images).flatMap(([name, i]) => (i ? [{ name, repository: i.repository, digest: i.digest, ...(i.version ? { version: i.version } : {}) }] : []));

// ─── The support images' input cache (--support-images build) ──────────────────────────────
//
// <out>/app/.stella-cache/support.json records, after a build, a key over everything the support
// images are made from — the code that assembles them and their SBOMs (ci/src/support, oci, sbom,
// base), the tools/ sources of their Go servers, the inputs lock of their Debian packages and Go
// modules (in ci/src/support), the registry, namespace and source date — with the lock and SBOM
// files it wrote. A re-run with the same key, the same files and every image still present by
// digest takes that lock instead of building again (the build is reproducible: it would give the
// same digests). `--no-cache` builds again.

const SUPPORT_CACHE_FILE = `${RELEASE_CACHE_DIR}/support.json`;
const SUPPORT_CACHE_VERSION = 1;
const SUPPORT_ENTRY = 'support-images';
const SUPPORT_CODE = ['ci/src/support', 'ci/src/oci', 'ci/src/sbom', 'ci/src/base', 'tools/otelcol', 'tools/seaweedfs', 'tools/probe'];

interface SupportEntry {
  readonly key: string;
  /** Absolute path → sha256 hex, of the lock file and of every SBOM the build wrote. */
  readonly lock: Readonly<Record<string, string>>;
  readonly sbom: Readonly<Record<string, string>>;
}

const isSupportEntry = (e: unknown): e is SupportEntry => typeof e === 'object' && e !== null && typeof (e as SupportEntry).key === 'string' && typeof (e as SupportEntry).lock === 'object' && typeof (e as SupportEntry).sbom === 'object';
const hex = (b: string | Uint8Array) => createHash('sha256').update(b).digest('hex');

function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name))
    .sort();
}

function fileHashes(files: readonly string[]): Record<string, string> {
  return Object.fromEntries(files.map((f) => [f, hex(readFileSync(f))]));
}

function supportInputsKey(o: { source: string; registry: string; namespace: string; sourceDateEpoch: number }): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ v: SUPPORT_CACHE_VERSION, registry: o.registry, namespace: o.namespace, sourceDateEpoch: o.sourceDateEpoch, node: process.version }));
  for (const dir of SUPPORT_CODE) for (const f of listFiles(join(o.source, dir))) h.update(`${relative(o.source, f)}\0${hex(readFileSync(f))}\n`);
  return h.digest('hex');
}

/** The recorded lock, when the key, the lock and SBOM files and every image (present by digest) are as recorded. */
async function supportCacheHit(cacheFile: string, key: string, lockFile: string, sbomDir: string, registries: Registries): Promise<SupportLockLike | undefined> {
  const e = (await readServiceEntries(cacheFile, SUPPORT_CACHE_VERSION, isSupportEntry)).get(SUPPORT_ENTRY);
  if (!e || e.key !== key || !existsSync(lockFile)) return undefined;
  const same = (recorded: Readonly<Record<string, string>>, files: readonly string[]) => JSON.stringify(fileHashes(files)) === JSON.stringify(recorded);
  if (!same(e.lock, [lockFile]) || !same(e.sbom, listFiles(sbomDir))) return undefined;
  const lock = JSON.parse(readFileSync(lockFile, 'utf8')) as SupportLockLike;
  for (const i of recordsOf(lock)) {
    const { client, repo } = registries.forRepository(i.repository);
    if (!(await client.hasManifest(repo, i.digest).catch(() => false))) return undefined;
  }
  return lock;
}

export async function supportImagesStep(
  o: { source: string; out: string; mode: SupportImagesMode; registry: string; namespace: string; registries: Registries; access: RegistryAccess; sourceDateEpoch: number; noCache?: boolean },
  io: StepIo,
): Promise<StepOutcome<SupportStepResult>> {
  if (o.mode === 'skip') return { value: { images: [] }, did: 'skipped: --support-images skip', skipped: true };
  if (o.mode === 'build') {
    const lockFile = join(o.out, 'support-images.lock.json');
    const sbomDir = join(o.out, 'sbom', 'support');
    const cacheFile = join(o.out, SUPPORT_CACHE_FILE);
    const key = supportInputsKey(o);
    if (!o.noCache) {
      const hit = await supportCacheHit(cacheFile, key, lockFile, sbomDir, o.registries);
      if (hit) {
        const images = recordsOf(hit);
        return { value: { lock: hit, lockFile, images }, did: `${images.length} unchanged (same inputs as recorded in ${cacheFile}; present by digest): not rebuilt` };
      }
    }
    const { lock } = await buildSupportImages({
      source: o.source,
      push: { registry: o.registry, namespace: o.namespace },
      lockFile,
      sbomDir,
      sourceDateEpoch: o.sourceDateEpoch,
      registryOptions: o.access,
      progress: (l) => io.progress(l),
    });
    await writeServiceEntries(cacheFile, SUPPORT_CACHE_VERSION, new Map([[SUPPORT_ENTRY, { key, lock: fileHashes([lockFile]), sbom: fileHashes(listFiles(sbomDir)) } satisfies SupportEntry]]));
    const images = recordsOf(lock as unknown as SupportLockLike);
    return { value: { lock: lock as unknown as SupportLockLike, lockFile, images }, did: `${images.length} built and pushed to ${o.registry}; lock ${lockFile}` };
  }
  const lock = await committedSupportLock(o.source);
  if (!lock) return { value: { images: [] }, did: `skipped: no ${SUPPORT_LOCK_PATH_IN_REPO} (run support-images, or --support-images build)`, skipped: true };
  const images = recordsOf(lock);
  const missing: string[] = [];
  for (const i of images) {
    const { registry, repo } = splitRepository(i.repository);
    // Credentials go only to the release's own registry.
    const client = registry === o.registry ? o.registries.client(registry) : new Registries({}).client(registry);
    const present = await client.hasManifest(repo, i.digest).catch(() => false);
    if (!present) missing.push(`${i.repository}@${i.digest.slice(0, 19)}`);
  }
  if (missing.length) {
    return { value: { images: [] }, did: `skipped: the lock's images are not all in their registry (${missing.join(', ')}); push them (support-images) or use --support-images build`, skipped: true };
  }
  const lockFile = join(o.source, SUPPORT_LOCK_PATH_IN_REPO);
  return { value: { lock, lockFile, images }, did: `${images.length} pinned by ${SUPPORT_LOCK_PATH_IN_REPO}, present by digest` };
}

export async function releaseChartStep(
  o: { source: string; out: string; plan: TagPlan; images: BuildDocument; supportLock?: SupportLockLike; registry: string; namespace: string; sourceDateEpoch: number; registries: Registries; signing: Signing },
  io: StepIo,
): Promise<StepOutcome<ChartResult | undefined>> {
  if (!existsSync(join(o.source, 'deploy/helm/stella/Chart.yaml'))) return { value: undefined, did: 'skipped: no deploy/helm/stella', skipped: true };
  const built = new Set(o.images.images.map((i) => i.service));
  const absent = catalog.services.map((s) => s.name).filter((s) => !built.has(s));
  if (absent.length) return { value: undefined, did: `skipped: the chart pins every service; this build lacks ${absent.join(', ')}`, skipped: true };
  const base = {
    source: o.source,
    images: o.images,
    supportLock: o.supportLock,
    chartVersion: o.plan.chartVersion,
    appVersion: o.plan.imageVersion,
    registry: o.registry,
    namespace: o.namespace,
    sourceDateEpoch: o.sourceDateEpoch,
    outDir: join(o.out, 'charts'),
    registries: o.registries,
  };
  const packaged = await chartStep({ ...base, dryRun: true }, io);
  const { repo } = splitRepository(packaged.ref.slice(0, packaged.ref.lastIndexOf('@')));
  const current = await o.registries.client(o.registry).resolve(repo, packaged.tag);
  if (current === packaged.digest) return { value: packaged, did: `${packaged.oci}:${packaged.tag} already holds this package (${packaged.digest.slice(0, 19)}); nothing pushed` };
  if (current && o.plan.immutable) {
    throw new StellaError('IMMUTABLE_TAG', `chart ${packaged.oci}:${packaged.tag} already points to ${current}, not to this release's chart ${packaged.digest}; release charts are never moved: cut a new version`);
  }
  const published = await chartStep({ ...base, signing: o.signing, trust: o.signing.trust }, io);
  return { value: published, did: `${published.oci}:${published.tag} → ${published.digest.slice(0, 19)}, signed${published.signature?.verified ? ' and verified' : ''}` };
}
