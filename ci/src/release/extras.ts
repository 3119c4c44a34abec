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
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StellaError } from '../errors.ts';
import { catalog } from '../catalog/index.ts';
import type { BuildDocument } from '../build/index.ts';
import type { TagPlan } from '../tags/index.ts';
import { chartStep, SUPPORT_LOCK_PATH_IN_REPO, type ChartResult, type SupportLockLike } from '../chart/publish.ts';
import { buildSupportImages } from '../support/index.ts';
import { Registries, splitRepository, type RegistryAccess, type Signing, type StepIo } from './context.ts';
import type { StepOutcome } from './progress.ts';

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

export async function supportImagesStep(
  o: { source: string; out: string; mode: SupportImagesMode; registry: string; namespace: string; registries: Registries; access: RegistryAccess; sourceDateEpoch: number },
  io: StepIo,
): Promise<StepOutcome<SupportStepResult>> {
  if (o.mode === 'skip') return { value: { images: [] }, did: 'skipped: --support-images skip', skipped: true };
  if (o.mode === 'build') {
    const lockFile = join(o.out, 'support-images.lock.json');
    const { lock } = await buildSupportImages({
      source: o.source,
      push: { registry: o.registry, namespace: o.namespace },
      lockFile,
      sbomDir: join(o.out, 'sbom', 'support'),
      sourceDateEpoch: o.sourceDateEpoch,
      registryOptions: o.access,
      progress: (l) => io.progress(l),
    });
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
