import { defineConfig } from 'vitest/config';

/**
 * Two projects: `unit` (fast, pure: no Docker engine, registry, server or network; `npm run
 * test:unit`) and `integration` (everything else). `npm test` runs both.
 */
const UNIT = [
  'test/unit/**/*.test.ts',
  'test/sbom/**/*.test.ts',
  'test/provenance/**/*.test.ts',
  'test/sign/bundle.test.ts',
  'test/registry/unit.test.ts',
  'test/services/config.test.ts',
  'test/host/summary.test.ts',
  'test/redact/**/*.test.ts',
  'test/release/progress.test.ts',
  'test/bundle/archive.test.ts',
];

export default defineConfig({
  test: {
    // Integration tests drive a Docker engine, a registry and real servers:
    // one file at a time keeps two cores from thrashing.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // The Debian mirror drops superseded versions: when the committed base lock names one that is
    // gone, the tests use a refreshed lock written in the cache, OUTSIDE the work tree, with a
    // warning; the committed lock is never rewritten by a test run. Versioned releases stay strict
    // (LOCK_STALE). See ci/src/base/fetch.ts and docs/release/image-catalog.md.
    env: { STELLA_BASE_LOCK_POLICY: 'refresh-if-unavailable' },
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' },
    projects: [
      { extends: true, test: { name: 'unit', include: UNIT } },
      { extends: true, test: { name: 'integration', include: ['test/**/*.test.ts'], exclude: UNIT } },
    ],
  },
});
