/** The Compose quickstart's generated files (deploy/compose/) and their inputs. */
export * from './images.ts';
export * from './settings.ts';
export * from './render.ts';

import { resolve } from 'node:path';
import { readSupportLock } from './images.ts';
import { composeFiles } from './render.ts';

/** The repository root this module lives in (ci/src/compose → ../../..). */
const ROOT = resolve(import.meta.dirname, '../../..');

/** For fileGenerators: deploy/compose/ from the catalog and the committed support image lock. */
export function composeGeneratedFiles(): { path: string; content: string }[] {
  return composeFiles(ROOT, undefined, readSupportLock(ROOT));
}
