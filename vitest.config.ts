import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests drive a Docker engine, a registry and real servers:
    // one file at a time keeps two cores from thrashing.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // The Debian mirror drops superseded versions: the tests refresh a stale base lock
    // (with a warning) instead of failing; releases stay strict (ci/src/base/fetch.ts).
    env: { STELLA_BASE_LOCK_POLICY: 'refresh-if-unavailable' },
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' },
  },
});
