/**
 * Deterministic image layers: a file tree in, a gzip'd tar layer out, whose
 * bytes depend only on the content and on the options given.
 *
 *   const layer = await createLayer({
 *     sourceDateEpoch: 1700000000,
 *     dirs: [{ dir: 'dist/api', at: '/app' }],          // files on disk
 *     entries: [                                          // and/or in memory
 *       { type: 'file', path: '/app/sbom.spdx.json', content: sbomBytes },
 *       { type: 'dir', path: '/tmp', mode: 0o1777 },
 *       { type: 'symlink', path: '/app/current', target: 'v1' },
 *     ],
 *     attributes: { 'home/nonroot': { uid: 65532, gid: 65532, mode: 0o700 } },
 *   });
 *   // layer.blob (gzip bytes), layer.digest, layer.size, layer.diffId, layer.mediaType
 *
 * What makes it deterministic:
 * - entry names are relative, without "./" (`app/`, `app/main.js`), directories
 *   with a trailing "/": what BuildKit and `docker save` write;
 * - entries sorted by the UTF-8 bytes of their path; every parent directory is
 *   present (implicit ones 0755, owned by the layer's default owner);
 * - mtime = sourceDateEpoch for every entry; no uname/gname, no xattrs, no
 *   atime/ctime; USTAR headers, with a PAX record only for names or link targets
 *   that USTAR cannot hold (longer than 100/155 bytes, or not ASCII);
 * - modes normalised: files 0644, or 0755 when any execute bit is set on disk
 *   (or `executable: true`); directories 0755; symlinks 0777. An explicit `mode`
 *   on an in-memory entry or in `attributes` is honoured as given (e.g. 1777);
 * - owner 0:0 unless `uid`/`gid` (layer-wide), an entry's own uid/gid, or an
 *   `attributes` rule says otherwise;
 * - gzip by node:zlib with fixed level and a header without name or mtime.
 *   The gzip bytes depend on the zlib of the Node that runs this (Node is pinned
 *   in package.json); the diffId (sha256 of the tar) depends on content only.
 *
 * Refused (StellaError UNSAFE_PATH / INVALID_ARGUMENT): a path with a ".."
 * segment or NUL, the root itself as an entry, the same path twice (except
 * directories that agree), two paths equal after Unicode NFC normalisation, an
 * entry below a symlink of the same layer, sockets/fifos/devices on disk.
 */
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzip as gzipCb, constants as zc } from 'node:zlib';
import { createHash } from 'node:crypto';
import tarStream from 'tar-stream';
import { StellaError } from '../errors.ts';
import { readTar, tarEntryPath } from './tar.ts';
import { MediaType, sha256Digest, type Descriptor } from './types.ts';

const gzip = promisify(gzipCb);

/** A regular file: `content` in memory, or `source` read from disk when the layer is written. */
export interface FileEntry {
  readonly type: 'file';
  readonly path: string;
  readonly content?: Uint8Array | string;
  readonly source?: string;
  /** Mode bits as given (e.g. 0o600). Default 0644, or 0755 when `executable`. */
  readonly mode?: number;
  readonly executable?: boolean;
  readonly uid?: number;
  readonly gid?: number;
}

export interface DirEntry {
  readonly type: 'dir';
  readonly path: string;
  /** Default 0755. Honoured as given, sticky bit included (e.g. 0o1777 for /tmp). */
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
}

export interface SymlinkEntry {
  readonly type: 'symlink';
  readonly path: string;
  /** Stored as given (absolute targets are resolved inside the container). */
  readonly target: string;
  readonly uid?: number;
  readonly gid?: number;
}

export type LayerEntry = FileEntry | DirEntry | SymlinkEntry;

/** A directory on disk whose contents land at `at` (default "/") in the image. */
export interface DirSource {
  readonly dir: string;
  readonly at?: string;
}

/** Per-path overrides. Key "home/nonroot" matches that path; "home/nonroot/**" everything below it. */
export interface PathAttributes {
  readonly uid?: number;
  readonly gid?: number;
  readonly mode?: number;
}

export interface LayerOptions {
  /** Seconds since the epoch; every entry's mtime. */
  readonly sourceDateEpoch: number;
  readonly dirs?: readonly DirSource[];
  readonly entries?: readonly LayerEntry[];
  /** Default owner of every entry (default 0:0). */
  readonly uid?: number;
  readonly gid?: number;
  readonly attributes?: Readonly<Record<string, PathAttributes>>;
  /** gzip level 1..9, default 9. */
  readonly compressionLevel?: number;
}

export interface Layer {
  /** The gzip'd tar: the blob that goes into the image. */
  readonly blob: Uint8Array;
  /** sha256 of `blob`. */
  readonly digest: string;
  readonly size: number;
  /** sha256 of the uncompressed tar: goes into the image config's rootfs.diff_ids. */
  readonly diffId: string;
  readonly mediaType: typeof MediaType.ociLayerGzip;
  /** Number of tar entries (parents included). */
  readonly entryCount: number;
}

/** The descriptor of a layer, for a manifest's `layers`. */
export function layerDescriptor(layer: Layer): Descriptor {
  return { mediaType: layer.mediaType, digest: layer.digest, size: layer.size };
}

/**
 * `/app/./main.js`, `./app/main.js`, `app//main.js` → `app/main.js`.
 * Throws UNSAFE_PATH for "..", NUL, or a path that is the root.
 */
export function normalizeLayerPath(p: string, what = 'layer entry'): string {
  if (typeof p !== 'string' || p.length === 0) {
    throw new StellaError('UNSAFE_PATH', `${what}: path ${JSON.stringify(p)} is empty (expected a path such as app/main.js)`);
  }
  if (p.includes('\0')) {
    throw new StellaError('UNSAFE_PATH', `${what}: path ${JSON.stringify(p)} contains a NUL byte`);
  }
  const parts: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      throw new StellaError('UNSAFE_PATH', `${what}: path ${JSON.stringify(p)} has a ".." segment (expected a path inside the image root)`);
    }
    parts.push(seg);
  }
  if (parts.length === 0) {
    throw new StellaError('UNSAFE_PATH', `${what}: path ${JSON.stringify(p)} is the image root itself (expected a path below it)`);
  }
  return parts.join('/');
}

type Kind = 'file' | 'dir' | 'symlink';
/** Where an entry came from, in increasing priority for directories. */
type Origin = 0 | 1 | 2; // implicit parent, scanned from disk, explicit entry

interface Planned {
  path: string;
  kind: Kind;
  origin: Origin;
  mode: number;
  uid: number;
  gid: number;
  content?: Uint8Array;
  source?: string;
  target?: string;
  /** Mode/owner came from the caller rather than defaults (for directory merges). */
  explicit: boolean;
}

function checkId(v: number | undefined, what: string): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0o7777777)) {
    throw new StellaError('INVALID_ARGUMENT', `${what}: ${v} is not a valid uid/gid (expected an integer 0..2097151)`);
  }
}

function checkMode(v: number | undefined, what: string): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0o7777)) {
    throw new StellaError('INVALID_ARGUMENT', `${what}: mode ${v} is not a permission mode (expected 0..0o7777)`);
  }
}

function utf8Compare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

async function scanDir(src: DirSource, add: (p: Planned) => void): Promise<void> {
  const base = src.at === undefined || normalizeRootable(src.at) === '' ? '' : normalizeLayerPath(src.at, `dir source ${src.dir} "at"`);
  const rootStat = await lstat(src.dir).catch((e: NodeJS.ErrnoException) => {
    throw new StellaError('NOT_FOUND', `layer dir source ${src.dir}: cannot read it (${e.code ?? e.message})`);
  });
  if (!rootStat.isDirectory()) {
    throw new StellaError('INVALID_ARGUMENT', `layer dir source ${src.dir}: is not a directory`);
  }
  if (base !== '') add({ path: base, kind: 'dir', origin: 1, mode: 0o755, uid: 0, gid: 0, explicit: false });
  const walk = async (abs: string, rel: string): Promise<void> => {
    const names = await readdir(abs);
    names.sort(utf8Compare);
    for (const name of names) {
      const childAbs = join(abs, name);
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(childAbs);
      if (st.isDirectory()) {
        add({ path: childRel, kind: 'dir', origin: 1, mode: 0o755, uid: 0, gid: 0, explicit: false });
        await walk(childAbs, childRel);
      } else if (st.isFile()) {
        // Hard links become independent regular files (content duplicated).
        const mode = st.mode & 0o111 ? 0o755 : 0o644;
        add({ path: childRel, kind: 'file', origin: 1, mode, uid: 0, gid: 0, source: childAbs, explicit: false });
      } else if (st.isSymbolicLink()) {
        add({ path: childRel, kind: 'symlink', origin: 1, mode: 0o777, uid: 0, gid: 0, target: await readlink(childAbs), explicit: false });
      } else {
        throw new StellaError('INVALID_ARGUMENT', `layer dir source ${src.dir}: ${childRel} is a socket, fifo or device (only files, directories and symlinks go into a layer)`);
      }
    }
  };
  await walk(src.dir, base);
}

/** Like normalizeLayerPath, but "/" and "." give "". */
function normalizeRootable(p: string): string {
  return p.split('/').filter((s) => s !== '' && s !== '.').length === 0 ? '' : p;
}

function attributeFor(path: string, attributes: Readonly<Record<string, PathAttributes>>): PathAttributes | undefined {
  let best: PathAttributes | undefined;
  let bestLen = -1;
  for (const [rawKey, attr] of Object.entries(attributes)) {
    const sub = rawKey.endsWith('/**');
    const key = normalizeLayerPath(sub ? rawKey.slice(0, -3) : rawKey, `layer attributes key "${rawKey}"`);
    const hit = sub ? path.startsWith(`${key}/`) : path === key;
    // The most specific rule wins; an exact rule beats a "/**" rule of the same prefix.
    const len = key.length * 2 + (sub ? 0 : 1);
    if (hit && len > bestLen) {
      best = attr;
      bestLen = len;
    }
  }
  return best;
}

/** Builds the deterministic layer described by `opts`. */
export async function createLayer(opts: LayerOptions): Promise<Layer> {
  const epoch = opts.sourceDateEpoch;
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > 8 ** 11 - 1) {
    throw new StellaError('INVALID_ARGUMENT', `layer sourceDateEpoch: ${String(epoch)} is not a time in whole seconds since 1970 (expected an integer >= 0)`);
  }
  checkId(opts.uid, 'layer uid');
  checkId(opts.gid, 'layer gid');
  const level = opts.compressionLevel ?? 9;
  if (!Number.isInteger(level) || level < 1 || level > 9) {
    throw new StellaError('INVALID_ARGUMENT', `layer compressionLevel: ${level} (expected 1..9)`);
  }
  const attributes = opts.attributes ?? {};
  for (const [k, a] of Object.entries(attributes)) {
    checkId(a.uid, `layer attributes "${k}" uid`);
    checkId(a.gid, `layer attributes "${k}" gid`);
    checkMode(a.mode, `layer attributes "${k}"`);
  }

  const planned = new Map<string, Planned>();
  const nfc = new Map<string, string>();
  const add = (p: Planned): void => {
    const key = p.path.normalize('NFC');
    const seen = nfc.get(key);
    if (seen !== undefined && seen !== p.path) {
      throw new StellaError('UNSAFE_PATH', `layer entry ${JSON.stringify(p.path)} collides with ${JSON.stringify(seen)} after Unicode normalisation (expected distinct names)`);
    }
    nfc.set(key, p.path);
    const prev = planned.get(p.path);
    if (!prev) {
      planned.set(p.path, p);
      return;
    }
    if (prev.kind === 'dir' && p.kind === 'dir') {
      if (p.origin > prev.origin) planned.set(p.path, p);
      else if (p.origin === prev.origin && p.origin === 2 && (p.mode !== prev.mode || p.uid !== prev.uid || p.gid !== prev.gid)) {
        throw new StellaError('UNSAFE_PATH', `layer entry ${p.path}/ is given twice with different mode or owner (expected one definition)`);
      }
      return;
    }
    throw new StellaError('UNSAFE_PATH', `layer entry ${p.path} is given twice (as ${prev.kind} and as ${p.kind}); expected each path once`);
  };

  for (const src of opts.dirs ?? []) await scanDir(src, add);

  for (const e of opts.entries ?? []) {
    const path = normalizeLayerPath(e.path);
    checkId(e.uid, `layer entry ${path} uid`);
    checkId(e.gid, `layer entry ${path} gid`);
    const owner = { uid: e.uid ?? -1, gid: e.gid ?? -1 };
    switch (e.type) {
      case 'file': {
        checkMode(e.mode, `layer entry ${path}`);
        if ((e.content === undefined) === (e.source === undefined)) {
          throw new StellaError('INVALID_ARGUMENT', `layer entry ${path}: give exactly one of content or source`);
        }
        const content = typeof e.content === 'string' ? new TextEncoder().encode(e.content) : e.content;
        const mode = e.mode ?? (e.executable ? 0o755 : 0o644);
        add({ path, kind: 'file', origin: 2, mode, ...owner, ...(content ? { content } : {}), ...(e.source ? { source: e.source } : {}), explicit: e.mode !== undefined });
        break;
      }
      case 'dir':
        checkMode(e.mode, `layer entry ${path}`);
        add({ path, kind: 'dir', origin: 2, mode: e.mode ?? 0o755, ...owner, explicit: true });
        break;
      case 'symlink':
        if (typeof e.target !== 'string' || e.target.length === 0 || e.target.includes('\0')) {
          throw new StellaError('UNSAFE_PATH', `layer entry ${path}: symlink target ${JSON.stringify(e.target)} is empty or contains NUL`);
        }
        add({ path, kind: 'symlink', origin: 2, mode: 0o777, ...owner, target: e.target, explicit: false });
        break;
      default: {
        const never: never = e;
        throw new StellaError('INVALID_ARGUMENT', `layer entry of unknown type ${JSON.stringify((never as { type: unknown }).type)} (expected file, dir or symlink)`);
      }
    }
  }

  // Implicit parents, and no entry below a symlink of this layer.
  for (const p of [...planned.values()]) {
    const segs = p.path.split('/');
    for (let i = 1; i < segs.length; i++) {
      const parent = segs.slice(0, i).join('/');
      const have = planned.get(parent);
      if (!have) add({ path: parent, kind: 'dir', origin: 0, mode: 0o755, uid: -1, gid: -1, explicit: false });
      else if (have.kind !== 'dir') {
        throw new StellaError('UNSAFE_PATH', `layer entry ${p.path} lies below ${parent}, which is a ${have.kind} in the same layer (expected a directory)`);
      }
    }
  }

  // Owners and attributes.
  const defUid = opts.uid ?? 0;
  const defGid = opts.gid ?? 0;
  for (const p of planned.values()) {
    if (p.uid < 0 || p.origin < 2) p.uid = defUid;
    if (p.gid < 0 || p.origin < 2) p.gid = defGid;
    const attr = attributeFor(p.path, attributes);
    if (attr) {
      if (attr.uid !== undefined) p.uid = attr.uid;
      if (attr.gid !== undefined) p.gid = attr.gid;
      if (attr.mode !== undefined && p.kind !== 'symlink') p.mode = attr.mode;
    }
  }

  const ordered = [...planned.values()].sort((a, b) => utf8Compare(a.path, b.path));
  const tar = await packTar(ordered, new Date(epoch * 1000));
  const diffId = sha256Digest(tar);
  const blob = new Uint8Array(await gzip(tar, { level, memLevel: 9, strategy: zc.Z_DEFAULT_STRATEGY }));
  return { blob, digest: sha256Digest(blob), size: blob.byteLength, diffId, mediaType: MediaType.ociLayerGzip, entryCount: ordered.length };
}

async function packTar(ordered: readonly Planned[], mtime: Date): Promise<Uint8Array> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  const entry = (header: Partial<tarStream.Header> & { name: string }, body?: Uint8Array): Promise<void> =>
    new Promise((resolve, reject) => {
      const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
      if (body) pack.entry(header, Buffer.from(body.buffer, body.byteOffset, body.byteLength), cb);
      else pack.entry(header, cb);
    });
  for (const p of ordered) {
    const common = { mode: p.mode, uid: p.uid, gid: p.gid, mtime };
    switch (p.kind) {
      case 'dir':
        await entry({ ...common, name: `${p.path}/`, type: 'directory' });
        break;
      case 'symlink':
        await entry({ ...common, name: p.path, type: 'symlink', linkname: p.target });
        break;
      case 'file': {
        const body = p.content ?? (await readFile(p.source as string));
        await entry({ ...common, name: p.path, type: 'file', size: body.byteLength }, body);
        break;
      }
    }
  }
  pack.finalize();
  await done;
  return new Uint8Array(Buffer.concat(chunks));
}

export interface LayerListing {
  readonly name: string;
  readonly type: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtime: number;
  readonly linkname?: string;
  readonly uname?: string;
  readonly gname?: string;
  /** sha256 of the content, for files. */
  readonly sha256?: string;
}

/** Lists a layer blob (gzip'd or plain tar): one row per entry, in tar order. For checks and tests. */
export async function listLayer(blob: Uint8Array): Promise<LayerListing[]> {
  const out: LayerListing[] = [];
  await readTar(blob, async (e) => {
    const h = e.header;
    const content = e.type === 'file' ? await e.content() : undefined;
    out.push({
      name: h.name,
      type: h.type ?? 'file',
      mode: h.mode ?? 0,
      uid: h.uid ?? 0,
      gid: h.gid ?? 0,
      size: h.size ?? 0,
      mtime: Math.floor((h.mtime?.getTime() ?? 0) / 1000),
      ...(h.linkname ? { linkname: h.linkname } : {}),
      ...(h.uname ? { uname: h.uname } : {}),
      ...(h.gname ? { gname: h.gname } : {}),
      ...(content ? { sha256: createHash('sha256').update(content).digest('hex') } : {}),
    });
  });
  return out;
}

/** The content of the file at `path` (e.g. `app/sbom.spdx.json`) in a layer blob, or undefined. */
export async function readLayerFile(blob: Uint8Array, path: string): Promise<Uint8Array | undefined> {
  const want = tarEntryPath(path);
  let found: Uint8Array | undefined;
  await readTar(blob, async (e) => {
    if (e.type === 'file' && e.path === want) found = new Uint8Array(await e.content());
  });
  return found;
}
