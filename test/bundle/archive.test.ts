/**
 * The bundle archive on its own: the deterministic writer, and the extractor against every
 * hostile input the format refuses. Each hostile archive is made here with tar-stream and
 * zstd (what an attacker would use), extracted into a fresh folder beside a sentinel folder:
 * each must end in a clear BUNDLE_UNSAFE / BUNDLE_INVALID error, leave the destination
 * removed, and write nothing outside it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants as z, zstdCompressSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import { extractArchive, listTree, unsafePath, writeArchive } from '../../ci/src/bundle/archive.ts';
import { parseChecksums, formatChecksums } from '../../ci/src/bundle/checksums.ts';
import { DEFAULT_BUDGET } from '../../ci/src/bundle/format.ts';
import { rmSync } from 'node:fs';

const work = mkdtempSync(join(tmpdir(), 'stella-archive-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Raw = { name: string; type?: tarStream.Header['type']; content?: string | Buffer; linkname?: string; size?: number };

/** A tar.zst made entry by entry, as a hostile producer would. */
async function hostile(entries: readonly Raw[], name: string): Promise<string> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => void chunks.push(c as Buffer));
  const ended = new Promise<void>((r) => pack.on('end', () => r()));
  for (const e of entries) {
    const body = e.content === undefined ? undefined : Buffer.from(e.content);
    await new Promise<void>((res, rej) =>
      pack.entry({ name: e.name, type: e.type ?? 'file', mode: 0o644, ...(e.linkname ? { linkname: e.linkname } : {}), ...(e.type === 'character-device' ? { devmajor: 1, devminor: 3 } : {}) }, body ?? '', (err) => (err ? rej(err) : res())),
    );
  }
  pack.finalize();
  await ended;
  const file = join(work, `${name}.tar.zst`);
  writeFileSync(file, zstdCompressSync(Buffer.concat(chunks)));
  return file;
}

/** Extracts into <case>/dest beside <case>/outside; returns the error and what exists after. */
async function attempt(file: string, budget = DEFAULT_BUDGET) {
  const root = mkdtempSync(join(work, 'case-'));
  mkdirSync(join(root, 'outside'));
  const dest = join(root, 'dest');
  let error: (Error & { code?: string }) | undefined;
  try {
    await extractArchive(file, dest, budget);
  } catch (e) {
    error = e as Error & { code?: string };
  }
  return { error, destExists: existsSync(dest), outside: readdirSync(join(root, 'outside')), rootEntries: readdirSync(root).sort() };
}

describe('extraction refuses hostile archives, writing nothing outside the folder', () => {
  const cases: { what: string; entries: Raw[]; code: string; message: RegExp }[] = [
    { what: 'a ".." path', entries: [{ name: 'ok.txt', content: 'x' }, { name: '../outside/evil', content: 'pwned' }], code: 'BUNDLE_UNSAFE', message: /"\.\.\/outside\/evil" refused: a "\.\." component/ },
    { what: 'a nested ".." path', entries: [{ name: 'docs/../../outside/evil', content: 'pwned' }], code: 'BUNDLE_UNSAFE', message: /a "\.\." component/ },
    { what: 'an absolute path', entries: [{ name: '/tmp/stella-evil', content: 'pwned' }], code: 'BUNDLE_UNSAFE', message: /an absolute path/ },
    { what: 'a symlink leaving the folder', entries: [{ name: 'link', type: 'symlink', linkname: '../outside' }, { name: 'link/evil', content: 'pwned' }], code: 'BUNDLE_UNSAFE', message: /a symlink to "\.\.\/outside", which leaves the folder/ },
    { what: 'an absolute symlink', entries: [{ name: 'etc', type: 'symlink', linkname: '/etc' }], code: 'BUNDLE_UNSAFE', message: /a symlink to "\/etc", which leaves the folder/ },
    { what: 'a hardlink leaving the folder', entries: [{ name: 'hard', type: 'link', linkname: '../outside/x' }], code: 'BUNDLE_UNSAFE', message: /a hardlink to "\.\.\/outside\/x", which leaves the folder/ },
    { what: 'a device file', entries: [{ name: 'null', type: 'character-device' }], code: 'BUNDLE_UNSAFE', message: /type character-device/ },
    { what: 'a FIFO', entries: [{ name: 'pipe', type: 'fifo' }], code: 'BUNDLE_UNSAFE', message: /type fifo/ },
    { what: 'names colliding after NFC normalisation', entries: [{ name: 'docs/caf\u00e9.md', content: 'a' }, { name: 'docs/cafe\u0301.md', content: 'b' }], code: 'BUNDLE_UNSAFE', message: /collides with "docs\/café\.md" after Unicode normalisation/ },
    { what: 'the same path twice', entries: [{ name: 'a.txt', content: 'a' }, { name: 'a.txt', content: 'b' }], code: 'BUNDLE_UNSAFE', message: /the path appears twice/ },
    { what: 'a path under a file', entries: [{ name: 'a', content: 'a' }, { name: 'a/b', content: 'b' }], code: 'BUNDLE_UNSAFE', message: /lies under the file "a"/ },
    { what: 'a blob name that is not a sha256', entries: [{ name: 'images/blobs/sha256/../../../outside/x', content: 'x' }], code: 'BUNDLE_UNSAFE', message: /refused/ },
    { what: 'a short blob name', entries: [{ name: 'images/blobs/sha256/abc', content: 'x' }], code: 'BUNDLE_UNSAFE', message: /not 64 lowercase hex digits/ },
    { what: 'a control character', entries: [{ name: 'a\u0007b', content: 'x' }], code: 'BUNDLE_UNSAFE', message: /control character/ },
    { what: 'a backslash', entries: [{ name: '..\\outside\\evil', content: 'x' }], code: 'BUNDLE_UNSAFE', message: /backslash/ },
  ];
  for (const c of cases) {
    it(`refuses ${c.what}`, async () => {
      const r = await attempt(await hostile(c.entries, c.what.replace(/\W+/g, '-')));
      expect(r.error?.code, r.error?.message).toBe(c.code);
      expect(r.error?.message).toMatch(c.message);
      expect(r.destExists).toBe(false);
      expect(r.outside).toEqual([]);
      expect(r.rootEntries).toEqual(['outside']);
      expect(existsSync('/tmp/stella-evil')).toBe(false);
    });
  }

  it('refuses a decompression bomb at the ratio budget, streaming (not after writing it)', async () => {
    // 64 MiB of zeros compresses to a few KB: far beyond 200×.
    const file = await hostile([{ name: 'zeros', content: Buffer.alloc(64 * 1024 * 1024) }], 'bomb');
    expect(statSync(file).size).toBeLessThan(64 * 1024);
    const r = await attempt(file);
    expect(r.error?.code).toBe('BUNDLE_UNSAFE');
    expect(r.error?.message).toMatch(/expands more than 200× .*decompression bomb/);
    expect(r.destExists).toBe(false);
  });

  it('refuses an archive over the size budget', async () => {
    const file = await hostile([{ name: 'a', content: Buffer.alloc(3 * 1024 * 1024, 7) }], 'big');
    const r = await attempt(file, { ...DEFAULT_BUDGET, maxBytes: 1024 * 1024, maxRatio: 1e9 });
    expect(r.error?.code).toBe('BUNDLE_UNSAFE');
    expect(r.error?.message).toMatch(/more than 1048576 bytes/);
    expect(r.destExists).toBe(false);
  });

  it('refuses too many entries', async () => {
    const file = await hostile(Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, content: 'x' })), 'many');
    const r = await attempt(file, { ...DEFAULT_BUDGET, maxEntries: 10 });
    expect(r.error?.message).toMatch(/more than 10 entries/);
    expect(r.destExists).toBe(false);
  });

  it('reports a truncated archive as such and keeps nothing', async () => {
    const whole = readFileSync(await hostile(Array.from({ length: 30 }, (_, i) => ({ name: `f${i}`, content: i % 3 ? randomBytes(4000 + i * 500) : Buffer.alloc(3000, i) })), 'whole'));
    // Cut at several points: inside an entry, between entries, near the end.
    for (const frac of [0.1, 0.3, 0.5, 0.6, 0.8, 0.97, 0.999]) {
      const cut = join(work, `cut-${frac}.tar.zst`);
      writeFileSync(cut, whole.subarray(0, Math.floor(whole.length * frac)));
      const r = await attempt(cut);
      expect(r.error?.code, `cut at ${frac}`).toBe('BUNDLE_INVALID');
      expect(r.error?.message).toMatch(/truncated or corrupt/);
      expect(r.destExists).toBe(false);
    }
  });

  it('refuses to extract into a folder that exists', async () => {
    const file = await hostile([{ name: 'a', content: 'x' }], 'exists');
    const dest = mkdtempSync(join(work, 'exists-'));
    await expect(extractArchive(file, dest)).rejects.toThrow(/already exists/);
  });

  it('extracts a well-formed archive, files and directories, nothing else', async () => {
    const file = await hostile([{ name: 'docs/', type: 'directory' }, { name: 'docs/a.md', content: 'hello' }, { name: 'images/blobs/sha256/' + 'a'.repeat(64), content: 'blob' }], 'good');
    const dest = join(mkdtempSync(join(work, 'good-')), 'dest');
    const r = await extractArchive(file, dest);
    expect(r.paths).toEqual(['docs/a.md', `images/blobs/sha256/${'a'.repeat(64)}`]);
    expect(readFileSync(join(dest, 'docs/a.md'), 'utf8')).toBe('hello');
  });
});

describe('the writer is deterministic', () => {
  function tree(root: string, extra = ''): void {
    mkdirSync(join(root, 'images/blobs/sha256'), { recursive: true });
    writeFileSync(join(root, 'bundle.json'), '{}\n');
    writeFileSync(join(root, 'load.sh'), '#!/bin/sh\n');
    writeFileSync(join(root, `images/blobs/sha256/${'b'.repeat(64)}`), `blob${extra}`);
    writeFileSync(join(root, 'Zeta.txt'), 'z');
  }
  it('gives the same bytes for the same tree (other mtimes, other creation order), and fixed headers', async () => {
    const a = mkdtempSync(join(work, 'wa-'));
    const b = mkdtempSync(join(work, 'wb-'));
    tree(a);
    writeFileSync(join(b, 'Zeta.txt'), 'z');
    tree(b);
    const fa = join(work, 'a.tar.zst');
    const fb = join(work, 'b.tar.zst');
    await writeArchive(await listTree(a), fa, { mtime: 1_700_000_000, level: 3 });
    await writeArchive(await listTree(b), fb, { mtime: 1_700_000_000, level: 3 });
    const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
    expect(sha(fa)).toBe(sha(fb));
    // And it differs when one byte differs.
    const c = mkdtempSync(join(work, 'wc-'));
    tree(c, '!');
    const fc = join(work, 'c.tar.zst');
    await writeArchive(await listTree(c), fc, { mtime: 1_700_000_000, level: 3 });
    expect(sha(fc)).not.toBe(sha(fa));
    // Headers: byte order, root-owned, no names, the fixed mtime, 0755 only for dirs and scripts.
    const headers: tarStream.Header[] = [];
    const extract = tarStream.extract();
    extract.on('entry', (h, s, next) => {
      headers.push(h);
      s.on('end', next);
      s.resume();
    });
    const { zstdDecompressSync } = await import('node:zlib');
    await new Promise<void>((res, rej) => {
      extract.on('finish', res);
      extract.on('error', rej);
      extract.end(zstdDecompressSync(readFileSync(fa)));
    });
    expect(headers.map((h) => h.name)).toEqual(['Zeta.txt', 'bundle.json', 'images', 'images/blobs', 'images/blobs/sha256', `images/blobs/sha256/${'b'.repeat(64)}`, 'load.sh']);
    for (const h of headers) {
      expect([h.uid, h.gid, h.uname ?? '', h.gname ?? '', h.mtime?.getTime()]).toEqual([0, 0, '', '', 1_700_000_000_000]);
      expect(h.mode).toBe(h.type === 'directory' || h.name === 'load.sh' ? 0o755 : 0o644);
    }
  });

  it('leaves no file under the final name when the write fails', async () => {
    const a = mkdtempSync(join(work, 'wf-'));
    tree(a);
    const entries = await listTree(a);
    rmSync(join(a, 'Zeta.txt'));
    const out = join(work, 'failed.tar.zst');
    await expect(writeArchive(entries, out, { mtime: 0, level: 3 })).rejects.toThrow(/writing .*failed\.tar\.zst/);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.part`)).toBe(false);
  });

  it('is read back by zstd and GNU tar (what an operator has)', async () => {
    const a = mkdtempSync(join(work, 'wt-'));
    tree(a);
    const f = join(work, 't.tar.zst');
    await writeArchive(await listTree(a), f, { mtime: 1_700_000_000, level: z.ZSTD_CLEVEL_DEFAULT });
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync('tar', ['--zstd', '-tvf', f], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/-rwxr-xr-x 0\/0 .* load\.sh/);
  });
});

describe('checksums.txt', () => {
  it('is sha256sum format, sorted, and parsed strictly', () => {
    const text = formatChecksums([{ path: 'b', sha256: 'b'.repeat(64) }, { path: 'a/x', sha256: 'a'.repeat(64) }]);
    expect(text).toBe(`${'a'.repeat(64)}  a/x\n${'b'.repeat(64)}  b\n`);
    expect(parseChecksums(text).map((c) => c.path)).toEqual(['a/x', 'b']);
    expect(() => parseChecksums(text.slice(0, -1))).toThrow(/does not end with a newline/);
    expect(() => parseChecksums(`${'a'.repeat(64)}  ../x\n`)).toThrow(/"\.\." component/);
    expect(() => parseChecksums(`${'a'.repeat(63)}  x\n`)).toThrow(/not "<sha256>  <path>"/);
    expect(() => parseChecksums(`${'a'.repeat(64)}  x\n${'b'.repeat(64)}  x\n`)).toThrow(/listed twice/);
    expect(unsafePath('images/blobs/sha256/' + 'f'.repeat(64))).toBeUndefined();
  });
});
