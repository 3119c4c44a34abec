/**
 * The Dagger module `stella`: the StellaOps distribution pipeline.
 *
 * This class only wires Dagger inputs (Directory, Secret, Service) to the
 * engine-neutral functions beside it; every step's real work lives in those
 * functions, which the CLI `stella-release` exposes with the same names and
 * arguments and which the test suite runs for real.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { argument, func, object, type Directory } from '@dagger.io/dagger';
import { functions } from './functions.ts';
import { renderAll } from './generate/index.ts';

/** Runs one of the shared functions on a checkout at `source` and returns what the CLI would print. */
async function call(name: string, source: string, args: Record<string, string | boolean | number | undefined>): Promise<string> {
  const f = functions.find((x) => x.name === name);
  if (!f) throw new Error(`internal: no function ${name}`);
  return f.run(args, { source, progress: (line) => console.error(`${name}: ${line}`) });
}

/** Copies a Directory into the runtime container's filesystem, where the shared functions work. */
async function materialize(dir: Directory): Promise<string> {
  const path = await mkdtemp(join(tmpdir(), 'stella-source-'));
  await dir.export(path);
  return path;
}

@object()
export class Stella {
  /** The repository checkout (defaults to the module's context directory). */
  source: Directory;

  constructor(
    /** The StellaOps repository; defaults to the git checkout holding dagger.json. */
    @argument({ defaultPath: '/' }) source: Directory,
  ) {
    this.source = source;
  }

  /**
   * The service catalog (services, support services, every configuration key) as JSON.
   *
   * Example: `dagger call catalog`
   */
  @func()
  async catalog(): Promise<string> {
    return call('catalog', '.', {});
  }

  /**
   * The tags a version publishes, as JSON. Refuses versions outside the tag scheme.
   *
   * Example: `dagger call tags --version v1.4.0-rc.1 --ref refs/tags/v1.4.0-rc.1`
   *
   * @param version vX.Y.Z, vX.Y.Z-rc.N, edge or nightly
   * @param ref git ref of the build; must agree with the version
   * @param date build date for nightly tags (YYYY-MM-DD, UTC); defaults to now
   */
  @func()
  async tags(version: string, ref?: string, date?: string): Promise<string> {
    return call('tags', '.', { version, ref, date });
  }

  /**
   * The repository with every file derived from the catalog regenerated (docs tables,
   * Dockerfiles, compose, chart values). With `check`, fails listing the files that drifted.
   *
   * Example: `dagger call generate export --path .` or `dagger call generate --check`
   *
   * @param check fail, listing the files, when a generated file differs from what the catalog gives
   */
  @func()
  async generate(check?: boolean): Promise<Directory> {
    const path = await materialize(this.source);
    await call('generate', path, { check: check ?? false });
    let out = this.source;
    for (const f of renderAll(path)) out = out.withNewFile(f.path, f.content);
    return out;
  }
}
