/**
 * The build's input cache keys (ci/src/build/cache.ts), on a scratch copy of the checkout:
 * what the JavaScript build of a service is keyed on (its own sources, the shared ones, the
 * data the build copies, the locks), that a change reaches exactly the services it should, that
 * every file a real bundle carries comes from hashed inputs (so a new data folder in
 * services/build.ts cannot go unnoticed), the build context digest, and the cache file itself.
 */
import { appendFileSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BuildCache, FileHashes, contextDigest, imageKey, importClosure, jsInputFiles, jsKey } from '../../ci/src/build/cache.ts';
import { SERVICE_NAMES } from '../../ci/src/catalog/index.ts';
import { scratchSource } from '../release/fixture.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const keyOf = (source: string, service: string) => jsKey(new FileHashes(), { source, service, version: 'edge', gitCommit: '0'.repeat(40), buildDate: '2023-11-14T22:13:20Z' });
const allKeys = (source: string) => Object.fromEntries(SERVICE_NAMES.map((s) => [s, keyOf(source, s)]));
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('the JavaScript inputs of a service', () => {
  it("are its own sources, the shared runtime and the ci/src modules it imports, the build script, the data it copies and the locks; not another service's sources or node_modules", () => {
    const files = jsInputFiles(ROOT, 'api');
    for (const f of ['services/src/api/main.ts', 'services/src/runtime/service.ts', 'services/src/shared/migrate.ts', 'services/build.ts', 'ci/src/catalog/config.ts', 'ci/src/redact/index.ts', 'ci/src/build/app-sbom.ts', 'services/seed/tenant.json', 'package-lock.json', 'services/package.json']) {
      expect(files, f).toContain(f);
    }
    expect(files.some((f) => f.startsWith('docs/install/'))).toBe(true);
    expect(files.filter((f) => f.startsWith('services/src/console/') || f.startsWith('services/src/ledger/'))).toEqual([]);
    expect(files.filter((f) => f.includes('node_modules'))).toEqual([]);
    // ci/src only where an import reaches it: not the release pipeline.
    expect(files.filter((f) => f.startsWith('ci/src/release/'))).toEqual([]);
  });

  it('the import closure follows static, re-exported and dynamic relative imports, and JSON', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stella-closure-'));
    mkdirSync(join(dir, 'lib'));
    writeFileSync(join(dir, 'main.ts'), "import { a } from './lib/a.ts';\nexport * from './lib/b';\nconst c = await import('./lib/c.js');\nimport data from './lib/d.json' with { type: 'json' };\nimport 'node:fs';\nimport x from 'pg';\n");
    writeFileSync(join(dir, 'lib/a.ts'), "import './e.ts';\nexport const a = 1;\n");
    for (const f of ['b.ts', 'c.ts', 'e.ts']) writeFileSync(join(dir, 'lib', f), 'export {};\n');
    writeFileSync(join(dir, 'lib/d.json'), '{}');
    writeFileSync(join(dir, 'lib/unused.ts'), '');
    expect(importClosure(dir, ['main.ts'])).toEqual(['lib/a.ts', 'lib/b.ts', 'lib/c.ts', 'lib/d.json', 'lib/e.ts', 'main.ts']);
  });

  describe('on a scratch checkout', () => {
    let src: string;
    let before: Record<string, string>;
    beforeAll(() => {
      src = scratchSource(join(mkdtempSync(join(tmpdir(), 'stella-jskey-')), 'src'));
      before = allKeys(src);
    });

    const changed = () => {
      const now = allKeys(src);
      const moved = SERVICE_NAMES.filter((s) => now[s] !== before[s]);
      before = now;
      return moved;
    };

    it('are stable: the same checkout gives the same keys', () => {
      expect(changed()).toEqual([]);
    });

    it("a change in one service's folder changes only that service's key (a source file, and data such as the console UI)", () => {
      appendFileSync(join(src, 'services/src/policy/main.ts'), '\n// policy changed\n');
      expect(changed()).toEqual(['policy']);
      appendFileSync(join(src, 'services/src/console/ui/console.css'), '\n/* restyled */\n');
      expect(changed()).toEqual(['console']);
    });

    it('a change in shared code, the seed data, the offline docs, the build script or the lock changes every service it reaches', () => {
      appendFileSync(join(src, 'services/src/runtime/http.ts'), '\n// shared\n');
      expect(changed()).toEqual([...SERVICE_NAMES]);
      appendFileSync(join(src, 'services/seed/vex.json'), '\n');
      expect(changed()).toEqual([...SERVICE_NAMES]);
      appendFileSync(join(src, readdirSync(join(src, 'docs/install')).map((f) => `docs/install/${f}`).find((f) => f.endsWith('.md'))!), '\nmore\n');
      expect(changed()).toEqual([...SERVICE_NAMES]);
      appendFileSync(join(src, 'services/build.ts'), '\n// build script\n');
      expect(changed()).toEqual([...SERVICE_NAMES]);
      writeFileSync(join(src, 'package-lock.json'), readFileSync(join(src, 'package-lock.json'), 'utf8').replace(/\n$/, '\n\n'));
      expect(changed()).toEqual([...SERVICE_NAMES]);
    });

    it('the version, commit and build date baked into a bundle are in its key', () => {
      const k = (o: object) => jsKey(new FileHashes(), { source: src, service: 'api', version: 'edge', gitCommit: '0'.repeat(40), buildDate: '2023-11-14T22:13:20Z', ...o });
      const base = k({});
      expect(new Set([base, k({ version: 'v1.0.0' }), k({ gitCommit: '1'.repeat(40) }), k({ buildDate: '2024-01-01T00:00:00Z' })]).size).toBe(4);
    });
  });

  it('every file a real bundle carries is generated by the build or is the bytes of one of its hashed inputs', async () => {
    const { buildServices } = (await import(join(ROOT, 'services', 'build.ts'))) as { buildServices(o: object): Promise<{ service: string; dir: string; files: string[] }[]> };
    const out = mkdtempSync(join(tmpdir(), 'stella-bundles-'));
    // The services whose bundles carry copied data (console: UI and docs; api, conseiller, excitator: seed).
    const built = await buildServices({ outDir: out, version: 'edge', gitCommit: '0'.repeat(40), buildDate: '2023-11-14T22:13:20Z', services: ['console', 'api', 'conseiller', 'excitator'] });
    const GENERATED = new Set(['main.js', 'build-info.json', 'healthcheck.js', 'package.json', 'sbom.spdx.json']);
    for (const b of built) {
      const inputs = new Set(jsInputFiles(ROOT, b.service).map((f) => sha(readFileSync(join(ROOT, f)))));
      const copied = b.files.filter((f) => !GENERATED.has(f));
      expect(copied.length, b.service).toBeGreaterThan(0);
      const unhashed = copied.filter((f) => !inputs.has(sha(readFileSync(join(b.dir, f)))));
      expect(unhashed, `${b.service}: files not from its hashed inputs (add their folder to JS_DATA_DIRS in ci/src/build/cache.ts)`).toEqual([]);
    }
  }, 120_000);
});

describe('the build context digest', () => {
  it("covers each path, content, executable bit and link target of the COPY sources, and nothing outside them", () => {
    const ctx = mkdtempSync(join(tmpdir(), 'stella-ctx-'));
    mkdirSync(join(ctx, 'dist/app/api/sub'), { recursive: true });
    writeFileSync(join(ctx, 'dist/app/api/main.js'), 'a');
    writeFileSync(join(ctx, 'dist/app/api/sub/x.json'), '{}');
    writeFileSync(join(ctx, 'elsewhere.txt'), 'x');
    const d = () => contextDigest(ctx, ['dist/app/api/']);
    const seen = new Set([d()]);
    const differs = (what: string) => {
      const now = d();
      expect(seen.has(now), what).toBe(false);
      seen.add(now);
    };
    writeFileSync(join(ctx, 'elsewhere.txt'), 'y');
    expect(seen.has(d())).toBe(true);
    writeFileSync(join(ctx, 'dist/app/api/main.js'), 'b');
    differs('content');
    chmodSync(join(ctx, 'dist/app/api/main.js'), 0o755);
    differs('executable bit');
    symlinkSync('main.js', join(ctx, 'dist/app/api/link'));
    differs('a new symlink');
    writeFileSync(join(ctx, 'dist/app/api/sub/y.json'), '{}');
    differs('a new file');
    // Missing sources still give a digest (the build then fails on them), one per path.
    expect(contextDigest(ctx, ['dist/app/ledger/'])).not.toBe(contextDigest(ctx, ['dist/app/other/']));
  });

  it('the image key changes with each of its inputs', () => {
    const o = { context: 'c', dockerfile: 'FROM x', base: 'r/b@sha256:' + 'a'.repeat(64), platforms: ['linux/amd64', 'linux/arm64'], buildArgs: { VERSION: 'edge' }, builder: 'b', repository: 'r/n/stella-api' };
    const keys = [imageKey(o), imageKey({ ...o, context: 'd' }), imageKey({ ...o, dockerfile: 'FROM y' }), imageKey({ ...o, base: 'r/b@sha256:' + 'b'.repeat(64) }), imageKey({ ...o, platforms: ['linux/arm64', 'linux/amd64'] }), imageKey({ ...o, buildArgs: { VERSION: 'v1' } }), imageKey({ ...o, builder: 'c' }), imageKey({ ...o, repository: 'r/m/stella-api' })];
    expect(new Set(keys).size).toBe(keys.length);
    expect(imageKey({ ...o, buildArgs: { B: '1', A: '2' } })).toBe(imageKey({ ...o, buildArgs: { A: '2', B: '1' } }));
  });
});

describe('the cache file', () => {
  const entry = { js: 'j', context: 'c', image: 'i', repository: 'r/n/stella-api', digest: `sha256:${'a'.repeat(64)}`, platforms: { 'linux/amd64': `sha256:${'b'.repeat(64)}` } };

  it('round-trips its entries, and ignores what it cannot read or what is not an entry', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stella-cachefile-'));
    const file = join(dir, 'sub', 'build.json');
    const c = await BuildCache.open(file);
    expect(c.get('api')).toBeUndefined();
    c.set('api', entry);
    await c.save();
    expect((await BuildCache.open(file)).get('api')).toEqual(entry);
    expect((await BuildCache.open(file, { read: false })).get('api')).toBeUndefined();
    writeFileSync(file, JSON.stringify({ version: 1, images: { api: { ...entry, digest: 'latest' }, ledger: entry } }));
    const partial = await BuildCache.open(file);
    expect([partial.get('api'), partial.get('ledger')]).toEqual([undefined, entry]);
    writeFileSync(file, '{not json');
    expect((await BuildCache.open(file)).get('ledger')).toBeUndefined();
    writeFileSync(file, JSON.stringify({ version: 99, images: { ledger: entry } }));
    expect((await BuildCache.open(file)).get('ledger')).toBeUndefined();
  });
});
