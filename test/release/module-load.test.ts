/**
 * `dagger call` loads this module as Dagger 0.21's TypeScript runtime does (../shared/guide/DAGGER.md),
 * proved as far as it can be without an engine:
 *
 *   - only `ci/` is copied, to `<tmp>/src/ci` (the runtime copies only the module source to /src/ci);
 *   - its dependencies are installed with `npm ci` from ci/package-lock.json alone (the runtime uses
 *     the lock and `packageManager`; nothing from the repository root is there);
 *   - the module is loaded with tsx 4.15.6 (the version the runtime bundles), `--tsconfig
 *     <tmp>/src/ci/tsconfig.json`, importing every .ts file under src/ as the runtime does;
 *   - the @dagger.io/dagger introspector (`scan`, the same code the runtime's introspection runs,
 *     with its own compiler options: experimentalDecorators, Node10 resolution, ES2022) reads the
 *     decorated class; its functions, argument names, types, optionality, return types and cache
 *     policies must equal the one definition in ci/src/functions.ts.
 *
 * The generated client the runtime passes to the introspector is stood in for by the SDK's
 * published `client.gen.d.ts` (this module has no module dependencies, so the generated client
 * is the stock API of the same version); tsx and npm come from the npm registry into the
 * temporary root, never into the repository.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { daggerArgs, functions, type ArgType, type FunctionSpec } from '../../ci/src/functions.ts';

const ROOT = resolve(import.meta.dirname, '../..');
/** The tsx the Dagger 0.21 TypeScript runtime bundles (DAGGER.md, read from sdk/typescript/runtime at v0.21.8). */
const RUNTIME_TSX = '4.15.6';

interface TypeDef { kind: string; name?: string }
interface IntrospectedArg { name: string; type: TypeDef; isOptional: boolean; defaultPath?: string; ignore?: string[] }
interface IntrospectedFn { name: string; cache?: string; returnType: TypeDef; arguments: IntrospectedArg[] }
interface Introspected { objects: string[]; constructorArgs: IntrospectedArg[]; functions: IntrospectedFn[] }

const INTROSPECT = `
import { pathToFileURL } from 'node:url';
const [ciDir, client] = process.argv.slice(2);
const sdk = ciDir + '/node_modules/@dagger.io/dagger/dist/src/module';
const { scan } = await import(pathToFileURL(sdk + '/introspector/index.js').href);
const { listFiles } = await import(pathToFileURL(sdk + '/introspector/utils/files.js').href);
// As the runtime's entrypoint: every .ts file under src/ is imported (loadModule) and introspected.
const files = [...(await listFiles(ciDir + '/src')), client];
const mod = await scan(files, 'stella', true);
const args = (a) => Object.values(a).map((x) => ({ name: x.name, type: x.type, isOptional: x.isOptional, defaultPath: x.defaultPath, ignore: x.ignore }));
const objects = Object.values(mod.objects);
const stella = mod.objects.Stella;
process.stdout.write(JSON.stringify({
  objects: objects.map((o) => o.name),
  constructorArgs: stella ? args(stella._constructor.arguments) : [],
  functions: stella ? Object.values(stella.methods).map((f) => ({ name: f.name, cache: f.cache, returnType: f.returnType, arguments: args(f.arguments) })) : [],
}));
`;

const TYPE: Record<ArgType, TypeDef> = {
  string: { kind: 'STRING_KIND' },
  boolean: { kind: 'BOOLEAN_KIND' },
  integer: { kind: 'INTEGER_KIND' },
  file: { kind: 'OBJECT_KIND', name: 'File' },
  secret: { kind: 'OBJECT_KIND', name: 'Secret' },
  directory: { kind: 'OBJECT_KIND', name: 'Directory' },
};

function expectedReturn(f: FunctionSpec): TypeDef {
  return f.dagger.kind === 'generate' || f.dagger.kind === 'toolbox-directory' ? TYPE.directory : TYPE.string;
}

let tmp = '';
let ci = '';
let result: Introspected;
let stderr = '';

const run = (cmd: string, args: string[], cwd: string, timeout = 600_000) =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout, env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' } });

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'stella-module-load-'));
  ci = join(tmp, 'src', 'ci');
  // What the runtime copies: the module source (dagger.json "source": "ci"), nothing else.
  cpSync(join(ROOT, 'ci'), ci, { recursive: true, filter: (p) => !relative(join(ROOT, 'ci'), p).split('/').includes('node_modules') });
  run('npm', ['ci', '--ignore-scripts'], ci);
  const tools = join(tmp, 'tools');
  mkdirSync(tools);
  writeFileSync(join(tools, 'package.json'), '{"private":true}\n');
  run('npm', ['install', '--ignore-scripts', '--no-save', `tsx@${RUNTIME_TSX}`], tools);
  copyFileSync(join(ci, 'node_modules/@dagger.io/dagger/dist/src/api/client.gen.d.ts'), join(tmp, 'client.gen.ts'));
  writeFileSync(join(tmp, 'introspect.mts'), INTROSPECT);
  const tsx = join(tools, 'node_modules/tsx/dist/cli.mjs');
  try {
    const out = execFileSync(process.execPath, [tsx, '--tsconfig', join(ci, 'tsconfig.json'), join(tmp, 'introspect.mts'), ci, join(tmp, 'client.gen.ts')], {
      cwd: ci,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 300_000,
    });
    result = JSON.parse(out) as Introspected;
  } catch (e) {
    stderr = String((e as { stderr?: string }).stderr ?? e);
    throw new Error(`the module did not load under tsx ${RUNTIME_TSX} from a copy of ci/ alone:\n${stderr}`);
  }
}, 900_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('ci/ is a self-contained module', () => {
  it('its tsconfig extends nothing (the runtime has nothing outside ci/)', () => {
    const tsconfig = JSON.parse(readFileSync(join(ROOT, 'ci/tsconfig.json'), 'utf8')) as Record<string, unknown>;
    expect(tsconfig.extends).toBeUndefined();
    expect((tsconfig.compilerOptions as Record<string, unknown>).experimentalDecorators).toBe(true);
  });

  it('pins npm with a lock file, and every dependency exactly', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'ci/package.json'), 'utf8')) as { packageManager?: string; dependencies: Record<string, string>; devDependencies?: Record<string, string> };
    expect(pkg.packageManager).toMatch(/^npm@\d+\.\d+\.\d+$/);
    expect(existsSync(join(ROOT, 'ci/package-lock.json'))).toBe(true);
    const lock = JSON.parse(readFileSync(join(ROOT, 'ci/package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> };
    for (const [name, spec] of Object.entries({ ...pkg.dependencies, ...pkg.devDependencies })) {
      expect(spec, name).toMatch(/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/);
      expect(lock.packages[`node_modules/${name}`]?.version, `${name} in ci/package-lock.json`).toBe(spec);
    }
  });
});

describe(`the module loads from a copy of ci/ alone (tsx ${RUNTIME_TSX}, npm ci from its own lock) and introspects as functions.ts defines it`, () => {
  it('has one object, Stella, whose constructor takes the source Directory from the context', () => {
    expect(result.objects).toEqual(['Stella']);
    expect(result.constructorArgs).toEqual([{ name: 'source', type: TYPE.directory, isOptional: false, defaultPath: '/', ignore: ['node_modules', 'dist', 'test-results'] }]);
  });

  it('has exactly the defined functions, in order', () => {
    expect(result.functions.map((f) => f.name)).toEqual(functions.map((f) => f.name));
  });

  for (const f of functions) {
    it(`${f.name}: arguments, types, optionality, return type and cache policy`, () => {
      const got = result.functions.find((x) => x.name === f.name);
      expect(got, f.name).toBeDefined();
      expect(got!.arguments.map((a) => ({ name: a.name, type: a.type, isOptional: a.isOptional }))).toEqual(
        daggerArgs(f).map((a) => ({ name: a.name, type: TYPE[a.type], isOptional: !a.required })),
      );
      expect(got!.returnType).toEqual(expectedReturn(f));
      expect(got!.cache).toBe(f.cache);
    });
  }
});
