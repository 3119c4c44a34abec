/**
 * The pipeline's functions as the CLI exposes them. The Dagger module (index.ts)
 * exposes the same functions, with the same names and arguments; a test reads
 * index.ts and fails when the two drift apart.
 *
 * Names are camelCase here, as in TypeScript; both front ends show them in
 * kebab-case (`dagger call build-base`, `stella-release build-base`).
 */
import { catalog, assertValidCatalog } from './catalog/index.ts';
import { planTags } from './tags/index.ts';
import { checkGenerated, writeGenerated } from './generate/index.ts';
import { StellaError } from './errors.ts';

export type ArgType = 'string' | 'boolean' | 'integer' | 'directory' | 'file' | 'secret';

export interface ArgSpec {
  readonly name: string;
  readonly type: ArgType;
  readonly description: string;
  readonly required?: boolean;
  /** Only in the CLI (e.g. `--output FILE`): Dagger returns the value instead. */
  readonly cliOnly?: boolean;
}

/** Values of parsed arguments; secrets arrive already resolved, never printed. */
export type Args = Readonly<Record<string, string | boolean | number | undefined>>;

export interface Io {
  /** The repository checkout the function works on (CLI: --source or the current directory; Dagger: the module's source Directory). */
  readonly source: string;
  /** Progress for humans; goes to stderr so that stdout stays machine-readable. */
  progress(line: string): void;
}

export interface FunctionSpec {
  readonly name: string;
  readonly description: string;
  readonly args: readonly ArgSpec[];
  /** Returns what the function prints on stdout (JSON for documents). */
  run(args: Args, io: Io): Promise<string>;
}

export const functions: readonly FunctionSpec[] = [
  {
    name: 'catalog',
    description: 'Print the service catalog (services, support services, every configuration key) as JSON.',
    args: [],
    async run() {
      assertValidCatalog(catalog);
      return JSON.stringify(catalog, null, 2);
    },
  },
  {
    name: 'tags',
    description: 'Print the tags a version publishes, as JSON; refuses versions outside the tag scheme.',
    args: [
      { name: 'version', type: 'string', required: true, description: 'vX.Y.Z, vX.Y.Z-rc.N, edge or nightly' },
      { name: 'ref', type: 'string', description: 'git ref of the build (refs/tags/vX.Y.Z, refs/heads/main); must agree with the version' },
      { name: 'date', type: 'string', description: 'build date for nightly tags (YYYY-MM-DD or ISO-8601, UTC); defaults to now' },
    ],
    async run(a) {
      const plan = planTags({ version: String(a.version), ref: a.ref as string | undefined, date: a.date as string | undefined });
      return JSON.stringify(plan, null, 2);
    },
  },
  {
    name: 'generate',
    description: 'Regenerate every file derived from the catalog (docs tables, Dockerfiles, compose, chart values); with --check, only report drift and fail on it.',
    args: [{ name: 'check', type: 'boolean', description: 'fail, listing the files, when a generated file differs from what the catalog gives' }],
    async run(a, io) {
      if (a.check) {
        const drift = checkGenerated(io.source);
        if (drift.length) {
          throw new StellaError('CATALOG_INVALID', `generated files differ from the catalog (run \`npm run generate\`):\n  - ${drift.join('\n  - ')}`);
        }
        return JSON.stringify({ upToDate: true }, null, 2);
      }
      return JSON.stringify({ written: writeGenerated(io.source) }, null, 2);
    },
  },
];

export function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
