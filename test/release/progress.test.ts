/**
 * Pure parts of the release's progress and records (no registry, no files): the summary table,
 * the `--json` events, the live terminal view (fed events, written to a fake TTY whose screen is
 * replayed from the bytes it got), GoReleaser's digests.txt lines, the loopback rule for
 * generated keys, and promote's smoke-record check.
 */
import { describe, expect, it } from 'vitest';
import { Progress, summaryTable } from '../../ci/src/release/progress.ts';
import { imageOfLine, liveMode, type TtyStream } from '../../ci/src/release/live.ts';
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

  it('--json: only JSON events, through emit when the front end has it; a line about one image names it', async () => {
    const emitted: string[] = [];
    const progress: string[] = [];
    const p = new Progress({ progress: (l) => progress.push(l), emit: (l) => emitted.push(l) }, true, { images: ['api', 'conseiller'] });
    await p.step('sign', async () => {
      p.log('api: signed');
      p.log('2 images to sign');
      return { value: undefined, did: '1 signed' };
    });
    p.summary(true);
    expect(progress).toEqual([]);
    const events = emitted.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.map((e) => e.event)).toEqual(['step-start', 'log', 'log', 'step-end', 'summary']);
    expect(events[1]).toEqual({ event: 'log', step: 'sign', image: 'api', message: 'api: signed' });
    expect(events[2]).toEqual({ event: 'log', step: 'sign', message: '2 images to sign' });
    events.splice(2, 1);
    expect(events[2]).toMatchObject({ event: 'step-end', step: 'sign', status: 'done', did: '1 signed' });
    expect(events[3]).toMatchObject({ event: 'summary', ok: true });
  });

  it('summaryTable aligns columns for long step names', () => {
    const rows = summaryTable([{ step: 'support-images', status: 'skipped', did: 'x', seconds: 0 }, { step: 'sbom', status: 'done', did: 'y', seconds: 12.345 }], 13);
    expect(rows[1]!.indexOf('skipped')).toBe(rows[2]!.indexOf('done'));
    expect(rows[2]).toContain('12.35s');
  });
});

/**
 * A fake terminal: records every write and replays it on a screen (text, `\n`, cursor to the
 * start of a line n up `ESC[nF`, clear to the end `ESC[J`; colours and cursor visibility kept
 * aside), so a test sees what a user would see after each write.
 */
class FakeTty implements TtyStream {
  readonly isTTY = true;
  readonly writes: string[] = [];
  readonly screens: string[][] = [];
  readonly #rows: string[] = [''];
  readonly columns: number;
  readonly rows: number;
  #r = 0;
  #c = 0;
  constructor(columns = 100, rows = 40) {
    this.columns = columns;
    this.rows = rows;
  }

  write(text: string): boolean {
    this.writes.push(text);
    const re = /\x1b\[(\??)(\d*)([A-Za-z])|\n|[^\x1b\n]/gu;
    for (const m of text.matchAll(re)) {
      const t = m[0];
      if (t === '\n') {
        this.#r++;
        this.#c = 0;
        this.#rows[this.#r] ??= '';
      } else if (m[3] === 'F') {
        this.#r = Math.max(0, this.#r - Number(m[2] || 1));
        this.#c = 0;
      } else if (m[3] === 'J') {
        this.#rows[this.#r] = this.#rows[this.#r]!.slice(0, this.#c);
        this.#rows.length = this.#r + 1;
      } else if (m[3]) {
        // SGR colour or cursor visibility: nothing on the screen
      } else {
        const row = this.#rows[this.#r]!.padEnd(this.#c);
        this.#rows[this.#r] = row.slice(0, this.#c) + t + row.slice(this.#c + 1);
        this.#c++;
      }
    }
    this.screens.push(this.screen());
    return true;
  }

  /** What is on the screen now (without the empty line the cursor sits on). */
  screen(): string[] {
    const rows = [...this.#rows];
    while (rows.length && rows.at(-1) === '') rows.pop();
    return rows;
  }
}

const SERVICES = ['api', 'conseiller'];
const liveProgress = (tty: FakeTty, o: { color?: boolean; images?: string[]; redact?: (t: string) => string } = {}) => {
  let t = 0;
  const clock = { advance: (ms: number) => (t += ms) };
  const plain: string[] = [];
  const p = new Progress({ progress: (l) => plain.push(l) }, false, { images: o.images ?? SERVICES, live: { stream: tty, color: o.color ?? true, title: 'release edge', interval: 0, now: () => t, ...(o.redact ? { redact: o.redact } : {}) } });
  return { p, plain, clock };
};

describe('progress: the live view on a terminal', () => {
  it('is chosen only for a TTY whose TERM is not dumb, never with --json; NO_COLOR keeps it without colours', () => {
    const tty = { isTTY: true, write: () => true };
    expect(liveMode(tty, { TERM: 'xterm-256color' }, false)).toEqual({ live: true, color: true });
    expect(liveMode(tty, { TERM: 'xterm', NO_COLOR: '1' }, false)).toEqual({ live: true, color: false });
    expect(liveMode(tty, { TERM: 'xterm', NO_COLOR: '' }, false)).toEqual({ live: true, color: true });
    expect(liveMode(tty, { TERM: 'dumb' }, false).live).toBe(false);
    expect(liveMode(tty, {}, false).live).toBe(false);
    expect(liveMode({ isTTY: false, write: () => true }, { TERM: 'xterm' }, false).live).toBe(false);
    expect(liveMode(undefined, { TERM: 'xterm' }, false).live).toBe(false);
    expect(liveMode(tty, { TERM: 'xterm' }, true).live).toBe(false);
  });

  it('attributes a line to the image it is about', () => {
    const images = ['ai', 'api', 'task-runner', 'console'];
    expect(imageOfLine('api linux/amd64: SBOM with 73 packages attached to sha256:0ec1', images)).toBe('api');
    expect(imageOfLine('stella-task-runner: index sha256:17a2 pushed', images)).toBe('task-runner');
    expect(imageOfLine('127.0.0.1:5000/stellaops/stella-ai:edge → sha256:d1eb (unchanged)', images)).toBe('ai');
    expect(imageOfLine('console: verified (7 checks)', images)).toBe('console');
    expect(imageOfLine('apis: something else', images)).toBeUndefined();
    expect(imageOfLine('base linux/amd64: sha256:0514 (1 layer(s))', images)).toBeUndefined();
  });

  it('draws every step, and under the running one every image with its last line; redraws in place', async () => {
    const tty = new FakeTty();
    const { p, plain, clock } = liveProgress(tty);
    p.expect(['preflight', 'build', 'sbom']);
    expect(tty.screen()).toEqual(['release edge · 0.0s', '  · preflight', '  · build', '  · sbom']);
    await p.step('preflight', async () => ({ value: 1, did: '5 checks passed' }));
    expect(tty.screen()[1]).toMatch(/^ {2}✓ preflight +\d+\.\d\ds {2}5 checks passed$/);
    let during: string[] = [];
    await p.step('build', async () => {
      clock.advance(1500);
      p.log('building 2 images for edge at 000000000000');
      p.log('stella-api linux/amd64: sha256:aaaa (app layer, 10 bytes) in 0.10s');
      during = tty.screen();
      p.log('stella-api: index sha256:bbbb pushed');
      p.log('javascript: 2 service bundle(s) in 1.00s');
      return { value: 2, did: '2 images × 2 platforms, by digest' };
    });
    expect(during).toEqual([
      'release edge · 1.5s',
      expect.stringMatching(/^ {2}✓ preflight /),
      expect.stringMatching(/^ {2}⠋ build +1\.5s {2}\[1\/2\] building 2 images for edge at 000000000000$/),
      '      api         linux/amd64: sha256:aaaa (app layer, 10 bytes) in 0.10s',
      '      conseiller  ·',
      '  · sbom',
    ]);
    // The step done: one line again, its images folded away; nothing left over from the taller frame.
    expect(tty.screen()).toEqual(['release edge · 1.5s', expect.stringMatching(/^ {2}✓ preflight/), expect.stringMatching(/^ {2}✓ build +\d+\.\d\ds {2}2 images × 2 platforms, by digest$/), '  · sbom']);
    // In place: every write after the first goes back over the previous frame (ESC[<its lines>F, ESC[J).
    for (let i = 1; i < tty.writes.length; i++) expect(tty.writes[i]!.startsWith(`\x1b[${tty.screens[i - 1]!.length}F\x1b[J`), `write ${i}`).toBe(true);
    expect(tty.writes[0]!.startsWith('\x1b[?25l')).toBe(true);
    // Nothing went to the plain lines.
    expect(plain).toEqual([]);
  });

  it('keeps warnings and lines outside any step above the view, and ends with the summary table in its place', async () => {
    const tty = new FakeTty();
    const { p } = liveProgress(tty);
    p.expect(['preflight', 'publish']);
    await p.step('preflight', async () => {
      p.log('warning: the working tree has uncommitted changes');
      return { value: 1, did: '5 checks passed' };
    });
    p.log('plan: publish        write tags edge, last');
    await expect(p.step('publish', async () => {
      p.log('stella-api:edge → sha256:cccc (create)');
      throw new Error('registry said no');
    })).rejects.toThrow(/publish: registry said no/);
    expect(tty.screen().slice(0, 2)).toEqual(['warning: the working tree has uncommitted changes', 'plan: publish        write tags edge, last']);
    expect(tty.screen()).toContainEqual(expect.stringMatching(/^ {2}✗ publish +\d+\.\d\ds {2}failed: publish: registry said no$/));
    p.summary(false);
    const screen = tty.screen();
    expect(screen.slice(0, 2)).toEqual(['warning: the working tree has uncommitted changes', 'plan: publish        write tags edge, last']);
    expect(screen.slice(2)).toHaveLength(summaryTable(p.steps, 0).length);
    expect(screen[2]).toMatch(/^step\s+status\s+time\s+what it did$/);
    expect(screen.slice(3, 5).map((l) => l.split(/\s+/).slice(0, 2))).toEqual([['preflight', 'done'], ['publish', 'failed']]);
    expect(screen.at(-1)).toMatch(/^total\s+\d+\.\d\ds$/);
    // The cursor is shown again, and later lines print plainly below.
    expect(tty.writes.at(-1)!.endsWith('\x1b[?25h')).toBe(true);
    p.log('release edge: done');
    expect(tty.screen().at(-1)).toBe('release edge: done');
  });

  it('colours with SGR codes, and NO_COLOR leaves them out (the redraw still moves the cursor)', async () => {
    for (const color of [true, false]) {
      const tty = new FakeTty();
      const { p } = liveProgress(tty, { color });
      p.expect(['preflight', 'build']);
      await p.step('preflight', async () => ({ value: 1, did: 'ok' }));
      const all = tty.writes.join('');
      expect(/\x1b\[\d+m/.test(all), `color ${color}`).toBe(color);
      expect(all).toMatch(/\x1b\[\d+F\x1b\[J/);
      if (color) expect(all).toContain('\x1b[32m  ✓ preflight');
    }
  });

  it('never draws wider or taller than the terminal: lines cut with …, images beyond the room counted', async () => {
    const images = ['ai', 'api', 'conseiller', 'console', 'excitator', 'export', 'ledger', 'notify', 'orchestrator', 'policy', 'task-runner'];
    const tty = new FakeTty(40, 9);
    const { p } = liveProgress(tty, { images });
    p.expect(['preflight', 'build', 'sbom', 'sign']);
    let during: string[] = [];
    await p.step('build', async () => {
      for (const i of images) p.log(`${i} linux/amd64: SBOM with 73 packages attached to sha256:0ec1ed6b12576eb0bc3b92bb82eb`);
      during = tty.screen();
      return { value: 1, did: 'done' };
    });
    for (const screen of tty.screens) {
      expect(screen.length, screen.join('\n')).toBeLessThanOrEqual(8);
      for (const l of screen) expect([...l].length, l).toBeLessThanOrEqual(39);
    }
    // Header, 4 steps, and in the 3 lines left: the 2 images heard from last (in catalog order), and the count of the others.
    expect(during).toEqual([
      'release edge · 0.0s',
      '  · preflight',
      '  ⠋ build        0.0s  [11/11]',
      '      policy        linux/amd64: SBOM …',
      '      task-runner   linux/amd64: SBOM …',
      '      … 9 more',
      '  · sbom',
      '  · sign',
    ]);
  });

  it('redacts every line before cutting it to the width: no part of a secret reaches the terminal', async () => {
    const secret = 'canary-live-secret-4f1d2e';
    const tty = new FakeTty(60, 20);
    const { p } = liveProgress(tty, { redact: (t) => t.split(secret).join('[REDACTED]') });
    await p.step('key', async () => {
      p.log(`api: ${'x'.repeat(25)} ${secret} and more`);
      p.log(`warning: ${secret}`);
      return { value: 1, did: `used ${secret}` };
    });
    p.summary(true);
    const all = tty.writes.join('');
    for (let n = 8; n <= secret.length; n++) expect(all.includes(secret.slice(0, n)), secret.slice(0, n)).toBe(false);
    expect(all).toContain('[REDACTED]');
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
