/**
 * The JavaScript build of the 11 services: one esbuild bundle per service
 * (platform node, target node24, ESM, minified, no source maps, deterministic) plus
 * build-info.json, healthcheck.js, the console UI and offline docs, and the seed
 * fixtures; `npmPackages` lists exactly the npm packages inside each bundle (for the SBOM).
 *
 *   node services/build.ts --out dist/app --version v1.2.3 --commit <40-hex> --date <ISO> [--services api,console]
 *
 * The images `COPY dist/app/<service>/ /app/` and run `/nodejs/bin/node /app/main.js`.
 */
import { build } from 'esbuild';
import { APP_SBOM_FILE, appSbomBytes } from '../ci/src/build/app-sbom.ts';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { StellaError } from '../ci/src/errors.ts';
import { selectServices } from '../ci/src/catalog/config.ts';

export interface BuiltNpmPackage {
  readonly name: string;
  readonly version: string;
  readonly license: string;
  readonly integrity?: string;
  /** The package directory relative to the repository root, e.g. `node_modules/pg`. */
  readonly path: string;
}

export interface BuiltService {
  readonly service: string;
  /** The output directory: copy it to /app in the image. */
  readonly dir: string;
  /** Files written, relative to `dir`, sorted. */
  readonly files: string[];
  readonly npmPackages: BuiltNpmPackage[];
  /** Bytes of main.js and of every file in `dir`. */
  readonly mainBytes: number;
  readonly totalBytes: number;
}

export interface BuildServicesOptions {
  readonly outDir: string;
  readonly version: string;
  readonly gitCommit: string;
  readonly buildDate: string;
  readonly services?: readonly string[];
}

/** A bundle above this size is reported (the target is ≤ 5 MB per service). */
export const SIZE_BUDGET_BYTES = 5 * 1024 * 1024;

const SERVICES_DIR = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(SERVICES_DIR, '..');

/** ESM bundles of CommonJS packages need `require` for Node built-ins. */
const BANNER = "import{createRequire as __stellaCreateRequire}from'node:module';const require=__stellaCreateRequire(import.meta.url);";

function healthcheckSource(port: number): string {
  return `// Exec-form HEALTHCHECK helper (the image has no shell or curl): GET /health/liveness
// (or /health/readiness with --readiness), exit 0 on 200, 1 otherwise.
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
const env = process.env;
function setting(key, fallback) {
  if (env[key]) return env[key];
  try { if (env[key + '_FILE']) return readFileSync(env[key + '_FILE'], 'utf8').replace(/\\r?\\n$/, ''); } catch {}
  try { return readFileSync((env.STELLA_CONFIG_DIR || '/etc/stella') + '/' + key, 'utf8').replace(/\\r?\\n$/, ''); } catch {}
  return fallback;
}
const port = Number(setting('STELLA_HTTP_PORT', '${port}'));
const path = process.argv.includes('--readiness') ? '/health/readiness' : '/health/liveness';
const req = request({ host: '127.0.0.1', port, path, timeout: 2500 }, (res) => {
  res.resume();
  process.exit(res.statusCode === 200 ? 0 : 1);
});
req.on('timeout', () => { req.destroy(); process.exit(1); });
req.on('error', () => process.exit(1));
req.end();
`;
}

function validate(o: BuildServicesOptions): void {
  if (!o.outDir) throw new StellaError('INVALID_ARGUMENT', 'buildServices: outDir is empty; expected a directory path');
  if (!o.version || /\s/.test(o.version)) throw new StellaError('INVALID_ARGUMENT', `buildServices: version ${JSON.stringify(o.version)} is empty or has whitespace; expected e.g. v1.2.3`);
  if (!/^[0-9a-f]{40}$/.test(o.gitCommit)) throw new StellaError('INVALID_ARGUMENT', `buildServices: gitCommit ${JSON.stringify(o.gitCommit)} is not 40 lowercase hex characters`);
  if (Number.isNaN(Date.parse(o.buildDate)) || !/^\d{4}-\d{2}-\d{2}T/.test(o.buildDate)) throw new StellaError('INVALID_ARGUMENT', `buildServices: buildDate ${JSON.stringify(o.buildDate)} is not an ISO 8601 date-time (e.g. 2026-01-31T12:00:00Z)`);
}

function copyTree(from: string, to: string, files: string[], base: string, filter: (name: string) => boolean = () => true): void {
  if (!existsSync(from)) return;
  for (const name of readdirSync(from).sort()) {
    const src = join(from, name);
    const dst = join(to, name);
    if (statSync(src).isDirectory()) copyTree(src, dst, files, base, filter);
    else if (filter(name)) {
      mkdirSync(to, { recursive: true });
      copyFileSync(src, dst);
      files.push(relative(base, dst).split(sep).join('/'));
    }
  }
}

type Lock = { packages?: Record<string, { integrity?: string; version?: string }> };

/** The npm packages whose files esbuild put into the bundle. */
function bundledPackages(inputs: readonly string[], lock: Lock): BuiltNpmPackage[] {
  const dirs = new Set<string>();
  for (const input of inputs) {
    const parts = input.split('/');
    const i = parts.lastIndexOf('node_modules');
    if (i < 0) continue;
    const n = parts[i + 1]?.startsWith('@') ? 2 : 1;
    dirs.add(parts.slice(0, i + 1 + n).join('/'));
  }
  const out: BuiltNpmPackage[] = [];
  for (const dir of [...dirs].sort()) {
    const pj = JSON.parse(readFileSync(join(REPO, dir, 'package.json'), 'utf8')) as { name: string; version: string; license?: string | { type?: string }; licenses?: { type?: string }[] };
    const license = typeof pj.license === 'string' ? pj.license : (pj.license?.type ?? pj.licenses?.map((l) => l.type).filter(Boolean).join(' OR ') ?? 'NOASSERTION');
    const integrity = lock.packages?.[dir]?.integrity;
    out.push({ name: pj.name, version: pj.version, license: license || 'NOASSERTION', ...(integrity ? { integrity } : {}), path: dir });
  }
  return out;
}

export async function buildServices(opts: BuildServicesOptions): Promise<BuiltService[]> {
  validate(opts);
  const services = selectServices(opts.services ?? []);
  const outDir = resolve(opts.outDir);
  const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as Lock;
  const results: BuiltService[] = [];
  for (const spec of services) {
    const dir = join(outDir, spec.name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const entry = join(SERVICES_DIR, 'src', spec.name, 'main.ts');
    let metafile;
    try {
      const r = await build({
        entryPoints: [entry],
        outfile: join(dir, 'main.js'),
        absWorkingDir: REPO,
        bundle: true,
        platform: 'node',
        target: 'node24',
        format: 'esm',
        minify: true,
        sourcemap: false,
        legalComments: 'eof',
        metafile: true,
        logLevel: 'silent',
        banner: { js: BANNER },
        // Optional native and cloud add-ons pg tries to load lazily; they are not installed.
        external: ['pg-native', 'cloudflare:sockets'],
        define: { 'process.env.NODE_ENV': '"production"' },
      });
      metafile = r.metafile;
    } catch (e) {
      throw new StellaError('BUILD_FAILED', `esbuild of ${spec.name} (${relative(REPO, entry)}) failed: ${(e as Error).message}`, { cause: e });
    }
    const files = ['main.js'];
    const info = { service: spec.name, version: opts.version, gitCommit: opts.gitCommit, buildDate: opts.buildDate };
    writeFileSync(join(dir, 'build-info.json'), `${JSON.stringify(info, null, 2)}\n`);
    files.push('build-info.json');
    writeFileSync(join(dir, 'healthcheck.js'), healthcheckSource(spec.http.port));
    files.push('healthcheck.js');
    // ESM without a package.json "type": the .js files must be read as modules.
    writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name: `@stellaops/${spec.name}`, version: opts.version.replace(/^v/, ''), private: true, type: 'module' }, null, 2)}\n`);
    files.push('package.json');
    if (spec.name === 'console') {
      copyTree(join(SERVICES_DIR, 'src', 'console', 'ui'), join(dir, 'ui'), files, dir);
      copyTree(join(REPO, 'docs', 'install'), join(dir, 'docs', 'install'), files, dir, (n) => n.endsWith('.md'));
    }
    if (spec.name === 'api') copyTree(join(SERVICES_DIR, 'seed'), join(dir, 'seed'), files, dir);
    if (spec.name === 'conseiller') copyTree(join(SERVICES_DIR, 'seed'), join(dir, 'seed'), files, dir, (n) => n === 'advisories.json');
    if (spec.name === 'excitator') copyTree(join(SERVICES_DIR, 'seed'), join(dir, 'seed'), files, dir, (n) => n === 'vex.json');
    const npmPackages = bundledPackages(Object.keys(metafile.inputs), lock);
    // The application SBOM, baked into the image at /app/sbom.spdx.json by every build path
    // (our builder and plain BuildKit both copy this directory).
    writeFileSync(join(dir, APP_SBOM_FILE), appSbomBytes(spec.name, npmPackages, opts));
    files.push(APP_SBOM_FILE);
    files.sort();
    const mainBytes = statSync(join(dir, 'main.js')).size;
    const totalBytes = files.reduce((n, f) => n + statSync(join(dir, f)).size, 0);
    results.push({ service: spec.name, dir, files, npmPackages, mainBytes, totalBytes });
  }
  return results;
}

async function cli(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { out: { type: 'string' }, version: { type: 'string' }, commit: { type: 'string' }, date: { type: 'string' }, services: { type: 'string' } },
    strict: true,
  });
  const built = await buildServices({
    outDir: values.out ?? 'dist/app',
    version: values.version ?? '',
    gitCommit: values.commit ?? '',
    buildDate: values.date ?? '',
    ...(values.services ? { services: values.services.split(',') } : {}),
  });
  let over = 0;
  for (const b of built) {
    const mb = (b.totalBytes / 1024 / 1024).toFixed(2);
    const flag = b.totalBytes > SIZE_BUDGET_BYTES ? '  OVER the 5 MB budget' : '';
    if (flag) over++;
    process.stdout.write(`${b.service.padEnd(13)} ${mb} MB  main.js ${(b.mainBytes / 1024).toFixed(0)} KiB  ${b.npmPackages.length} npm packages  ${relative(process.cwd(), b.dir)}${flag}\n`);
  }
  return over ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  cli(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`build: ${(e as Error).message}\n`);
      process.exit(1);
    },
  );
}
