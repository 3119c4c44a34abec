/**
 * The one tar reader (on tar-stream): a tar or gzip'd tar — bytes in memory, a file on
 * disk or a stream — read entry by entry, streaming. The content of an entry is read
 * only when the caller asks for it; every other entry is streamed past, so only what
 * the caller keeps is ever held in memory.
 *
 *   await readTar({ file: 'node.tgz' }, async (e) => {
 *     if (e.type === 'file' && e.path === 'package/bin/node') await writeFile(dest, await e.content());
 *   });
 *
 * Used by the layer listing (oci/layer.ts), the dpkg reader (sbom/dpkg.ts) and the
 * base build's Node unpacking (base/build.ts).
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tarStream from 'tar-stream';

export type TarHeader = tarStream.Header;

export interface TarEntry {
  readonly header: TarHeader;
  /** The entry's name without a leading `./` or `/` (directories keep no trailing `/`). */
  readonly path: string;
  /** `file`, `directory`, `symlink`, `link`, … (`file` when the header has none). */
  readonly type: string;
  /** The entry's bytes (at most once; empty for entries without content). */
  content(): Promise<Buffer>;
  /** The entry's bytes as a stream, for content too large to hold (instead of content(); consume it before returning). */
  stream(): Readable;
}

/** Bytes in memory, `{ file }` on disk, or a stream; plain or gzip'd (detected from the first bytes). */
export type TarInput = Uint8Array | Readable | { readonly file: string };

/** `./app/x/`, `/app/x` → `app/x`. */
export function tarEntryPath(name: string): string {
  return name.replace(/^(\.?\/)+/, '').replace(/\/+$/, '');
}

function isGzip(head: Buffer): boolean {
  return head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
}

/** The input as a stream of tar bytes: gunzipped when it starts with the gzip magic. */
async function tarBytes(input: TarInput, src: Readable): Promise<Readable> {
  if (input instanceof Uint8Array) {
    const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    return isGzip(buf) ? Readable.from([buf]).pipe(createGunzip()) : Readable.from([buf]);
  }
  const it = src[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  // Peek at the first bytes (at least two, for the magic), then replay them.
  const head: Buffer[] = [];
  let size = 0;
  let ended = false;
  while (size < 2) {
    const n = await it.next();
    if (n.done) {
      ended = true;
      break;
    }
    const b = Buffer.from(n.value);
    head.push(b);
    size += b.length;
  }
  const first = Buffer.concat(head);
  const replay = Readable.from(
    (async function* () {
      if (first.length) yield first;
      if (ended) return;
      for (;;) {
        const n = await it.next();
        if (n.done) return;
        yield Buffer.from(n.value);
      }
    })(),
  );
  if (!isGzip(first)) return replay;
  const gunzip = createGunzip();
  replay.on('error', (e) => gunzip.destroy(e));
  return replay.pipe(gunzip);
}

/**
 * Calls `onEntry` for each entry of a tar, in archive order, one at a time (awaited).
 * Throws what tar-stream or zlib throws for input that is not a (gzip'd) tar.
 */
export async function readTar(input: TarInput, onEntry: (entry: TarEntry) => void | Promise<void>): Promise<void> {
  const src = input instanceof Uint8Array ? Readable.from([]) : input instanceof Readable ? input : createReadStream(input.file);
  const bytes = await tarBytes(input, src);
  const extract = tarStream.extract();
  bytes.on('error', (e) => extract.destroy(e));
  bytes.pipe(extract);
  try {
    for await (const stream of extract) {
      let read = false;
      const header = stream.header;
      const entry: TarEntry = {
        header,
        path: tarEntryPath(header.name),
        type: header.type ?? 'file',
        async content() {
          if (read) throw new Error(`tar entry ${header.name}: content already read`);
          read = true;
          const chunks: Buffer[] = [];
          for await (const c of stream) chunks.push(c as Buffer);
          return Buffer.concat(chunks);
        },
        stream() {
          if (read) throw new Error(`tar entry ${header.name}: content already read`);
          read = true;
          return stream as unknown as Readable;
        },
      };
      await onEntry(entry);
      if (!read) stream.resume();
    }
  } finally {
    // Also when onEntry threw: no file handle or stream is left open.
    bytes.destroy();
    src.destroy();
  }
}
