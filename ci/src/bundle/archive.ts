/**
 * The bundle archive: a deterministic tar.zst writer and a safe, streaming extractor.
 *
 * Writing: entries in byte order of their paths, directories included; uid/gid 0, empty user
 * and group names, one fixed mtime, modes 0644/0755; zstd at a fixed level, one thread, with
 * its content checksum. The same tree gives the same bytes.
 *
 * Extracting is safe by construction — every entry is judged from its header before a byte
 * of it is written, and nothing is ever written outside the destination folder:
 *   - refused: absolute paths, `..`, backslashes, NUL and control characters, overlong
 *     paths, a path given twice, two paths equal after Unicode NFC normalisation, a path
 *     under another file, symlinks and hardlinks (the format has none; one that leaves the
 *     folder is named as such), devices, FIFOs and every other type;
 *   - under images/blobs/sha256/ only names of 64 lowercase hex digits;
 *   - a budget: total bytes, entry count, and the ratio of extracted to compressed bytes,
 *     checked while reading (a decompression bomb stops at the budget, not at the disk);
 *   - memory stays bounded: the archive is streamed, never held.
 * A refused or truncated archive leaves the destination removed (it must not exist before).
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, lstat } from 'node:fs/promises';
import { posix, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as z, createZstdCompress, createZstdDecompress } from 'node:zlib';
import tarStream from 'tar-stream';
import { readTar, type TarEntry } from '../oci/tar.ts';
import { StellaError } from '../errors.ts';
import { DEFAULT_BUDGET, EXECUTABLE_FILES, type ExtractBudget } from './format.ts';

export interface ArchiveEntry {
  /** Relative path with `/` separators. */
  readonly path: string;
  readonly type: 'file' | 'directory';
  /** Absolute path on disk (files). */
  readonly source?: string;
  readonly size: number;
}

/** Every file and directory under `root`, sorted by path (byte order). Refuses links and special files. */
export async function listTree(root: string): Promise<ArchiveEntry[]> {
  const out: ArchiveEntry[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const name of await readdir(dir)) {
      const abs = join(dir, name);
      const path = rel ? `${rel}/${name}` : name;
      const st = await lstat(abs);
      if (st.isDirectory()) {
        out.push({ path, type: 'directory', size: 0 });
        await walk(abs, path);
      } else if (st.isFile()) out.push({ path, type: 'file', source: abs, size: st.size });
      else throw new StellaError('BUNDLE_INVALID', `bundle tree ${root}: ${path} is neither a file nor a directory (links and special files are not part of the format)`);
    }
  };
  await walk(root, '');
  return out.sort((a, b) => (Buffer.compare(Buffer.from(a.path), Buffer.from(b.path))));
}

export interface WriteArchiveOptions {
  /** mtime of every entry, seconds since 1970. */
  readonly mtime: number;
  readonly level: number;
  readonly progress?: (done: number, total: number) => void;
}

/**
 * Writes `entries` (from listTree) as tar.zst to `outFile`, via `<outFile>.part` renamed into
 * place when complete: an interrupted write never leaves a file under the final name.
 */
export async function writeArchive(entries: readonly ArchiveEntry[], outFile: string, o: WriteArchiveOptions): Promise<{ bytes: number }> {
  const part = `${outFile}.part`;
  const pack = tarStream.pack();
  const mtime = new Date(o.mtime * 1000);
  const total = entries.reduce((n, e) => n + e.size, 0);
  const zstd = createZstdCompress({ params: { [z.ZSTD_c_compressionLevel]: o.level, [z.ZSTD_c_checksumFlag]: 1, [z.ZSTD_c_nbWorkers]: 0 } });
  const done = pipeline(pack, zstd, createWriteStream(part, { mode: 0o644 }));
  const feed = (async () => {
    let written = 0;
    for (const e of entries) {
      const header = {
        name: e.path,
        type: e.type,
        mode: e.type === 'directory' || EXECUTABLE_FILES.includes(e.path) ? 0o755 : 0o644,
        mtime,
        uid: 0,
        gid: 0,
        uname: '',
        gname: '',
        size: e.type === 'file' ? e.size : 0,
      } as const;
      if (e.type === 'directory') {
        await new Promise<void>((res, rej) => pack.entry(header, (err) => (err ? rej(err) : res())));
        continue;
      }
      await new Promise<void>((res, rej) => {
        const sink = pack.entry(header, (err) => (err ? rej(err) : res()));
        const src = createReadStream(e.source!);
        src.on('error', rej);
        src.pipe(sink);
      });
      written += e.size;
      o.progress?.(written, total);
    }
    pack.finalize();
  })();
  try {
    await Promise.all([feed, done]);
  } catch (e) {
    pack.destroy();
    await rm(part, { force: true });
    throw new StellaError('BUNDLE_INVALID', `writing ${outFile}: ${(e as Error).message}`);
  }
  await rename(part, outFile);
  return { bytes: (await stat(outFile)).size };
}

const HEX64 = /^[0-9a-f]{64}$/;
const BLOBS_PREFIX = 'images/blobs/sha256/';

/** Why an archive path is unsafe, or undefined when it is fine. */
export function unsafePath(name: string, budget: ExtractBudget = DEFAULT_BUDGET): string | undefined {
  if (name.length === 0) return 'an empty name';
  if (name.length > budget.maxPathLength) return `a name longer than ${budget.maxPathLength} characters`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'a control character in the name';
  if (name.includes('\\')) return 'a backslash in the name';
  if (name.startsWith('/')) return 'an absolute path';
  if (/^[A-Za-z]:/.test(name)) return 'a drive-letter path';
  const parts = name.replace(/\/+$/, '').split('/');
  if (parts.some((p) => p === '..')) return 'a ".." component (it would leave the folder)';
  if (parts.some((p) => p === '' || p === '.')) return 'an empty or "." component';
  if (name.startsWith(BLOBS_PREFIX) && name.length > BLOBS_PREFIX.length && !HEX64.test(name.slice(BLOBS_PREFIX.length).replace(/\/$/, ''))) {
    return 'a blob name that is not 64 lowercase hex digits (sha256)';
  }
  return undefined;
}

/** A Transform that counts bytes and calls `check` after each chunk. */
function counter(onBytes: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        onBytes(chunk.length);
        cb(null, chunk);
      } catch (e) {
        cb(e as Error);
      }
    },
  });
}

export interface ExtractResult {
  readonly files: number;
  readonly bytes: number;
  /** Every extracted file path (relative), in archive order. */
  readonly paths: readonly string[];
}

/**
 * Extracts the tar.zst `file` into `dest` (which must not exist; it is created, and removed
 * again when anything is refused). Throws BUNDLE_UNSAFE naming the entry and the rule, or
 * BUNDLE_INVALID for a truncated or corrupt archive.
 */
export async function extractArchive(file: string, dest: string, budget: ExtractBudget = DEFAULT_BUDGET): Promise<ExtractResult> {
  try {
    await lstat(dest);
    throw new StellaError('INVALID_ARGUMENT', `extract ${file}: ${dest} already exists (extraction needs a new folder)`);
  } catch (e) {
    if (e instanceof StellaError) throw e;
  }
  let st;
  try {
    st = await stat(file);
  } catch {
    throw new StellaError('NOT_FOUND', `bundle ${file}: no such file`);
  }
  if (!st.isFile()) throw new StellaError('INVALID_ARGUMENT', `bundle ${file}: not a file`);
  await mkdir(dest, { recursive: false, mode: 0o755 });
  try {
    return await extractInto(file, dest, budget);
  } catch (e) {
    await rm(dest, { recursive: true, force: true });
    throw e;
  }
}

async function extractInto(file: string, dest: string, budget: ExtractBudget): Promise<ExtractResult> {
  let compressed = 0;
  let expanded = 0;
  let declared = 0;
  let entries = 0;
  const seen = new Map<string, string>();
  const fileSet = new Set<string>();
  const paths: string[] = [];
  const unsafe = (name: string, why: string): never => {
    throw new StellaError('BUNDLE_UNSAFE', `bundle ${file}: entry ${JSON.stringify(name.slice(0, 200))} refused: ${why}; nothing was extracted`);
  };
  const ratioCheck = (): void => {
    if (expanded > 1024 * 1024 && expanded > budget.maxRatio * Math.max(compressed, 1)) {
      throw new StellaError('BUNDLE_UNSAFE', `bundle ${file}: expands more than ${budget.maxRatio}× (${expanded} bytes from ${compressed}): refused as a decompression bomb; nothing was extracted`);
    }
    if (expanded > budget.maxBytes + 1024 * 1024) {
      throw new StellaError('BUNDLE_UNSAFE', `bundle ${file}: more than ${budget.maxBytes} bytes: refused (size budget); nothing was extracted`);
    }
  };
  // file → count → zstd → count → the one tar reader; an error anywhere ends the read.
  const source = createReadStream(file);
  const c1 = counter((n) => (compressed += n));
  const decompress = createZstdDecompress();
  const c2 = counter((n) => {
    expanded += n;
    ratioCheck();
  });
  for (const s of [source, c1, decompress]) s.on('error', (e: Error) => c2.destroy(e));
  // The entry being written, so that an error upstream (a truncated frame) ends its copy too.
  let current: Readable | undefined;
  // tar-stream is not told when its input fails: the first error anywhere ends the extraction.
  let aborted = false;
  let writing: Promise<unknown> = Promise.resolve();
  const failed = new Promise<never>((_, reject) => c2.on('error', (e: Error) => {
    aborted = true;
    current?.destroy(e);
    // Reject once the file being written is closed: nothing is written after this.
    void writing.then(() => reject(e), () => reject(e));
  }));
  failed.catch(() => {});
  source.pipe(c1).pipe(decompress).pipe(c2);

  try {
    const handle = async (entry: TarEntry): Promise<void> => {
      if (aborted) throw new Error('aborted');
      const h = entry.header;
      const name = h.name;
      entries++;
      if (entries > budget.maxEntries) unsafe(name, `more than ${budget.maxEntries} entries (budget)`);
      const why = unsafePath(name, budget);
      if (why) unsafe(name, why);
      const path = name.replace(/\/+$/, '');
      const type = entry.type;
      if (type === 'symlink' || type === 'link') {
        const target = h.linkname ?? '';
        const resolved = type === 'symlink' ? posix.normalize(posix.join(posix.dirname(path), target)) : posix.normalize(target);
        const leaves = target.startsWith('/') || resolved === '..' || resolved.startsWith('../');
        unsafe(name, `${type === 'symlink' ? 'a symlink' : 'a hardlink'} to ${JSON.stringify(target)}${leaves ? ', which leaves the folder' : ''} (links are not part of the bundle format)`);
      }
      if (type !== 'file' && type !== 'directory') unsafe(name, `type ${type} (only files and directories are part of the bundle format)`);
      const nfc = path.normalize('NFC');
      const other = seen.get(nfc);
      if (other !== undefined) unsafe(name, other === path ? 'the path appears twice' : `it collides with ${JSON.stringify(other)} after Unicode normalisation`);
      seen.set(nfc, path);
      const segments = path.split('/');
      const fileParent = segments.slice(0, -1).map((_, i) => segments.slice(0, i + 1).join('/')).find((p) => fileSet.has(p));
      if (fileParent) unsafe(name, `it lies under the file ${JSON.stringify(fileParent)}`);
      declared += h.size ?? 0;
      if (declared > budget.maxBytes) unsafe(name, `the entries declare more than ${budget.maxBytes} bytes (size budget)`);

      const abs = join(dest, ...segments);
      if (type === 'directory') {
        await mkdir(abs, { recursive: true, mode: 0o755 });
        return;
      }
      fileSet.add(path);
      await mkdir(join(dest, ...segments.slice(0, -1)), { recursive: true, mode: 0o755 });
      // 'wx': never follows or replaces anything that exists (the folder was new and holds no links).
      if (aborted) throw new Error('aborted');
      current = entry.stream();
      await pipeline(current, createWriteStream(abs, { flags: 'wx', mode: EXECUTABLE_FILES.includes(path) ? 0o755 : 0o644 }));
      current = undefined;
      paths.push(path);
    };
    // `writing` covers each entry's whole handling, so a failure waits for it before cleaning up.
    await Promise.race([failed, readTar(c2, (entry) => (writing = handle(entry)))]);
  } catch (e) {
    source.destroy();
    if (e instanceof StellaError) throw e;
    const msg = (e as Error).message;
    throw new StellaError('BUNDLE_INVALID', `bundle ${file}: the archive is truncated or corrupt (${msg}); copy it again and compare its sha256 with the release's ${'.sha256'} file`);
  }
  return { files: paths.length, bytes: expanded, paths };
}
