/**
 * Prints "N passed, N failed, N skipped" (alone on its line: what the CI reads)
 * from vitest's JSON report, and exits non-zero when the run did not succeed:
 * the report is missing or unreadable, it says `success: false`, a test failed,
 * a test file failed to load (its tests never ran: each such file counts as one
 * failure), or no test ran at all.
 */
import { readFileSync } from 'node:fs';

interface FileResult {
  name: string;
  status: string;
  message?: string;
  assertionResults?: { status: string }[];
}
export interface Report {
  success?: boolean;
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  numFailedTestSuites: number;
  testResults?: FileResult[];
}

export interface Summary {
  passed: number;
  failed: number;
  skipped: number;
  ok: boolean;
  reasons: string[];
}

export function summarize(report: Report): Summary {
  const reasons: string[] = [];
  // A file whose tests never ran (a load or collection error, a failing beforeAll at file level):
  // it failed, but no test inside it is counted as failed.
  const loadFailures = (report.testResults ?? []).filter((f) => f.status === 'failed' && !(f.assertionResults ?? []).some((a) => a.status === 'failed'));
  for (const f of loadFailures) reasons.push(`test file failed to load or run: ${f.name}${f.message ? `: ${f.message.split('\n')[0]}` : ''}`);
  let failed = report.numFailedTests + loadFailures.length;
  if (failed === 0 && report.numFailedTestSuites > 0) {
    failed = report.numFailedTestSuites;
    reasons.push(`${report.numFailedTestSuites} test suite(s) failed`);
  }
  if (report.success === false && failed === 0) {
    failed = 1;
    reasons.push('the report says the run did not succeed (success: false)');
  }
  if (report.numPassedTests === 0) reasons.push('no test passed');
  const skipped = report.numPendingTests + report.numTodoTests;
  return { passed: report.numPassedTests, failed, skipped, ok: failed === 0 && report.numPassedTests > 0 && report.success !== false, reasons };
}

export function summaryLine(s: Pick<Summary, 'passed' | 'failed' | 'skipped'>): string {
  return `${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped`;
}

if (import.meta.main) {
  const file = process.argv[2] ?? 'test-results/vitest.json';
  let report: Report;
  try {
    report = JSON.parse(readFileSync(file, 'utf8')) as Report;
    if (typeof report.numPassedTests !== 'number') throw new Error('not a vitest JSON report');
  } catch (e) {
    console.error(`test-summary: no test report at ${file}: ${(e as Error).message}`);
    console.log(summaryLine({ passed: 0, failed: 1, skipped: 0 }));
    process.exit(1);
  }
  const s = summarize(report);
  for (const r of s.reasons) console.error(`test-summary: ${r}`);
  console.log(summaryLine(s));
  process.exit(s.ok ? 0 : 1);
}
