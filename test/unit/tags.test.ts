import { describe, expect, it } from 'vitest';
import { planTags, decideTagWrite, isImmutableTag, ACCEPTED_FORMS } from '../../ci/src/tags/index.ts';
import { StellaError } from '../../ci/src/errors.ts';

describe('tag scheme', () => {
  it.each([
    ['v1.4.0', 'release', ['v1.4.0'], true],
    ['v1.4.0-rc.2', 'rc', ['v1.4.0-rc.2'], true],
    ['v0.1.0', 'release', ['v0.1.0'], true],
    ['v10.20.30-rc.11', 'rc', ['v10.20.30-rc.11'], true],
    ['edge', 'edge', ['edge'], false],
  ])('%s publishes %s tags %j', (version, channel, tags, immutable) => {
    const plan = planTags({ version });
    expect(plan.channel).toBe(channel);
    expect(plan.tags).toEqual(tags);
    expect(plan.immutable).toBe(immutable);
  });

  it('nightly publishes nightly-YYYYMMDD from the UTC date of the build', () => {
    // 23:30 at UTC-5 is already the next day in UTC.
    expect(planTags({ version: 'nightly', date: '2026-11-27T23:30:00-05:00' }).tags).toEqual(['nightly-20261128']);
    expect(planTags({ version: 'nightly', date: '2026-01-02' }).tags).toEqual(['nightly-20260102']);
    const today = new Date().toISOString().slice(0, 10).replaceAll('-', '');
    expect(planTags({ version: 'nightly' }).tags).toEqual([`nightly-${today}`]);
  });

  it.each([
    ['1.4.0', /start with "v" \(did you mean "v1.4.0"\?\)/],
    ['v1.4', /all three numbers/],
    ['v1.4.0-beta.1', /only release candidates \(-rc\.N\)/],
    ['v1.4.0-rc', /needs a number/],
    ['v01.4.0', /leading zeros/],
    ['v1.4.0+build.5', /build metadata/],
    ['v1.4.0-rc.0', /numbered from 1/],
    ['latest', /not a version/],
    ['', /empty/],
  ])('refuses %j naming the accepted forms', (version, why) => {
    let err: unknown;
    try {
      planTags({ version });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StellaError);
    expect((err as StellaError).code).toBe('INVALID_VERSION');
    expect((err as Error).message).toMatch(why);
    expect((err as Error).message).toContain(ACCEPTED_FORMS);
  });

  it('checks the ref against the version', () => {
    expect(planTags({ version: 'v1.4.0', ref: 'refs/tags/v1.4.0' }).tags).toEqual(['v1.4.0']);
    expect(() => planTags({ version: 'v1.4.0', ref: 'refs/heads/main' })).toThrow(/must be built from the tag refs\/tags\/v1.4.0/);
    expect(planTags({ version: 'edge', ref: 'refs/heads/main' }).tags).toEqual(['edge']);
    expect(() => planTags({ version: 'edge', ref: 'refs/heads/feature-x' })).toThrow(/only from refs\/heads\/main/);
    expect(() => planTags({ version: 'nightly', ref: 'refs/tags/v1.0.0', date: '2026-01-01' })).toThrow(/from a branch/);
  });

  it('refuses a date that is not a date', () => {
    expect(() => planTags({ version: 'nightly', date: 'yesterday' })).toThrow(/not a date/);
  });

  it('release and rc tags are immutable; edge and nightly move', () => {
    expect(isImmutableTag('v1.4.0')).toBe(true);
    expect(isImmutableTag('v1.4.0-rc.1')).toBe(true);
    expect(isImmutableTag('edge')).toBe(false);
    expect(isImmutableTag('nightly-20261128')).toBe(false);
    expect(isImmutableTag('sha256-abc.sig')).toBe(false);
  });

  it('decides tag writes: create, idempotent no-op, move, or refuse', () => {
    const a = `sha256:${'a'.repeat(64)}`;
    const b = `sha256:${'b'.repeat(64)}`;
    expect(decideTagWrite('stella-api', 'v1.4.0', a, undefined)).toBe('create');
    expect(decideTagWrite('stella-api', 'v1.4.0', a, a)).toBe('unchanged');
    expect(decideTagWrite('stella-api', 'edge', a, b)).toBe('move');
    expect(decideTagWrite('stella-api', 'nightly-20261128', a, b)).toBe('move');
    expect(() => decideTagWrite('stella-api', 'v1.4.0-rc.1', a, b)).toThrow(
      new RegExp(`immutable tag stella-api:v1.4.0-rc.1: it points to ${b}, this release built ${a}`),
    );
  });
});
