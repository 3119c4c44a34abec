/**
 * The tag scheme (seed §3.1): which tags a build publishes, and which of them
 * are immutable.
 *
 *   v1.4.0        → release    → tags [v1.4.0]             immutable
 *   v1.4.0-rc.2   → candidate  → tags [v1.4.0-rc.2]        immutable
 *   edge          → main build → tags [edge]               moves with main
 *   nightly       → nightly    → tags [nightly-YYYYMMDD]   UTC date of the build; moves on a re-run that day
 */
import semver from 'semver';
import { StellaError } from '../errors.ts';

export type Channel = 'release' | 'rc' | 'edge' | 'nightly';

export interface TagPlan {
  /** The version as requested (`v1.4.0`, `v1.4.0-rc.2`, `edge`, `nightly`). */
  readonly version: string;
  readonly channel: Channel;
  /** Tags to publish, in order. */
  readonly tags: readonly string[];
  /** The version string baked into images (`/version`) and charts. */
  readonly imageVersion: string;
  /** A chart version (SemVer 2, no leading v). */
  readonly chartVersion: string;
  /** Release and rc tags are never overwritten with other content. */
  readonly immutable: boolean;
}

export const ACCEPTED_FORMS =
  'vX.Y.Z (release, e.g. v1.4.0), vX.Y.Z-rc.N (release candidate, e.g. v1.4.0-rc.2), "edge" (a build of main) or "nightly" (published as nightly-YYYYMMDD)';

function refuse(version: string, why: string): never {
  throw new StellaError('INVALID_VERSION', `version "${version}" is refused: ${why}. Accepted forms: ${ACCEPTED_FORMS}`);
}

export interface TagOptions {
  readonly version: string;
  /** Git ref of the build (`refs/tags/v1.4.0`, `refs/heads/main`); when given it must agree with the version. */
  readonly ref?: string;
  /** Build time for nightly tags; defaults to now. Date or ISO-8601 string. */
  readonly date?: Date | string;
}

/** Computes the tags a build publishes, or refuses the version with a message naming the accepted forms. */
export function planTags(opts: TagOptions): TagPlan {
  const version = opts.version.trim();
  let plan: TagPlan;
  if (version === 'edge') {
    plan = { version, channel: 'edge', tags: ['edge'], imageVersion: 'edge', chartVersion: '0.0.0-edge', immutable: false };
  } else if (version === 'nightly') {
    const day = utcDay(opts.date ?? new Date());
    plan = { version, channel: 'nightly', tags: [`nightly-${day}`], imageVersion: `nightly-${day}`, chartVersion: `0.0.0-nightly.${day}`, immutable: false };
  } else {
    plan = parseRelease(version);
  }
  if (opts.ref !== undefined) checkRef(plan, opts.ref);
  return plan;
}

function parseRelease(version: string): TagPlan {
  if (version === '') refuse(version, 'it is empty');
  if (!version.startsWith('v')) {
    if (semver.valid(version)) refuse(version, `release versions start with "v" (did you mean "v${version}"?)`);
    refuse(version, 'it is not a version');
  }
  const bare = version.slice(1);
  const parsed = semver.parse(bare, { loose: false });
  if (!parsed || parsed.version !== bare) {
    if (/^\d+\.\d+$/.test(bare)) refuse(version, 'a release needs all three numbers (vX.Y.Z)');
    if (/(^|\.)0\d/.test(bare.split('-')[0] ?? '')) refuse(version, 'numbers must not have leading zeros');
    if (bare.includes('+')) refuse(version, 'build metadata (+…) is not allowed');
    refuse(version, 'it is not a SemVer 2 version');
  }
  if (parsed.build.length) refuse(version, 'build metadata (+…) is not allowed');
  const pre = parsed.prerelease;
  if (pre.length === 0) {
    return { version, channel: 'release', tags: [version], imageVersion: version, chartVersion: bare, immutable: true };
  }
  if (pre.length === 2 && pre[0] === 'rc' && typeof pre[1] === 'number' && pre[1] >= 1) {
    return { version, channel: 'rc', tags: [version], imageVersion: version, chartVersion: bare, immutable: true };
  }
  if (pre[0] === 'rc' && pre.length === 1) refuse(version, 'a release candidate needs a number (vX.Y.Z-rc.N)');
  if (pre[0] === 'rc' && pre[1] === 0) refuse(version, 'release candidates are numbered from 1');
  return refuse(version, `only release candidates (-rc.N) are accepted as pre-releases, not "-${pre.join('.')}"`);
}

function checkRef(plan: TagPlan, ref: string): void {
  const r = ref.trim();
  const tag = r.startsWith('refs/tags/') ? r.slice('refs/tags/'.length) : undefined;
  const branch = r.startsWith('refs/heads/') ? r.slice('refs/heads/'.length) : undefined;
  switch (plan.channel) {
    case 'release':
    case 'rc':
      if (tag !== plan.version) {
        throw new StellaError('INVALID_VERSION', `version ${plan.version} must be built from the tag refs/tags/${plan.version}, got ref "${r}"`);
      }
      return;
    case 'edge':
      if (branch !== 'main') {
        throw new StellaError('INVALID_VERSION', `edge is published only from refs/heads/main, got ref "${r}"`);
      }
      return;
    case 'nightly':
      if (branch === undefined) {
        throw new StellaError('INVALID_VERSION', `a nightly is built from a branch (refs/heads/…), got ref "${r}"`);
      }
      return;
  }
}

function utcDay(d: Date | string): string {
  const date = typeof d === 'string' ? new Date(d) : d;
  if (Number.isNaN(date.getTime())) {
    throw new StellaError('INVALID_ARGUMENT', `date "${String(d)}" is not a date; use YYYY-MM-DD or an ISO-8601 time`);
  }
  return date.toISOString().slice(0, 10).replaceAll('-', '');
}

/** True for tags that, once published, must never point to other content. */
export function isImmutableTag(tag: string): boolean {
  if (!tag.startsWith('v')) return false;
  try {
    const plan = parseRelease(tag);
    return plan.immutable;
  } catch {
    return false;
  }
}

export type TagWrite = 'create' | 'unchanged' | 'move';

/**
 * Decides what writing `tag` → `digest` does, given what the registry holds now.
 * An immutable tag that exists with another digest is refused; the same digest is a no-op.
 */
export function decideTagWrite(repository: string, tag: string, desired: string, existing: string | undefined): TagWrite {
  if (existing === undefined) return 'create';
  if (existing === desired) return 'unchanged';
  if (isImmutableTag(tag)) {
    throw new StellaError(
      'IMMUTABLE_TAG',
      `refusing to overwrite the immutable tag ${repository}:${tag}: it points to ${existing}, this release built ${desired}. Release and rc tags never move; publish a new version instead`,
    );
  }
  return 'move';
}
