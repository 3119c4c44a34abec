/**
 * The command line a Dagger function runs: `stella-release <name> --flag value …`
 * inside the toolbox container, built from the function's definition — never
 * from the runtime shape of the values. Engine-free (no `@dagger.io/dagger`
 * import), so the test suite checks it for every function without an engine.
 *
 *   string   `--flag value`
 *   integer  `--flag 42`
 *   boolean  `--flag` when true, nothing when false or absent
 *   file     mounted at /run/stella/files/<flag>; `--flag /run/stella/files/<flag>`
 *   directory mounted at /run/stella/dirs/<flag>; `--flag /run/stella/dirs/<flag>`
 *   secret   a secret variable STELLA_SECRET_<NAME>; `--flag env:STELLA_SECRET_<NAME>`
 */
import { StellaError } from '../errors.ts';
import type { FunctionSpec } from '../functions.ts';
import { flag, kebab } from './names.ts';

/** The CLI inside the toolbox, relative to its working directory (the repository). */
export const CLI_ENTRY = ['node', 'ci/src/cli.ts'] as const;
export const FILE_MOUNTS = '/run/stella/files';
export const DIRECTORY_MOUNTS = '/run/stella/dirs';

export interface Invocation<F, S, D> {
  readonly argv: readonly string[];
  /** Secret variables to set: `--<arg> env:<env>`. */
  readonly secretEnv: readonly { readonly arg: string; readonly env: string; readonly value: S }[];
  readonly mountedFiles: readonly { readonly arg: string; readonly path: string; readonly value: F }[];
  readonly mountedDirectories: readonly { readonly arg: string; readonly path: string; readonly value: D }[];
}

export function secretEnvName(arg: string): string {
  return `STELLA_SECRET_${kebab(arg).replaceAll('-', '_').toUpperCase()}`;
}

/**
 * `args` holds the Dagger function's parameters by name; File, Secret and Directory
 * values are opaque here (the runtime mounts them). An argument the definition does
 * not declare (or declares CLI-only) is an error, not silently dropped.
 */
export function cliInvocation<F = unknown, S = unknown, D = unknown>(f: FunctionSpec, args: Readonly<Record<string, unknown>>): Invocation<F, S, D> {
  const known = new Map(f.args.filter((a) => !a.cliOnly).map((a) => [a.name, a]));
  for (const k of Object.keys(args)) {
    if (!known.has(k)) throw new StellaError('INVALID_ARGUMENT', `internal: ${kebab(f.name)} has no Dagger argument ${k}`);
  }
  const argv: string[] = [...CLI_ENTRY, kebab(f.name)];
  const secretEnv: { arg: string; env: string; value: S }[] = [];
  const mountedFiles: { arg: string; path: string; value: F }[] = [];
  const mountedDirectories: { arg: string; path: string; value: D }[] = [];
  for (const a of known.values()) {
    const v = args[a.name];
    if (v === undefined || v === null) {
      if (a.required) throw new StellaError('INVALID_ARGUMENT', `${kebab(f.name)} needs ${flag(a.name)}`);
      continue;
    }
    const bad = (want: string) => new StellaError('INVALID_ARGUMENT', `internal: ${kebab(f.name)} ${flag(a.name)} takes ${want}, got ${typeof v}`);
    switch (a.type) {
      case 'boolean':
        if (typeof v !== 'boolean') throw bad('a boolean');
        if (v) argv.push(flag(a.name));
        break;
      case 'integer':
        if (typeof v !== 'number' || !Number.isInteger(v)) throw bad('a whole number');
        argv.push(flag(a.name), String(v));
        break;
      case 'string':
        if (typeof v !== 'string') throw bad('a string');
        argv.push(flag(a.name), v);
        break;
      case 'secret': {
        const env = secretEnvName(a.name);
        secretEnv.push({ arg: a.name, env, value: v as S });
        argv.push(flag(a.name), `env:${env}`);
        break;
      }
      case 'file': {
        const path = `${FILE_MOUNTS}/${kebab(a.name)}`;
        mountedFiles.push({ arg: a.name, path, value: v as F });
        argv.push(flag(a.name), path);
        break;
      }
      case 'directory': {
        const path = `${DIRECTORY_MOUNTS}/${kebab(a.name)}`;
        mountedDirectories.push({ arg: a.name, path, value: v as D });
        argv.push(flag(a.name), path);
        break;
      }
    }
  }
  return { argv, secretEnv, mountedFiles, mountedDirectories };
}
