/**
 * The CI's summary line: scripts/test-summary.ts reads vitest's real JSON report and prints
 * "N passed, N failed, N skipped" alone on its line, failing the run when the report says the run
 * did not succeed or a test file failed to load; .ci/run prints the same line when setup fails.
 * The reports here come from real vitest runs over small fixture files.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { summarize, summaryLine } from '../../scripts/test-summary.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const work = mkdtempSync(join(tmpdir(), 'stella-summary-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Runs vitest over the given fixture files (globals, no config) and returns the JSON report's path. */
function vitestReport(name: string, files: Record<string, string>): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  const report = join(dir, 'report.json');
  const r = spawnSync(join(ROOT, 'node_modules/.bin/vitest'), ['run', '--root', dir, '--globals', '--reporter=json', `--outputFile.json=${report}`], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, CI: '' },
  });
  expect(r.error).toBeUndefined();
  return report;
}

function summary(report: string): { status: number | null; lines: string[] } {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/test-summary.ts'), report], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, lines: r.stdout.trim().split('\n') };
}

describe('scripts/test-summary.ts on real vitest reports', () => {
  it('all passing (one skipped): exit 0 and the three-field line', () => {
    const s = summary(vitestReport('ok', { 'ok.test.js': "test('a', () => expect(1).toBe(1));\ntest.skip('b', () => {});\n" }));
    expect(s.lines).toEqual(['1 passed, 0 failed, 1 skipped']);
    expect(s.status).toBe(0);
  });

  it('a test file that fails to load counts as a failure even though no test in it failed', () => {
    const s = summary(vitestReport('load', {
      'ok.test.js': "test('a', () => expect(1).toBe(1));\n",
      'broken.test.js': "throw new Error('CI=true: cosign missing');\n",
    }));
    expect(s.lines).toEqual(['1 passed, 1 failed, 0 skipped']);
    expect(s.status).toBe(1);
  });

  it('a failing test fails the run', () => {
    const s = summary(vitestReport('fail', { 'f.test.js': "test('a', () => expect(1).toBe(2));\ntest('b', () => {});\n" }));
    expect(s.lines).toEqual(['1 passed, 1 failed, 0 skipped']);
    expect(s.status).toBe(1);
  });

  it('no report: the same line with one failure', () => {
    const s = summary(join(work, 'nothing.json'));
    expect(s.lines).toEqual(['0 passed, 1 failed, 0 skipped']);
    expect(s.status).toBe(1);
  });

  it('a report saying success: false (e.g. an unhandled error outside any test) fails even with no failed test', () => {
    const s = summarize({ success: false, numPassedTests: 3, numFailedTests: 0, numPendingTests: 0, numTodoTests: 0, numFailedTestSuites: 0, testResults: [] });
    expect(s.ok).toBe(false);
    expect(summaryLine(s)).toBe('3 passed, 1 failed, 0 skipped');
  });
});

describe('.ci/run', () => {
  it('a failed host setup prints "0 passed, 1 failed, 0 skipped" alone on a line and exits 1', () => {
    // A state directory that cannot be created makes host-setup fail in its first step, before it
    // touches anything; teardown then finds nothing of this run to stop.
    const r = spawnSync('bash', [join(ROOT, '.ci/run')], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, STELLA_HOST_STATE: '/proc/stella-no-such-state', STELLA_HOST_RUN_ID: 'summary-test' },
    });
    expect(r.status).toBe(1);
    expect(r.stdout.split('\n')).toContain('0 passed, 1 failed, 0 skipped');
    expect(r.stderr).toContain('ci: host setup failed');
  });
});
