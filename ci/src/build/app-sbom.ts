/**
 * The application SBOM baked into every image at /app/sbom.spdx.json: written
 * into the JavaScript build's output directory of each service, so that both
 * our builder and plain BuildKit (`COPY dist/app/<service>/ /app/`) include it.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SOURCE_URL } from '../catalog/index.ts';
import { appSbom, serializeSpdx, type NpmPackage } from '../sbom/index.ts';

export const APP_SBOM_FILE = 'sbom.spdx.json';

export interface BuiltBundle {
  readonly service: string;
  readonly dir: string;
  readonly npmPackages?: readonly unknown[];
}

export async function writeAppSbom(b: BuiltBundle, o: { version: string; gitCommit: string; sourceDateEpoch: number }): Promise<string> {
  const doc = appSbom({
    service: b.service,
    version: o.version,
    gitCommit: o.gitCommit,
    npmPackages: (b.npmPackages ?? []) as readonly NpmPackage[],
    created: o.sourceDateEpoch,
    sourceRepository: `git+${SOURCE_URL}`,
  });
  const path = join(b.dir, APP_SBOM_FILE);
  await writeFile(path, serializeSpdx(doc));
  return path;
}
