/**
 * The Dagger module cannot run here (no Dagger engine can be installed on this
 * host); it is compiled and type-checked against the @dagger.io/dagger 0.21
 * types instead, together with the rest of the code. The dagger job in
 * .github/workflows runs it for real where an engine exists.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('type check (strict)', () => {
  it.each(['ci', 'services', 'test'])('%s/ compiles without errors', (project) => {
    const r = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', `${project}/tsconfig.json`], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  }, 180_000);
});
