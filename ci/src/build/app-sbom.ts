/**
 * The application SBOM baked into every image at /app/sbom.spdx.json: written
 * by the JavaScript build (services/build.ts) into each service's output
 * directory, so that both our builder and plain BuildKit (`COPY
 * dist/app/<service>/ /app/`) include it.
 */
import { SOURCE_URL } from '../catalog/index.ts';
import { appSbom, serializeSpdx, type NpmPackage } from '../sbom/index.ts';

export const APP_SBOM_FILE = 'sbom.spdx.json';

/** The SPDX 2.3 document of one service's bundle; `buildDate` (RFC 3339) is its creation time. */
export function appSbomBytes(service: string, npmPackages: readonly NpmPackage[], o: { version: string; gitCommit: string; buildDate: string }): Uint8Array {
  return serializeSpdx(
    appSbom({
      service,
      version: o.version,
      gitCommit: o.gitCommit,
      npmPackages,
      created: o.buildDate,
      sourceRepository: `git+${SOURCE_URL}`,
    }),
  );
}
