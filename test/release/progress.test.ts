/**
 * Pure parts of the release's progress and records (no registry, no files): the summary table
 * and the `--json` events, GoReleaser's digests.txt lines, the loopback rule for generated keys,
 * and promote's smoke-record check.
 */
import { describe, expect, it } from 'vitest';
import { Progress, summaryTable } from '../../ci/src/release/progress.ts';
import { formatDigests } from '../../ci/src/release/outputs.ts';
import { isLoopbackRegistry } from '../../ci/src/release/preflight.ts';
import { checkSmoke } from '../../ci/src/release/promote.ts';

const D = (c: string) => `sha256:${c.repeat(64)}`;

describe('progress', () => {
  it('plain: a line per step start and end, and a summary table with every step and the total', async () => {
    const lines: string[] = [];
    const p = new Progress({ progress: (l) => lines.push(l) }, false);
    await p.step('build', async () => ({ value: 1, did: '2 images' }));
    p.skip('bundle', 'skipped: no bundle step registered');
    await expect(p.step('publish', async () => {
      throw new Error('boom');
    })).rejects.toThrow(/publish: boom/);
    p.summary(false);
    expect(lines[0]).toBe('── build');
    expect(lines[1]).toMatch(/^── build: 2 images \(\d+\.\d\ds\)$/);
    expect(lines).toContain('── bundle: skipped: no bundle step registered (0.00s)');
    expect(p.steps.map((s) => [s.step, s.status, s.did])).toEqual([['build', 'done', '2 images'], ['bundle', 'skipped', 'no bundle step registered'], ['publish', 'failed', 'publish: boom']]);
    const table = lines.slice(lines.indexOf(lines.find((l) => l.startsWith('step'))!));
    expect(table[0]).toMatch(/^step\s+status\s+time\s+what it did$/);
    expect(table.slice(1, 4).map((l) => l.split(/\s+/).slice(0, 2))).toEqual([['build', 'done'], ['bundle', 'skipped'], ['publish', 'failed']]);
    expect(table.at(-1)).toMatch(/^total\s+\d+\.\d\ds$/);
  });

  it('--json: only JSON events, through emit when the front end has it', async () => {
    const emitted: string[] = [];
    const progress: string[] = [];
    const p = new Progress({ progress: (l) => progress.push(l), emit: (l) => emitted.push(l) }, true);
    await p.step('sign', async () => {
      p.log('api: signed');
      return { value: undefined, did: '1 signed' };
    });
    p.summary(true);
    expect(progress).toEqual([]);
    const events = emitted.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.map((e) => e.event)).toEqual(['step-start', 'log', 'step-end', 'summary']);
    expect(events[1]).toEqual({ event: 'log', step: 'sign', message: 'api: signed' });
    expect(events[2]).toMatchObject({ event: 'step-end', step: 'sign', status: 'done', did: '1 signed' });
    expect(events[3]).toMatchObject({ event: 'summary', ok: true });
  });

  it('summaryTable aligns columns for long step names', () => {
    const rows = summaryTable([{ step: 'support-images', status: 'skipped', did: 'x', seconds: 0 }, { step: 'sbom', status: 'done', did: 'y', seconds: 12.345 }], 13);
    expect(rows[1]!.indexOf('skipped')).toBe(rows[2]!.indexOf('done'));
    expect(rows[2]).toContain('12.35s');
  });
});

describe('digests.txt', () => {
  it("is GoReleaser's format: `<hex> <name>`, no sha256: prefix, sorted by name", () => {
    expect(formatDigests([{ name: 'r/b', digest: D('b') }, { name: 'r/a', digest: D('a') }])).toBe(`${'a'.repeat(64)} r/a\n${'b'.repeat(64)} r/b\n`);
  });
});

describe('generated local keys only for loopback registries', () => {
  it.each([['127.0.0.1:5000', true], ['localhost:5000', true], ['[::1]:5000', true], ['127.9.9.9', true], ['ghcr.io', false], ['10.0.0.1:5000', false], ['127.0.0.1.example.com', false]])('%s → %s', (r, ok) => {
    expect(isLoopbackRegistry(r)).toBe(ok);
  });
});

describe("promote's smoke check", () => {
  const rc = { version: 'v1.0.0-rc.1', images: [{ service: 'api', repository: 'r/api', digest: D('a'), platforms: {}, tags: [] }] };
  const rec = (o: object = {}) => ({ smoke: 'smoke-compose', passed: true, failures: [], images: [{ service: 'api', digest: D('a') }], finishedAt: '2026-12-01T00:00:00Z', ...o });
  it('passes a passed record for exactly the rc digests', () => {
    expect(checkSmoke(rc, [rec(), rec({ smoke: 'smoke-helm' })])).toBe('smoke-compose, smoke-helm');
  });
  it('refuses none, a failed one, and one for other digests', () => {
    expect(() => checkSmoke(rc, [])).toThrow(/no smoke record/);
    expect(() => checkSmoke(rc, [rec(), rec({ smoke: 'smoke-helm', passed: false, failures: ['rollback lost rows'] })])).toThrow(/smoke-helm failed: rollback lost rows/);
    expect(() => checkSmoke(rc, [rec({ images: [{ service: 'api', digest: D('b') }] })])).toThrow(/ran api sha256:b{64}, not the rc's sha256:a{64}/);
  });
});
