/**
 * The build's input cache: for each service, a key over everything its image is made from,
 * mapped to the image that was made from it (index and platform digests). A re-run whose keys
 * match, and whose registry still holds those digests, rebuilds and pushes nothing.
 *
 *   <file>   { "version": 1, "images": { "<service>": BuildCacheEntry } }
 *
 * (`release` keeps it at <out>/app/.stella-cache/build.json, beside the build context it describes.)
 *
 * Two keys per service, because the image is made in two stages:
 *
 *   js     the JavaScript build's inputs (services/build.ts writes dist/app/<service>/):
 *          the files it reads — the relative-import closure of services/src/<service>/main.ts
 *          and of services/build.ts (into ci/src too), everything else under services/ except
 *          node_modules and the other services' own folders (data the build copies: seed,
 *          console UI), JS_DATA_DIRS, the lock files and tsconfigs — their contents, with the
 *          version, commit and build date baked in and the Node version that runs it. When it
 *          matches and the bundle on disk is still the one recorded (its digest), the
 *          JavaScript build of that service does not run.
 *   image  the image's inputs: the digest of the build context its COPY instructions read, the
 *          Dockerfile, the base image (by digest), the platforms, the build arguments, the
 *          builder's own code (ci/src/build, ci/src/oci, the Dockerfile parser's version, the
 *          Node version: its zlib makes the gzip bytes) and the repository it is pushed to.
 *          When it matches and the registry holds the recorded index and platform manifests
 *          (HEAD each), the image is not assembled or pushed: the recorded digests are the result.
 *
 * Safe by construction: a key is a hash of contents, never of timestamps; any input the key
 * does not know forces a rebuild (a missing entry, a context that differs, a registry that lost
 * the image); a rebuild is reproducible, so a spurious miss costs time, never a different digest.
 * The file is written atomically after the build; entries of services not built this time stay.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join, posix, relative, resolve, sep } from 'node:path';
import { SERVICE_NAMES } from '../catalog/index.ts';
import { isDigest } from '../oci/types.ts';

export const BUILD_CACHE_VERSION = 1;

/**
 * Folders outside services/ whose files services/build.ts copies into a bundle (the console's
 * offline docs). test/build/cache.test.ts checks that every file a bundle carries comes from
 * the hashed inputs, so a new data folder in services/build.ts fails there until listed here.
 */
export const JS_DATA_DIRS: readonly string[] = ['docs/install'];
/** Single files the JavaScript build depends on besides sources: dependencies (locks), compiler settings. */
const JS_FILES: readonly string[] = ['package.json', 'package-lock.json', 'tsconfig.base.json', 'ci/package.json', 'ci/tsconfig.json'];

export interface BuildCacheEntry {
  /** Key of the JavaScript build's inputs for this service. */
  readonly js: string;
  /** Digest of the build context the image's COPY instructions read (the bundle in dist/app/<service>/). */
  readonly context: string;
  /** Key of the image's inputs. */
  readonly image: string;
  readonly repository: string;
  /** The image index. */
  readonly digest: string;
  readonly platforms: Readonly<Record<string, string>>;
}

const sha256 = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');

function validEntry(e: unknown): e is BuildCacheEntry {
  if (typeof e !== 'object' || e === null) return false;
  const o = e as Record<string, unknown>;
  return (
    typeof o.js === 'string' && typeof o.context === 'string' && typeof o.image === 'string' && typeof o.repository === 'string' && isDigest(o.digest) &&
    typeof o.platforms === 'object' && o.platforms !== null && Object.values(o.platforms).length > 0 && Object.values(o.platforms).every(isDigest)
  );
}

/** The cache file: read once (unless bypassed), updated in memory, written at the end. */
export class BuildCache {
  readonly file: string;
  /** False with `--no-cache`: nothing is read, everything is rebuilt, and the entries are written anew. */
  readonly reading: boolean;
  readonly #entries: Map<string, BuildCacheEntry>;

  private constructor(file: string, reading: boolean, entries: Map<string, BuildCacheEntry>) {
    this.file = file;
    this.reading = reading;
    this.#entries = entries;
  }

  /** Opens `file` (missing, unreadable or of another version: empty). `read: false` ignores what it holds. */
  static async open(file: string, o: { read?: boolean } = {}): Promise<BuildCache> {
    return new BuildCache(file, o.read !== false, await readServiceEntries(file, BUILD_CACHE_VERSION, validEntry));
  }

  /** The recorded entry of a service (undefined when bypassed). */
  get(service: string): BuildCacheEntry | undefined {
    return this.reading ? this.#entries.get(service) : undefined;
  }

  set(service: string, e: BuildCacheEntry): void {
    this.#entries.set(service, e);
  }

  save(): Promise<void> {
    return writeServiceEntries(this.file, BUILD_CACHE_VERSION, this.#entries);
  }
}

/**
 * A cache file of one entry per service, `{version, images: {<service>: entry}}`: what it holds
 * when readable, of this version and valid (else nothing: every service is a miss).
 */
export async function readServiceEntries<E>(file: string, version: number, valid: (e: unknown) => e is E): Promise<Map<string, E>> {
  const entries = new Map<string, E>();
  try {
    const doc = JSON.parse(await readFile(file, 'utf8')) as { version?: number; images?: Record<string, unknown> };
    if (doc.version === version && typeof doc.images === 'object' && doc.images !== null) {
      for (const [service, e] of Object.entries(doc.images)) if (valid(e)) entries.set(service, e);
    }
  } catch {
    // no cache yet, or one this version cannot read
  }
  return entries;
}

/** Writes such a file atomically, services in byte order. */
export async function writeServiceEntries<E>(file: string, version: number, entries: ReadonlyMap<string, E>): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const images = Object.fromEntries([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify({ version, images }, null, 2)}\n`);
  await rename(tmp, file);
}

// ─── Hashing files ──────────────────────────────────────────────────────────────────────────

/** sha256 of each file, by absolute path, for one build (sources are shared by every service). */
export class FileHashes {
  readonly #memo = new Map<string, string>();

  of(abs: string): string {
    let h = this.#memo.get(abs);
    if (h === undefined) {
      h = existsSync(abs) ? sha256(readFileSync(abs)) : 'absent';
      this.#memo.set(abs, h);
    }
    return h;
  }

  /** One digest over `files` (paths relative to `root`, each with its content hash), in sorted order. */
  digest(root: string, files: Iterable<string>): string {
    const h = createHash('sha256');
    for (const f of [...new Set(files)].sort()) h.update(`${f}\0${this.of(join(root, f))}\n`);
    return h.digest('hex');
  }
}

/** Every file under `dir` (relative to `root`, POSIX separators), skipping folders named in `skip`. */
function walkFiles(root: string, dir: string, skip: (rel: string) => boolean): string[] {
  const out: string[] = [];
  const abs = join(root, dir);
  if (!existsSync(abs)) return out;
  for (const name of readdirSync(abs).sort()) {
    const rel = dir ? `${dir}/${name}` : name;
    if (skip(rel)) continue;
    const st = statSync(join(root, rel));
    if (st.isDirectory()) out.push(...walkFiles(root, rel, skip));
    else if (st.isFile()) out.push(rel);
  }
  return out;
}

const IMPORT_RE = /\b(?:import|export)\b[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*[,)]|\bimport\s+['"]([^'"]+)['"]/g;

function resolveImport(fromAbs: string, spec: string): string | undefined {
  const base = resolve(dirname(fromAbs), spec);
  const candidates = [base, `${base}.ts`, base.replace(/\.js$/, '.ts'), join(base, 'index.ts')];
  return candidates.find((c) => existsSync(c) && statSync(c).isFile());
}

/**
 * The files an entry point reaches through relative imports (static, `export … from`, and
 * dynamic imports of string literals), itself included; paths relative to `root`. Bare
 * specifiers are packages: the lock files stand for them.
 */
export function importClosure(root: string, entries: readonly string[]): string[] {
  const seen = new Set<string>();
  const todo = entries.map((e) => resolve(root, e)).filter((e) => existsSync(e));
  while (todo.length) {
    const abs = todo.pop()!;
    if (seen.has(abs)) continue;
    seen.add(abs);
    if (!/\.(ts|mts|js|mjs)$/.test(abs)) continue;
    const text = readFileSync(abs, 'utf8');
    for (const m of text.matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2] ?? m[3];
      if (!spec || !spec.startsWith('.')) continue;
      const found = resolveImport(abs, spec);
      if (found && !seen.has(found)) todo.push(found);
    }
  }
  return [...seen].map((a) => relative(root, a).split(sep).join('/')).filter((r) => !r.startsWith('..')).sort();
}

/** What the JavaScript build of `service` reads, relative to the checkout (see the header). */
export function jsInputFiles(source: string, service: string): string[] {
  const closure = importClosure(source, [`services/src/${service}/main.ts`, 'services/build.ts']);
  const others = new Set(SERVICE_NAMES.filter((s) => s !== service).map((s) => `services/src/${s}`));
  const tree = walkFiles(source, 'services', (rel) => rel.split('/').includes('node_modules') || others.has(rel));
  const data = JS_DATA_DIRS.flatMap((d) => walkFiles(source, d, () => false));
  // Another service's files are inputs only where an import reaches them (already in `closure`).
  return [...new Set([...closure, ...tree, ...data, ...JS_FILES.filter((f) => existsSync(join(source, f)))])].sort();
}

/** The key of the JavaScript build of `service`: its input files and the values baked into the bundle. */
export function jsKey(hashes: FileHashes, o: { source: string; service: string; version: string; gitCommit: string; buildDate: string }): string {
  const files = hashes.digest(o.source, jsInputFiles(o.source, o.service));
  return sha256(JSON.stringify({ v: BUILD_CACHE_VERSION, node: process.version, service: o.service, version: o.version, gitCommit: o.gitCommit, buildDate: o.buildDate, files }));
}

/**
 * Digest of the build context paths a COPY reads (files and directories, relative to
 * `context`): each entry's path, type, executable bit (what a layer keeps of the mode) and
 * content or link target. A missing source gives a digest too (the build then fails on it).
 */
export function contextDigest(context: string, sources: readonly string[]): string {
  const h = createHash('sha256');
  const visit = (rel: string): void => {
    const abs = join(context, rel);
    let st;
    try {
      st = lstatSync(abs);
    } catch {
      h.update(`${rel}\0absent\n`);
      return;
    }
    if (st.isSymbolicLink()) h.update(`${rel}\0link\0${readlinkSync(abs)}\n`);
    else if (st.isDirectory()) {
      h.update(`${rel}\0dir\n`);
      for (const name of readdirSync(abs).sort()) visit(rel === '.' ? name : `${rel}/${name}`);
    } else h.update(`${rel}\0file\0${(st.mode & 0o111) !== 0 ? 'x' : '-'}\0${sha256(readFileSync(abs))}\n`);
  };
  for (const s of [...sources].sort()) {
    h.update(`source\0${s}\n`);
    visit(posix.normalize(s).replace(/^\/+/, '').replace(/\/+$/, '') || '.');
  }
  return h.digest('hex');
}

/** The builder's own version: its code (ci/src/build, ci/src/oci), the Dockerfile parser it uses, and Node (zlib). */
export function builderDigest(hashes: FileHashes): string {
  const ci = resolve(import.meta.dirname, '..');
  const files = ['build', 'oci'].flatMap((d) => readdirSync(join(ci, d)).filter((f) => f.endsWith('.ts')).map((f) => `${d}/${f}`));
  return sha256(JSON.stringify({ code: hashes.digest(ci, files), parser: packageVersion('dockerfile-ast'), node: process.version, zlib: process.versions.zlib }));
}

/** The installed version of a package this module imports (its package.json, found from its entry point). */
function packageVersion(name: string): string {
  try {
    let dir = dirname(createRequire(import.meta.url).resolve(name));
    for (let i = 0; i < 8; i++, dir = dirname(dir)) {
      const pj = join(dir, 'package.json');
      if (!existsSync(pj)) continue;
      const p = JSON.parse(readFileSync(pj, 'utf8')) as { name?: string; version?: string };
      if (p.name === name) return p.version ?? 'unknown';
    }
  } catch {
    // not resolvable from here: the builder's code digest still changes with the builder
  }
  return 'unknown';
}
/** The key of an image: everything its bytes are made from (see the header). */
export function imageKey(o: {
  readonly context: string;
  readonly dockerfile: string;
  readonly base: string;
  readonly platforms: readonly string[];
  readonly buildArgs: Readonly<Record<string, string>>;
  readonly builder: string;
  readonly repository: string;
}): string {
  return sha256(JSON.stringify({ v: BUILD_CACHE_VERSION, ...o, dockerfile: sha256(o.dockerfile), buildArgs: Object.entries(o.buildArgs).sort() }));
}
