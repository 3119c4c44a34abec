/**
 * The release's step slots for work that lives elsewhere: the air-gap `bundle` (ci/src/bundle/)
 * and the `smoke` tests (compose where Docker is available; airgap as root; helm runs in smoke.yml). The
 * release runs them in order after `chart` and before `verify`/`publish`:
 *
 *   … provenance → chart → bundle → smoke → verify → publish (tags last) → record
 *
 * A slot with nothing registered (or whose steps are unavailable) is recorded as `skipped` (with
 * why) in the summary and in release.json. A step is registered below (one line and its import).
 *
 * A step gets everything the release has made so far (by digest) and returns what it did and
 * what release.json records for it. A smoke step's record is what `promote` checks: an rc is
 * promoted only when every smoke record in its release.json passed, for the rc's exact digests.
 */
import type { BuildDocument } from '../build/index.ts';
import { bundleReleaseStep } from '../bundle/release-step.ts';
import { smokeAirgapReleaseStep, smokeComposeReleaseStep } from '../smoke/release-step.ts';
import type { TagPlan } from '../tags/index.ts';
import type { Registries, Signing, StepIo } from './context.ts';
import type { SourceRevision } from './git.ts';

export interface ReleaseStepContext {
  readonly source: string;
  readonly out: string;
  readonly plan: TagPlan;
  readonly revision: Pick<SourceRevision, 'commit' | 'time'>;
  readonly images: BuildDocument;
  /** The support image lock the release used (see release.json `supportImages`), when any. */
  readonly supportLockFile?: string;
  /** The chart the release published, when any. */
  readonly chart?: { readonly ref: string; readonly digest: string; readonly package: string };
  readonly registries: Registries;
  readonly signing: Signing;
  readonly io: StepIo;
  /** `release --smoke`: the smoke slot's steps run here (else they are skipped, saying so). */
  readonly smoke?: boolean;
}

/** What release.json records of the bundle step. */
export interface BundleRecord {
  readonly path: string;
  readonly sha256: string;
  readonly bytes?: number;
}

/** One smoke test's outcome, bound to the digests it ran. */
export interface SmokeRecord {
  /** The function that ran it: smoke-compose, smoke-helm, smoke-airgap. */
  readonly smoke: string;
  readonly passed: boolean;
  readonly failures: readonly string[];
  /** The images it ran, by digest (promote checks they are the rc's). */
  readonly images: readonly { readonly service: string; readonly digest: string }[];
  readonly finishedAt: string;
  /**
   * sha256 over everything it ran (images, support images, bundle: ../release/pipeline.ts
   * smokeSubject). A re-release whose subject is the same keeps a passed record instead of
   * running the test again; promote checks `images`.
   */
  readonly subject?: string;
}

export interface BundleStep {
  readonly name: 'bundle';
  /** Why the step cannot run with these inputs (then it is skipped), or undefined; may ask the registry. */
  unavailable?(c: ReleaseStepContext): string | undefined | Promise<string | undefined>;
  run(c: ReleaseStepContext): Promise<{ readonly did: string; readonly record: BundleRecord }>;
}

export interface SmokeStep {
  /** smoke-compose, smoke-helm, smoke-airgap. */
  readonly name: string;
  unavailable?(c: ReleaseStepContext): string | undefined;
  run(c: ReleaseStepContext & { readonly bundle?: BundleRecord }): Promise<{ readonly did: string; readonly record: SmokeRecord }>;
}

export interface ReleaseHooks {
  readonly bundle?: BundleStep;
  readonly smoke: readonly SmokeStep[];
}

/**
 * The registered slots. bundle: ci/src/bundle/release-step.ts (versioned releases whose support
 * images the release built). smoke, with `release --smoke`: smoke-compose where a Docker engine
 * is, then smoke-airgap on that bundle (root); otherwise the smoke tests run on the rc's dist/ in
 * smoke.yml (smoke-compose, smoke-helm, smoke-airgap), and promote takes their records.
 */
export const releaseHooks: ReleaseHooks = { bundle: bundleReleaseStep, smoke: [smokeComposeReleaseStep, smokeAirgapReleaseStep] };
