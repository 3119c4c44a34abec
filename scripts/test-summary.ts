/**
 * Prints "N passed, N failed, N skipped" from vitest's JSON report, so that a
 * run which executed no test is visible. Exits non-zero when the report is
 * missing, when any test failed, or when no test ran.
 */
import { readFileSync } from 'node:fs';

interface Report {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  numFailedTestSuites: number;
}

const file = process.argv[2] ?? 'test-results/vitest.json';
let report: Report;
try {
  report = JSON.parse(readFileSync(file, 'utf8')) as Report;
} catch (e) {
  console.error(`test-summary: no test report at ${file}: ${(e as Error).message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
}
// A test file that fails to load counts as a failure even though no test in it ran.
const failed = report.numFailedTests + (report.numFailedTests === 0 ? report.numFailedTestSuites : 0);
const skipped = report.numPendingTests + report.numTodoTests;
console.log(`${report.numPassedTests} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || report.numPassedTests === 0 ? 1 : 0);
