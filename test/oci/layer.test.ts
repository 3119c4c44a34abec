import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, chmodSync, utimesSync, rmSync, cpSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { createLayer, listLayer, normalizeLayerPath, type LayerOptions } from '../../ci/src/oci/layer.ts';
import { sha256Digest } from '../../ci/src/oci/types.ts';
import { StellaError } from '../../ci/src/errors.ts';

const EPOCH = 1_700_000_000;
let work: string;
let tree: string;

function makeTree(root: string): void {
  mkdirSync(join(root, 'lib', 'deep'), { recursive: true });
  writeFileSync(join(root, 'main.js'), 'console.log("hi")\n');
  writeFileSync(join(root, 'lib', 'deep', 'util.js'), 'export const x = 1;\n');
  writeFileSync(join(root, 'run.sh'), '#!/nodejs/bin/node\n');
  chmodSync(join(root, 'run.sh'), 0o700); // any x bit → 0755
  writeFileSync(join(root, 'secret-ish.txt'), 'x');
  chmodSync(join(root, 'secret-ish.txt'), 0o600); // normalised → 0644
  symlinkSync('lib/deep', join(root, 'current'));
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(StellaError);
    return (e as StellaError).code;
  }
  return 'no error';
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'stella-layer-'));
  tree = join(work, 'tree');
  mkdirSync(tree);
  makeTree(tree);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('createLayer: determinism', () => {
  const opts = (dir: string, extra: Partial<LayerOptions> = {}): LayerOptions => ({
    sourceDateEpoch: EPOCH,
    dirs: [{ dir, at: '/app' }],
    entries: [{ type: 'dir', path: '/tmp', mode: 0o1777 }, { type: 'file', path: 'app/sbom.spdx.json', content: '{}' }],
    ...extra,
  });

  it('gives the same bytes for the same tree, whatever the mtimes or location on disk', async () => {
    const a = await createLayer(opts(tree));
    const b = await createLayer(opts(tree));
    expect(b.digest).toBe(a.digest);
    expect(b.diffId).toBe(a.diffId);
    expect(a.digest).toBe(sha256Digest(a.blob));
    expect(a.size).toBe(a.blob.byteLength);
    expect(a.diffId).toBe(sha256Digest(gunzipSync(a.blob)));
    expect(a.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');

    // Touch every mtime, and copy the tree elsewhere (new inodes, new ctimes).
    const copy = join(work, 'copy');
    cpSync(tree, copy, { recursive: true, verbatimSymlinks: true });
    for (const p of ['main.js', 'lib', 'lib/deep/util.js', 'run.sh']) utimesSync(join(copy, p), new Date(), new Date(Date.now() - 86_400_000));
    const c = await createLayer(opts(copy));
    expect(c.digest).toBe(a.digest);
  });

  it('changes when an owner, the epoch or a byte of content changes', async () => {
    const a = await createLayer(opts(tree));
    const uid = await createLayer(opts(tree, { uid: 65532, gid: 65532 }));
    expect(uid.digest).not.toBe(a.digest);
    expect(uid.diffId).not.toBe(a.diffId);
    const attr = await createLayer(opts(tree, { attributes: { 'app/main.js': { uid: 65532 } } }));
    expect(attr.diffId).not.toBe(a.diffId);
    const epoch = await createLayer(opts(tree, { sourceDateEpoch: EPOCH + 1 }));
    expect(epoch.diffId).not.toBe(a.diffId);
    const content = await createLayer({ ...opts(tree), entries: [{ type: 'dir', path: '/tmp', mode: 0o1777 }, { type: 'file', path: 'app/sbom.spdx.json', content: '{ }' }] });
    expect(content.diffId).not.toBe(a.diffId);
  });

  it('writes docker-style names, sorted, with parents, fixed mtime, normalised modes and no user names', async () => {
    const layer = await createLayer({
      ...opts(tree),
      attributes: { 'home/nonroot': { uid: 65532, gid: 65532, mode: 0o700 } },
      entries: [
        { type: 'dir', path: '/tmp', mode: 0o1777 },
        { type: 'dir', path: '/home/nonroot' },
        { type: 'file', path: 'app/sbom.spdx.json', content: '{}' },
        { type: 'file', path: '/nodejs/bin/node', content: 'ELF', executable: true },
      ],
    });
    const rows = await listLayer(layer.blob);
    const names = rows.map((r) => r.name);
    expect(names).toEqual([
      'app/', 'app/current', 'app/lib/', 'app/lib/deep/', 'app/lib/deep/util.js', 'app/main.js', 'app/run.sh', 'app/sbom.spdx.json', 'app/secret-ish.txt',
      'home/', 'home/nonroot/', 'nodejs/', 'nodejs/bin/', 'nodejs/bin/node', 'tmp/',
    ]);
    const by = Object.fromEntries(rows.map((r) => [r.name, r]));
    expect(by['app/run.sh']!.mode).toBe(0o755);
    expect(by['app/secret-ish.txt']!.mode).toBe(0o644);
    expect(by['app/main.js']!.mode).toBe(0o644);
    expect(by['nodejs/bin/node']!.mode).toBe(0o755);
    expect(by['app/lib/']!.mode).toBe(0o755);
    expect(by['tmp/']!.mode).toBe(0o1777);
    expect(by['home/nonroot/']).toMatchObject({ mode: 0o700, uid: 65532, gid: 65532 });
    expect(by['home/']).toMatchObject({ mode: 0o755, uid: 0, gid: 0 });
    expect(by['app/current']).toMatchObject({ type: 'symlink', linkname: 'lib/deep' });
    for (const r of rows) {
      expect(r.mtime).toBe(EPOCH);
      expect(r.uname).toBeUndefined();
      expect(r.gname).toBeUndefined();
    }
    // An independent reader (GNU tar) sees the same thing.
    const path = join(work, 'l.tar.gz');
    writeFileSync(path, layer.blob);
    const listing = execFileSync('tar', ['-tvzf', path, '--numeric-owner'], { encoding: 'utf8' });
    expect(listing).toMatch(/drwxrwxrwt 0\/0 +0 2023-11-14 \d\d:13 tmp\//);
    expect(listing).toMatch(/drwx------ 65532\/65532 +0 .* home\/nonroot\//);
  });

  it('stores long names and link targets (PAX where USTAR cannot) that GNU tar reads back', async () => {
    const long = `app/${'d'.repeat(150)}/${'f'.repeat(120)}.js`;
    const target = `/${'t'.repeat(130)}`;
    const layer = await createLayer({ sourceDateEpoch: EPOCH, entries: [{ type: 'file', path: long, content: 'x' }, { type: 'symlink', path: 'app/l', target }] });
    const rows = await listLayer(layer.blob);
    expect(rows.map((r) => r.name)).toContain(long);
    expect(rows.find((r) => r.name === 'app/l')!.linkname).toBe(target);
    const path = join(work, 'long.tar.gz');
    writeFileSync(path, layer.blob);
    const names = execFileSync('tar', ['-tzf', path], { encoding: 'utf8' }).trim().split('\n');
    expect(names).toContain(long);
  });
});

describe('createLayer: refusals', () => {
  const base = { sourceDateEpoch: EPOCH };
  it.each([
    ['../x'],
    ['app/../../etc/passwd'],
    ['/app/../x'],
    ['/'],
    ['./'],
    ['a\0b'],
  ])('refuses the path %j', async (p) => {
    expect(await codeOf(createLayer({ ...base, entries: [{ type: 'file', path: p, content: 'x' }] }))).toBe('UNSAFE_PATH');
  });

  it('refuses duplicates, NFC collisions and entries below a symlink', async () => {
    expect(await codeOf(createLayer({ ...base, entries: [{ type: 'file', path: 'a', content: '1' }, { type: 'file', path: '/a', content: '2' }] }))).toBe('UNSAFE_PATH');
    expect(await codeOf(createLayer({ ...base, entries: [{ type: 'file', path: 'a', content: '1' }, { type: 'dir', path: 'a' }] }))).toBe('UNSAFE_PATH');
    expect(await codeOf(createLayer({ ...base, entries: [{ type: 'dir', path: 'd', mode: 0o700 }, { type: 'dir', path: 'd', mode: 0o755 }] }))).toBe('UNSAFE_PATH');
    expect(await codeOf(createLayer({ ...base, entries: [{ type: 'file', path: 'caf\u00e9', content: '1' }, { type: 'file', path: 'cafe\u0301', content: '2' }] }))).toBe('UNSAFE_PATH');
    expect(await codeOf(createLayer({ ...base, entries: [{ type: 'symlink', path: 'lib', target: '/etc' }, { type: 'file', path: 'lib/passwd', content: 'x' }] }))).toBe('UNSAFE_PATH');
    // A file on disk clashing with an in-memory entry.
    expect(await codeOf(createLayer({ ...base, dirs: [{ dir: tree }], entries: [{ type: 'file', path: 'main.js', content: 'x' }] }))).toBe('UNSAFE_PATH');
    // Two sources with the same file: refused; sharing only directories: merged.
    await expect(createLayer({ ...base, dirs: [{ dir: tree, at: 'x' }, { dir: join(tree, 'lib'), at: 'x/lib' }] })).rejects.toThrow(/x\/lib\/deep\/util.js is given twice/);
    const other = join(work, 'other');
    mkdirSync(join(other, 'lib'), { recursive: true });
    writeFileSync(join(other, 'lib', 'other.js'), '1');
    const merged = await listLayer((await createLayer({ ...base, dirs: [{ dir: tree, at: 'x' }, { dir: other, at: 'x' }] })).blob);
    expect(merged.filter((r) => r.name === 'x/lib/')).toHaveLength(1);
    expect(merged.map((r) => r.name)).toContain('x/lib/other.js');
  });

  it('refuses bad options with a message that says what was expected', async () => {
    await expect(createLayer({ sourceDateEpoch: -1 })).rejects.toThrow(/expected an integer >= 0/);
    await expect(createLayer({ ...base, uid: 1.5 })).rejects.toThrow(/uid\/gid/);
    await expect(createLayer({ ...base, dirs: [{ dir: join(work, 'nope') }] })).rejects.toThrow(/cannot read it/);
    expect(normalizeLayerPath('/app//./main.js')).toBe('app/main.js');
  });
});
