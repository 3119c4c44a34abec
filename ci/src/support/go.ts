/**
 * Go binaries of the support images, cross-compiled natively (no emulation):
 * `CGO_ENABLED=0 GOOS=linux GOARCH=<arch> go build -trimpath -ldflags="-s -w -buildid="`
 * in a wrapper module under tools/ whose go.mod/go.sum pin every module, with
 * `-mod=readonly` and the pinned toolchain. Reproducible: the same module
 * graph, toolchain and flags give the same bytes; the inputs lock records
 * their sha256.
 *
 * Cache (a warm run compiles nothing):
 *   <cacheDir>/go/<id>/<key>/<id>-linux-<arch>, key = sha256(go.mod, go.sum, package, flags, toolchain)
 * Go's own caches: GOMODCACHE and GOCACHE default to /var/cache/stella-tools/go/pkg/mod
 * and /var/cache/stella-tools/go-build (STELLA_GOMODCACHE / STELLA_GOCACHE override).
 * Builds run under `nice -n 19` with GOMAXPROCS=1 and `-p 1` unless STELLA_GO_PARALLEL is set.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StellaError } from '../errors.ts';
import { run } from '../base/exec.ts';
import { BASE_PLATFORMS } from '../base/pin.ts';
import type { PlatformName } from '../oci/types.ts';
import type { GoBinary } from './recipes.ts';

/** The Go toolchain the support binaries are built with (the go command fetches it from the proxy if the host's differs). */
export const GO_TOOLCHAIN = 'go1.26.8';
export const GO_LDFLAGS = '-s -w -buildid=';

export function goEnv(): NodeJS.ProcessEnv {
  const parallel = process.env.STELLA_GO_PARALLEL === '1';
  return {
    ...process.env,
    GOMODCACHE: process.env.STELLA_GOMODCACHE || '/var/cache/stella-tools/go/pkg/mod',
    GOCACHE: process.env.STELLA_GOCACHE || '/var/cache/stella-tools/go-build',
    GOFLAGS: '-buildvcs=false -mod=readonly',
    GOTOOLCHAIN: GO_TOOLCHAIN,
    GOPROXY: process.env.GOPROXY || 'https://proxy.golang.org,direct',
    CGO_ENABLED: '0',
    GOOS: 'linux',
    ...(parallel ? {} : { GOMAXPROCS: '1' }),
  };
}

export interface GoModule {
  readonly path: string;
  readonly version: string;
  /** The go.sum `h1:` hash (a module content hash, not a file checksum). */
  readonly sum?: string;
}

export interface GoBuildInfo {
  readonly goVersion: string;
  readonly path: string;
  readonly main: GoModule;
  readonly deps: readonly GoModule[];
  readonly settings: Readonly<Record<string, string>>;
}

/** Parses `go version -m <binary>`. A `=>` line replaces the module above it (the replacement is what was built). */
export function parseGoVersionM(text: string, what: string): GoBuildInfo {
  const lines = text.split('\n');
  const head = /^[^:]+: (go\S+)$/.exec(lines[0] ?? '');
  if (!head) throw new StellaError('BUILD_FAILED', `${what}: go version -m printed no Go version: ${lines[0] ?? ''}`);
  let path = '';
  let main: GoModule | undefined;
  const deps: GoModule[] = [];
  const settings: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const f = line.replace(/^\t/, '').split('\t');
    if (f[0] === 'path') path = f[1] ?? '';
    else if (f[0] === 'mod') main = { path: f[1]!, version: f[2]!, ...(f[3] ? { sum: f[3] } : {}) };
    else if (f[0] === 'dep') deps.push({ path: f[1]!, version: f[2]!, ...(f[3] ? { sum: f[3] } : {}) });
    else if (f[0] === '=>' && deps.length > 0) deps[deps.length - 1] = { path: f[1]!, version: f[2]!, ...(f[3] ? { sum: f[3] } : {}) };
    else if (f[0] === 'build') {
      const kv = f[1] ?? '';
      const i = kv.indexOf('=');
      if (i > 0) settings[kv.slice(0, i)] = kv.slice(i + 1);
    }
  }
  if (!main) throw new StellaError('BUILD_FAILED', `${what}: go version -m printed no main module`);
  return { goVersion: head[1]!, path, main, deps, settings };
}

export async function readGoBuildInfo(binary: string): Promise<GoBuildInfo> {
  const { stdout } = await run('go', ['version', '-m', binary], { env: goEnv(), code: 'BUILD_FAILED' });
  return parseGoVersionM(stdout, binary);
}

export interface BuiltGoBinary {
  readonly file: string;
  readonly sha256: string;
  readonly size: number;
  readonly compiled: boolean;
  readonly info: GoBuildInfo;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

function sha256(b: Uint8Array | string): string {
  return createHash('sha256').update(b).digest('hex');
}

/** The sha256 of the wrapper module's go.sum (recorded in the inputs lock). */
export async function goSumDigest(source: string, bin: GoBinary): Promise<string> {
  return sha256(await readFile(join(resolve(source), bin.moduleDir, 'go.sum')));
}

/** Where the cache keeps one binary: keyed by go.mod, go.sum, package, flags and toolchain. */
export async function goBinaryCachePath(source: string, bin: GoBinary, platform: PlatformName, cacheDir: string): Promise<{ dir: string; file: string; moduleDir: string; arch: string }> {
  const moduleDir = join(resolve(source), bin.moduleDir);
  const goMod = await readFile(join(moduleDir, 'go.mod'));
  const goSum = await readFile(join(moduleDir, 'go.sum'));
  const arch = BASE_PLATFORMS[platform].ociArch;
  // Our own modules' sources count too (bin.sources); the wrapper modules' key stays go.mod + go.sum.
  const sources = await Promise.all((bin.sources ?? []).map(async (f) => `${f}:${sha256(await readFile(join(moduleDir, f)))}`));
  const key = sha256(JSON.stringify([sha256(goMod), sha256(goSum), bin.pkg, GO_LDFLAGS, '-trimpath', GO_TOOLCHAIN, 'CGO_ENABLED=0', ...sources])).slice(0, 16);
  const dir = join(cacheDir, 'go', bin.id, key);
  return { dir, file: join(dir, `${bin.id}-linux-${arch}`), moduleDir, arch };
}

/** Builds (or finds in the cache) one Go binary for one platform. */
export async function buildGoBinary(source: string, bin: GoBinary, platform: PlatformName, cacheDir: string, log: (l: string) => void): Promise<BuiltGoBinary> {
  const { dir, file, moduleDir, arch } = await goBinaryCachePath(source, bin, platform, cacheDir);
  let compiled = false;
  if (!(await exists(file))) {
    await mkdir(dir, { recursive: true });
    const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
    const t0 = performance.now();
    log(`go build ${bin.pkg} (${bin.moduleDir}) for linux/${arch}: compiling (cached afterwards under ${dir})`);
    const args = ['-n', '19', 'go', 'build', ...(process.env.STELLA_GO_PARALLEL === '1' ? [] : ['-p', '1']), '-trimpath', `-ldflags=${GO_LDFLAGS}`, '-o', tmp, bin.pkg];
    try {
      await run('nice', args, { cwd: moduleDir, env: { ...goEnv(), GOARCH: arch }, timeoutMs: 4 * 3600_000, code: 'BUILD_FAILED' });
      await rename(tmp, file);
    } finally {
      await rm(tmp, { force: true });
    }
    compiled = true;
    log(`go build ${bin.id} linux/${arch}: ${((performance.now() - t0) / 1000).toFixed(0)}s`);
  }
  const bytes = await readFile(file);
  const info = await readGoBuildInfo(file);
  if (info.settings.GOARCH !== arch || info.settings.CGO_ENABLED !== '0') {
    throw new StellaError('BUILD_FAILED', `${file}: built for GOARCH=${info.settings.GOARCH} CGO_ENABLED=${info.settings.CGO_ENABLED} (expected ${arch}, 0)`);
  }
  return { file, sha256: sha256(bytes), size: bytes.byteLength, compiled, info };
}
