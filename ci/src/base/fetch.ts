/**
 * fetchBaseInputs: downloads (or finds in the cache) the inputs of the offline
 * Node base image and verifies them against the committed lock.
 *
 * - Debian .debs for each platform's architecture, with apt-get pointed at
 *   PRIVATE state, cache, list and sources directories under the cache dir and
 *   `-o APT::Architecture=<arch>`: the host's apt configuration and dpkg
 *   architectures are never changed (no `dpkg --add-architecture`). The mirror
 *   is the host's own (the sources file, default /etc/apt/sources.list.d/debian.sources,
 *   is copied as is, signatures checked with its Signed-By keyring).
 * - The Node binary tarball from npm: `npm pack node-linux-<arch>@<pin>` (npm
 *   checks the registry integrity); the pin comes from the root package.json.
 *
 * Cache layout: <cacheDir>/<debArch>/debs/*.deb, <cacheDir>/<debArch>/npm/*.tgz,
 * <cacheDir>/apt/<debArch>/ (apt's private state). A file already in the cache
 * is used without network when its sha256 matches the lock; a mismatch fails
 * (LOCK_MISMATCH) naming the file, the expected and the actual sha256.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { StellaError } from '../errors.ts';
import { PLATFORMS, type PlatformName } from '../oci/types.ts';
import { run } from './exec.ts';
import { BASE_DEBIAN_PACKAGES, DEFAULT_LOCK_FILE, LOCK_COMMENT, readLock, writeLock, type BaseLock, type LockedDeb, type LockedNode, type LockedPlatform } from './lock.ts';
import { BASE_PLATFORMS, ROOT_PACKAGE_JSON, readNodePin } from './pin.ts';

export const DEFAULT_SOURCES_FILE = '/etc/apt/sources.list.d/debian.sources';

/** The default cache: ${STELLA_CACHE:-/var/tmp/stella-cache}/base. */
export function defaultBaseCacheDir(): string {
  return join(process.env.STELLA_CACHE || '/var/tmp/stella-cache', 'base');
}

export interface FetchBaseOptions {
  /** Where inputs are cached; default defaultBaseCacheDir(). */
  readonly cacheDir?: string;
  /** Default: both, in index order. */
  readonly platforms?: readonly PlatformName[];
  /** Default ci/src/base/base.lock.json. */
  readonly lockFile?: string;
  /** Resolve the newest candidates and the package.json pin, and rewrite the lock. Default false: verify against it. */
  readonly updateLock?: boolean;
  /** The apt sources (deb822) whose mirror is used; default /etc/apt/sources.list.d/debian.sources. */
  readonly sourcesFile?: string;
  /** The package.json that pins Node; default the repository root's. */
  readonly packageJson?: string;
  readonly log?: (line: string) => void;
  /**
   * When the mirror no longer offers a locked version (and the cache lacks it):
   * `fail` (default: LOCK_STALE, a release stays exactly what the lock says), or
   * `refresh` (for the tests and local edge builds: resolve current versions into a
   * refreshed lock in the CACHE — `<cacheDir>/refreshed-locks/` — and use it, with a
   * warning; the given lock, e.g. the committed one, is never rewritten).
   * Default from STELLA_BASE_LOCK_POLICY=refresh-if-unavailable, except for a
   * versioned release (`releaseVersion` vX.Y.Z or vX.Y.Z-rc.N), which always fails.
   */
  readonly whenUnavailable?: 'fail' | 'refresh';
  /** The version being released: a versioned one (not edge/nightly) never refreshes the lock. */
  readonly releaseVersion?: string;
}

export const LOCK_POLICY_ENV = 'STELLA_BASE_LOCK_POLICY';

/** What to run (and commit) when the mirror has dropped a locked version. */
export const REFRESH_LOCK_COMMAND = 'npm run -s stella-release -- build-base --update-lock --oci-layout "$(mktemp -d)/base" && git add ci/src/base/base.lock.json && git commit';

/** vX.Y.Z and vX.Y.Z-rc.N are versioned releases: their base is exactly the committed lock's. */
export function isVersionedRelease(version: string | undefined): boolean {
  return version !== undefined && /^v\d+\.\d+\.\d+(-rc\.\d+)?$/.test(version);
}

/** The policy fetchBaseInputs applies (see FetchBaseOptions.whenUnavailable). */
export function lockPolicy(opts: Pick<FetchBaseOptions, 'whenUnavailable' | 'releaseVersion'> = {}): 'fail' | 'refresh' {
  if (isVersionedRelease(opts.releaseVersion)) return 'fail';
  return opts.whenUnavailable ?? (process.env[LOCK_POLICY_ENV] === 'refresh-if-unavailable' ? 'refresh' : 'fail');
}

/** Where the refreshed lock derived from `lockFile` lives: in the cache, keyed by that lock's content. */
export async function refreshedLockFile(cacheDir: string, lockFile: string): Promise<string> {
  const key = createHash('sha256').update(await readFile(lockFile)).digest('hex').slice(0, 16);
  return join(cacheDir, 'refreshed-locks', `base.lock.${key}.json`);
}

export interface PlatformInputs {
  readonly node: string;
  /** .deb paths in extraction order. */
  readonly debs: readonly string[];
  readonly locked: LockedPlatform;
}

export interface BaseInputs {
  readonly cacheDir: string;
  readonly lockFile: string;
  readonly lock: BaseLock;
  readonly platforms: Partial<Record<PlatformName, PlatformInputs>>;
  /** Files that were downloaded by this call (empty when all came from the cache). */
  readonly downloaded: readonly string[];
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

function mismatch(what: string, file: string, expected: string, got: string): StellaError {
  return new StellaError(
    'LOCK_MISMATCH',
    `base input ${what} (${file}) does not match the lock: expected sha256 ${expected}, got ${got}. ` +
      'Delete the cached file to download it again, or refresh the lock deliberately with updateLock (--update-lock).',
  );
}

/** Private apt invocation for one architecture. */
export class PrivateApt {
  readonly arch: string;
  readonly dir: string;
  readonly sourcesFile: string;
  private updated = false;

  constructor(cacheDir: string, arch: string, sourcesFile: string) {
    this.arch = arch;
    this.dir = join(cacheDir, 'apt', arch);
    this.sourcesFile = sourcesFile;
  }

  /** The apt options of this private state (also for apt-cache). */
  options(): string[] {
    const d = this.dir;
    return [
      '-o', `APT::Architecture=${this.arch}`,
      '-o', `APT::Architectures=${this.arch}`,
      '-o', `Dir::State=${d}/state`,
      '-o', `Dir::State::Lists=${d}/lists`,
      '-o', `Dir::State::status=${d}/status`,
      '-o', `Dir::Cache=${d}/cache`,
      '-o', 'Dir::Etc::SourceList=/dev/null',
      '-o', `Dir::Etc::SourceParts=${d}/sources.list.d`,
      '-o', 'Dir::Etc::Preferences=/dev/null',
      '-o', `Dir::Etc::PreferencesParts=${d}/preferences.d`,
      '-o', 'Debug::NoLocking=1',
      '-o', 'APT::Sandbox::User=root',
      '-o', 'Acquire::Retries=3',
      '-q',
    ];
  }

  async update(): Promise<void> {
    if (this.updated) return;
    for (const sub of ['state', 'lists/partial', 'cache/archives/partial', 'sources.list.d', 'preferences.d']) await mkdir(join(this.dir, sub), { recursive: true });
    await writeFile(join(this.dir, 'status'), '');
    await copyFile(this.sourcesFile, join(this.dir, 'sources.list.d', basename(this.sourcesFile)));
    await run('apt-get', [...this.options(), 'update'], { timeoutMs: 300_000 });
    this.updated = true;
  }

  /** `apt-get download --print-uris`: filename, size and sha256 apt expects. */
  async resolve(spec: string): Promise<{ filename: string; size: number; sha256: string }> {
    await this.update();
    const { stdout } = await run('apt-get', [...this.options(), 'download', '--print-uris', spec]);
    const m = /^'[^']+' (\S+) (\d+) SHA256:([a-f0-9]{64})$/m.exec(stdout);
    if (!m) throw new StellaError('FETCH_FAILED', `apt-get (${this.arch}) cannot resolve ${spec}: ${stdout.trim() || 'no candidate'}`);
    return { filename: m[1]!, size: Number(m[2]), sha256: m[3]! };
  }

  async download(spec: string, into: string): Promise<void> {
    await this.update();
    await run('apt-get', [...this.options(), 'download', spec], { cwd: into, timeoutMs: 600_000 });
  }
}

export async function debFields(path: string): Promise<Record<string, string>> {
  const { stdout } = await run('dpkg-deb', ['-f', path, 'Package', 'Version', 'Architecture', 'Source'], { code: 'BUILD_FAILED' });
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

async function sourcesOf(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  const out: string[] = [];
  for (const para of text.split(/\n\s*\n/)) {
    const uris = /^URIs:\s*(.+)$/m.exec(para)?.[1]?.trim();
    const suites = /^Suites:\s*(.+)$/m.exec(para)?.[1]?.trim();
    const comps = /^Components:\s*(.+)$/m.exec(para)?.[1]?.trim();
    if (uris && suites) out.push(`${uris} ${suites}${comps ? ` ${comps}` : ''}`);
  }
  return out;
}

/**
 * Downloads or finds every input of the base and verifies it against the lock.
 * A Debian mirror is not a snapshot: superseded versions disappear (tzdata from
 * bookworm-updates within weeks). By default that fails (LOCK_STALE); with the
 * `refresh` policy the lock is refreshed instead, and the log says so.
 */
export async function fetchBaseInputs(opts: FetchBaseOptions = {}): Promise<BaseInputs> {
  const policy = lockPolicy(opts);
  try {
    return await fetchOnce(opts);
  } catch (e) {
    if (!(e instanceof StellaError && e.code === 'LOCK_STALE') || policy !== 'refresh' || opts.updateLock) throw e;
    const cacheDir = opts.cacheDir ?? defaultBaseCacheDir();
    const lockFile = opts.lockFile ?? DEFAULT_LOCK_FILE;
    const refreshed = await refreshedLockFile(cacheDir, lockFile);
    (opts.log ?? (() => {}))(
      `warning: ${e.message.split('; ')[0]}; using a refreshed lock ${refreshed} outside the work tree (${LOCK_POLICY_ENV}=refresh-if-unavailable); ` +
        `${lockFile} is unchanged, and a versioned release fails until it is refreshed: ${REFRESH_LOCK_COMMAND}`,
    );
    if (await exists(refreshed)) {
      try {
        return await fetchOnce({ ...opts, lockFile: refreshed });
      } catch (again) {
        if (!(again instanceof StellaError && again.code === 'LOCK_STALE')) throw again;
      }
    } else {
      // Seeded with the given lock: platforms not fetched now keep their entries.
      await mkdir(join(cacheDir, 'refreshed-locks'), { recursive: true });
      await copyFile(lockFile, `${refreshed}.tmp-${process.pid}`);
      await rename(`${refreshed}.tmp-${process.pid}`, refreshed);
    }
    return fetchOnce({ ...opts, lockFile: refreshed, updateLock: true });
  }
}

async function fetchOnce(opts: FetchBaseOptions): Promise<BaseInputs> {
  const cacheDir = opts.cacheDir ?? defaultBaseCacheDir();
  const lockFile = opts.lockFile ?? DEFAULT_LOCK_FILE;
  const platforms = PLATFORMS.filter((p) => (opts.platforms ?? PLATFORMS).includes(p));
  for (const p of opts.platforms ?? []) {
    if (!(PLATFORMS as readonly string[]).includes(p)) throw new StellaError('INVALID_ARGUMENT', `base platform ${p} is not supported (expected one of ${PLATFORMS.join(', ')})`);
  }
  const sourcesFile = opts.sourcesFile ?? DEFAULT_SOURCES_FILE;
  const update = opts.updateLock ?? false;
  const log = opts.log ?? (() => {});
  const pin = await readNodePin(opts.packageJson ?? ROOT_PACKAGE_JSON);
  const existing = await readLock(lockFile);
  if (!existing && !update) {
    throw new StellaError('LOCK_MISMATCH', `base lock ${lockFile} is missing: create it deliberately with updateLock (--update-lock)`);
  }
  const downloaded: string[] = [];
  const result: Partial<Record<PlatformName, PlatformInputs>> = {};
  const newPlatforms: Partial<Record<PlatformName, LockedPlatform>> = { ...(existing?.platforms ?? {}) };

  for (const platform of platforms) {
    const { debArch, nodePackage } = BASE_PLATFORMS[platform];
    const locked = update ? undefined : existing?.platforms[platform];
    if (!update && !locked) {
      throw new StellaError('LOCK_MISMATCH', `base lock ${lockFile} has no entry for ${platform}: add it deliberately with updateLock (--update-lock)`);
    }
    const archDir = join(cacheDir, debArch);
    const debDir = join(archDir, 'debs');
    const npmDir = join(archDir, 'npm');
    await mkdir(debDir, { recursive: true });
    await mkdir(npmDir, { recursive: true });

    // --- Node from npm ---
    if (locked && locked.node.version !== pin) {
      throw new StellaError(
        'LOCK_MISMATCH',
        `base lock ${lockFile}: ${platform} pins ${locked.node.package}@${locked.node.version} but package.json pins ${pin} (expected the same): refresh the lock with updateLock (--update-lock)`,
      );
    }
    let node: LockedNode;
    const nodeFile = join(npmDir, `${nodePackage}-${pin}.tgz`);
    if (locked && (await exists(nodeFile))) {
      const got = await sha256File(nodeFile);
      if (got !== locked.node.sha256) throw mismatch(`${nodePackage}@${pin}`, nodeFile, locked.node.sha256, got);
      node = locked.node;
    } else {
      log(`npm pack ${nodePackage}@${pin}`);
      const tmp = join(npmDir, `.tmp-${randomBytes(6).toString('hex')}`);
      await mkdir(tmp);
      try {
        const { stdout } = await run('npm', ['pack', `${nodePackage}@${pin}`, '--pack-destination', tmp, '--json', '--ignore-scripts'], { cwd: tmp, timeoutMs: 600_000 });
        const info = (JSON.parse(stdout) as { filename: string; integrity: string; name: string; version: string }[])[0];
        if (!info || info.name !== nodePackage || info.version !== pin) {
          throw new StellaError('FETCH_FAILED', `npm pack ${nodePackage}@${pin}: unexpected result ${stdout.slice(0, 300)}`);
        }
        const packed = join(tmp, info.filename);
        const sha = await sha256File(packed);
        if (locked && sha !== locked.node.sha256) throw mismatch(`${nodePackage}@${pin} from npm`, packed, locked.node.sha256, sha);
        node = { package: nodePackage, version: pin, filename: basename(nodeFile), size: (await stat(packed)).size, sha256: sha, integrity: info.integrity };
        await rename(packed, nodeFile);
        downloaded.push(nodeFile);
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    }

    // --- Debian packages ---
    const apt = new PrivateApt(cacheDir, debArch, sourcesFile);
    const debs: LockedDeb[] = [];
    const debPaths: string[] = [];
    if (locked) {
      const names = locked.debs.map((d) => d.package).join(',');
      if (names !== BASE_DEBIAN_PACKAGES.join(',')) {
        throw new StellaError('LOCK_MISMATCH', `base lock ${lockFile}: ${platform} lists packages ${names} but the base needs ${BASE_DEBIAN_PACKAGES.join(',')}: refresh the lock with updateLock (--update-lock)`);
      }
    }
    for (const pkg of BASE_DEBIAN_PACKAGES) {
      const want = locked?.debs.find((d) => d.package === pkg);
      if (want) {
        if (want.filename.includes('/') || !want.filename.endsWith('.deb')) {
          throw new StellaError('UNSAFE_PATH', `base lock ${lockFile}: ${pkg} filename ${JSON.stringify(want.filename)} is not a plain .deb name`);
        }
        const path = join(debDir, want.filename);
        if (!(await exists(path))) {
          log(`apt-get download ${pkg}=${want.version} (${debArch})`);
          await downloadDeb(apt, `${pkg}=${want.version}`, debDir, want.filename);
          downloaded.push(path);
        }
        const got = await sha256File(path);
        if (got !== want.sha256) throw mismatch(`${pkg} ${want.version} ${want.architecture}`, path, want.sha256, got);
        debs.push(want);
        debPaths.push(path);
      } else {
        const r = await apt.resolve(pkg);
        const path = join(debDir, r.filename);
        if (!(await exists(path)) || (await sha256File(path)) !== r.sha256) {
          log(`apt-get download ${pkg} (${debArch})`);
          await downloadDeb(apt, pkg, debDir, r.filename);
          downloaded.push(path);
        }
        const got = await sha256File(path);
        if (got !== r.sha256) throw mismatch(`${pkg} (apt's index)`, path, r.sha256, got);
        const f = await debFields(path);
        if (f.Package !== pkg) throw new StellaError('FETCH_FAILED', `${path}: control says Package ${f.Package} (expected ${pkg})`);
        if (f.Architecture !== debArch && f.Architecture !== 'all') {
          throw new StellaError('FETCH_FAILED', `${path}: control says Architecture ${f.Architecture} (expected ${debArch} or all)`);
        }
        debs.push({
          package: pkg,
          version: f.Version ?? '',
          architecture: f.Architecture ?? '',
          source: f.Source ?? pkg,
          filename: r.filename,
          size: (await stat(path)).size,
          sha256: got,
        });
        debPaths.push(path);
      }
    }
    const entry: LockedPlatform = { node, debs };
    newPlatforms[platform] = entry;
    result[platform] = { node: nodeFile, debs: debPaths, locked: entry };
  }

  let lock: BaseLock = existing ?? { lockVersion: 1, comment: LOCK_COMMENT, debian: { sources: [] }, platforms: {} };
  if (update) {
    lock = { lockVersion: 1, comment: LOCK_COMMENT, debian: { sources: await sourcesOf(sourcesFile) }, platforms: newPlatforms };
    await writeLock(lock, lockFile);
    lock = (await readLock(lockFile)) as BaseLock;
  }
  return { cacheDir, lockFile, lock, platforms: result, downloaded };
}

/** apt-get download into a temp dir, then rename into place: no partial file is ever in the cache. */
export async function downloadDeb(apt: PrivateApt, spec: string, debDir: string, filename: string): Promise<void> {
  const tmp = join(debDir, `.tmp-${randomBytes(6).toString('hex')}`);
  await mkdir(tmp);
  try {
    await apt.download(spec, tmp);
    const files = (await readdir(tmp)).filter((f) => f.endsWith('.deb'));
    // apt names files with the epoch's ":" as "%3a"; the lock keeps apt's --print-uris name.
    const got = files[0];
    if (files.length !== 1 || !got) throw new StellaError('FETCH_FAILED', `apt-get download ${spec} (${apt.arch}) produced ${files.length} files (expected 1: ${filename})`);
    await rename(join(tmp, got), join(debDir, filename));
  } catch (e) {
    if (e instanceof StellaError && e.code === 'FETCH_FAILED' && /Version '.*' for '.*' was not found|Unable to locate/.test(e.message)) {
      throw new StellaError(
        'LOCK_STALE',
        `base input ${spec} (${apt.arch}) is pinned by the lock but no longer offered by the mirror (${apt.sourcesFile}); ` +
          `refresh the lock and commit it: ${REFRESH_LOCK_COMMAND} (or restore the .deb into the cache, ${debDir}). apt said: ${e.message}`,
      );
    }
    throw e;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
