/**
 * Everything generated, in one list: from the catalog (docs tables, Dockerfiles)
 * and from the function definitions (the Dagger module class). `generate`
 * rewrites the files; `check` reports each file that differs from what would be generated.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { catalog } from '../catalog/index.ts';
import { docTargets } from './docs.ts';
import { replaceRegion } from './regions.ts';
import { dockerfileFiles } from '../build/dockerfiles.ts';
import { daggerModuleFiles } from './dagger.ts';
import { composeGeneratedFiles } from '../compose/index.ts';
import { chartGeneratedFiles } from '../chart/render.ts';

export interface GeneratedFile {
  readonly path: string;
  readonly content: string;
}

/** Whole generated files: the Dockerfiles (from the catalog) and the Dagger module class (from ci/src/functions.ts). */
/** … and deploy/compose/ (docker-compose.yml, .env.example, the collector's config: ci/src/compose), and deploy/helm/stella/'s generated files (ci/src/chart). */
export const fileGenerators: ReadonlyArray<() => GeneratedFile[]> = [() => dockerfileFiles(), () => daggerModuleFiles(), () => composeGeneratedFiles(), () => chartGeneratedFiles()];

/** Computes every generated file's content from the catalog and the files on disk. */
export function renderAll(root: string): GeneratedFile[] {
  const out = new Map<string, string>();
  for (const t of docTargets) {
    const current = out.get(t.file) ?? readFileSync(join(root, t.file), 'utf8');
    out.set(t.file, replaceRegion(t.file, current, t.region, t.render(catalog)));
  }
  for (const g of fileGenerators) for (const f of g()) out.set(f.path, f.content);
  return [...out].map(([path, content]) => ({ path, content }));
}

/** Returns the paths whose committed content differs from the generated one. */
export function checkGenerated(root: string): string[] {
  return renderAll(root)
    .filter((f) => {
      try {
        return readFileSync(join(root, f.path), 'utf8') !== f.content;
      } catch {
        return true;
      }
    })
    .map((f) => f.path);
}

export function writeGenerated(root: string): string[] {
  const changed = checkGenerated(root);
  for (const f of renderAll(root)) if (changed.includes(f.path)) writeFileSync(join(root, f.path), f.content);
  return changed;
}
