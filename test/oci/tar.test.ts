/** The one tar reader: plain and gzip'd tars from bytes, files and streams; content read on demand. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { readTar, tarEntryPath, type TarInput } from '../../ci/src/oci/tar.ts';

let work: string;
let plain: Buffer;
const BIG = 4 * 1024 * 1024;

async function pack(entries: { header: Partial<tarStream.Header> & { name: string }; body?: Buffer }[]): Promise<Buffer> {
  const p = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    p.on('data', (c: unknown) => chunks.push(c as Buffer));
    p.on('end', resolve);
    p.on('error', reject);
  });
  for (const e of entries) {
    await new Promise<void>((res, rej) => {
      const cb = (err?: Error | null): void => (err ? rej(err) : res());
      if (e.body) p.entry(e.header, e.body, cb);
      else p.entry(e.header, cb);
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'stella-tar-'));
  plain = await pack([
    { header: { name: './app/', type: 'directory', mode: 0o755 } },
    { header: { name: './app/main.js', type: 'file', mode: 0o644, uid: 65532 }, body: Buffer.from('console.log(1)\n') },
    { header: { name: 'app/current', type: 'symlink', linkname: 'main.js' } },
    { header: { name: 'app/big.bin', type: 'file' }, body: Buffer.alloc(BIG, 7) },
    { header: { name: 'app/last.txt', type: 'file' }, body: Buffer.from('last') },
  ]);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Every entry as `type path [content]`, reading content of files below 1 MiB only. */
async function listing(input: TarInput): Promise<string[]> {
  const out: string[] = [];
  await readTar(input, async (e) => {
    const small = e.type === 'file' && (e.header.size ?? 0) < 1024 * 1024;
    out.push(`${e.type} ${e.path}${small ? ` ${(await e.content()).toString()}` : ''}${e.header.linkname ? ` -> ${e.header.linkname}` : ''}`);
  });
  return out;
}

const EXPECTED = ['directory app', 'file app/main.js console.log(1)\n', 'symlink app/current -> main.js', 'file app/big.bin', 'file app/last.txt last'];

describe('readTar', () => {
  it('reads the same entries from plain and gzip bytes, a file and a stream, skipping content not asked for', async () => {
    const gz = gzipSync(plain);
    const file = join(work, 'x.tgz');
    writeFileSync(file, gz);
    const plainFile = join(work, 'x.tar');
    writeFileSync(plainFile, plain);
    expect(await listing(plain)).toEqual(EXPECTED);
    expect(await listing(new Uint8Array(gz))).toEqual(EXPECTED);
    expect(await listing({ file })).toEqual(EXPECTED);
    expect(await listing({ file: plainFile })).toEqual(EXPECTED);
    // A stream in 1-byte first chunk then the rest: the gzip magic is still detected.
    expect(await listing(Readable.from([gz.subarray(0, 1), gz.subarray(1)]))).toEqual(EXPECTED);
  });

  it('gives the full content of a large entry when asked, and its header fields', async () => {
    let big: Buffer | undefined;
    let uid: number | undefined;
    await readTar(gzipSync(plain), async (e) => {
      if (e.path === 'app/big.bin') big = await e.content();
      if (e.path === 'app/main.js') uid = e.header.uid;
    });
    expect(big?.length).toBe(BIG);
    expect(big?.every((b) => b === 7)).toBe(true);
    expect(uid).toBe(65532);
  });

  it('rejects input that is not a tar, a missing file, and passes on what the callback throws', async () => {
    await expect(readTar(gzipSync(Buffer.from('not a tar archive '.repeat(50))), () => undefined)).rejects.toThrow();
    await expect(readTar(Buffer.from([0x1f, 0x8b, 1, 2, 3]), () => undefined)).rejects.toThrow();
    await expect(readTar({ file: join(work, 'absent.tgz') }, () => undefined)).rejects.toThrow(/ENOENT/);
    const seen: string[] = [];
    await expect(
      readTar({ file: join(work, 'x.tgz') }, (e) => {
        seen.push(e.path);
        if (e.path === 'app/current') throw new Error('stop here');
      }),
    ).rejects.toThrow('stop here');
    expect(seen).toEqual(['app', 'app/main.js', 'app/current']);
  });

  it('an empty input has no entries', async () => {
    expect(await listing(new Uint8Array())).toEqual([]);
    expect(await listing(await pack([]))).toEqual([]);
  });

  it('normalises entry names', () => {
    expect(tarEntryPath('./app/x/')).toBe('app/x');
    expect(tarEntryPath('/app/x')).toBe('app/x');
    expect(tarEntryPath('app/x')).toBe('app/x');
  });
});
