/**
 * The JavaScript build: every service bundles, the output is byte-identical across two
 * builds, `npmPackages` names exactly the bundled packages (with licenses and lockfile
 * integrity), bundles stay within the 5 MB budget, and the HEALTHCHECK helper works.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { SERVICE_NAMES } from '../../ci/src/catalog/types.ts';
import { buildServices, SIZE_BUDGET_BYTES, type BuiltService } from '../../services/build.ts';
import { StellaError } from '../../ci/src/errors.ts';
import { BUILD_DATE, COMMIT, NODE, VERSION, startService } from './harness.ts';

const run = promisify(execFile);
let root: string;
let first: BuiltService[];
let second: BuiltService[];

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'stella-build-'));
  const opts = { version: VERSION, gitCommit: COMMIT, buildDate: BUILD_DATE };
  first = await buildServices({ ...opts, outDir: join(root, 'a') });
  second = await buildServices({ ...opts, outDir: join(root, 'b') });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('buildServices', () => {
  it('builds all 11 services with main.js, build-info.json and healthcheck.js', () => {
    expect(first.map((b) => b.service)).toEqual([...SERVICE_NAMES]);
    for (const b of first) {
      expect(b.files).toEqual(expect.arrayContaining(['main.js', 'build-info.json', 'healthcheck.js', 'package.json']));
      expect(JSON.parse(readFileSync(join(b.dir, 'build-info.json'), 'utf8'))).toEqual({ service: b.service, version: VERSION, gitCommit: COMMIT, buildDate: BUILD_DATE });
      expect(readFileSync(join(b.dir, 'main.js'), 'utf8')).not.toMatch(/sourceMappingURL/);
    }
    const byName = new Map(first.map((b) => [b.service, b]));
    expect(byName.get('console')!.files).toEqual(expect.arrayContaining(['ui/index.html', 'ui/console.js', 'ui/console.css']));
    expect(byName.get('api')!.files).toEqual(expect.arrayContaining(['seed/tenant.json', 'seed/sboms.json', 'seed/advisories.json', 'seed/vex.json', 'seed/policy-baseline.json', 'seed/task-pack.json']));
  });

  it('is deterministic: two builds are byte-identical', () => {
    for (const [i, a] of first.entries()) {
      const b = second[i]!;
      expect(b.files).toEqual(a.files);
      expect(b.npmPackages).toEqual(a.npmPackages);
      for (const f of a.files) expect(readFileSync(join(b.dir, f)).equals(readFileSync(join(a.dir, f))), `${a.service}/${f}`).toBe(true);
    }
  });

  it('lists exactly the bundled npm packages with version, license and lockfile integrity', () => {
    const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, { version: string; integrity?: string }> };
    for (const b of first) {
      const names = b.npmPackages.map((p) => p.name);
      expect(names).toEqual(expect.arrayContaining(['pg', 'ioredis', 'nats', 'prom-client']));
      expect(names).not.toContain('esbuild');
      expect(names).not.toContain('@types/node');
      for (const p of b.npmPackages) {
        expect(p.license, `${p.name} license`).toMatch(/\S/);
        expect(lock.packages[p.path]?.version, `${p.path} in package-lock.json`).toBe(p.version);
        expect(p.integrity).toBe(lock.packages[p.path]?.integrity);
      }
    }
    // The S3 client and the OpenTelemetry SDK are in every bundle (the shared runtime: readiness, tracing).
    for (const b of first) expect(b.npmPackages.map((p) => p.name)).toEqual(expect.arrayContaining(['@aws-sdk/client-s3', '@opentelemetry/sdk-trace', '@opentelemetry/exporter-trace-otlp-http']));
    expect(first.find((b) => b.service === 'export')!.npmPackages.map((p) => p.name)).not.toContain('aws4');
  });

  it('keeps every service within the 5 MB budget', () => {
    for (const b of first) expect(b.totalBytes, `${b.service}: ${b.totalBytes} bytes`).toBeLessThanOrEqual(SIZE_BUDGET_BYTES);
  });

  it('rejects a commit that is not 40 hex characters and a date that is not ISO 8601', async () => {
    const base = { outDir: join(root, 'x'), version: VERSION, gitCommit: COMMIT, buildDate: BUILD_DATE };
    await expect(buildServices({ ...base, gitCommit: 'abc' })).rejects.toThrow(/gitCommit "abc" is not 40 lowercase hex/);
    await expect(buildServices({ ...base, buildDate: 'yesterday' })).rejects.toThrow(/buildDate "yesterday" is not an ISO 8601/);
    await expect(buildServices({ ...base, services: ['nope'] })).rejects.toBeInstanceOf(StellaError);
  });

  it('runs as a CLI and reports each size', async () => {
    const out = join(root, 'cli');
    const r = await run(NODE, ['services/build.ts', '--out', out, '--version', VERSION, '--commit', COMMIT, '--date', BUILD_DATE, '--services', 'ai,notify'], { timeout: 120_000 });
    expect(r.stdout).toMatch(/^ai\s+\d+\.\d+ MB\s+main\.js \d+ KiB\s+\d+ npm packages/m);
    expect(r.stdout).toMatch(/^notify\s+/m);
    expect(readFileSync(join(out, 'ai', 'main.js')).equals(readFileSync(join(first.find((b) => b.service === 'ai')!.dir, 'main.js')))).toBe(true);
  });

  it('healthcheck.js (liveness, or --readiness) exits 0 while the service answers 200 and 1 when nothing answers', async () => {
    const ai = first.find((b) => b.service === 'ai')!;
    const svc = await startService(ai.dir);
    try {
      const ok = await run(NODE, [join(ai.dir, 'healthcheck.js')], { env: { STELLA_HTTP_PORT: String(svc.port) }, timeout: 10_000 });
      expect(ok.stdout).toBe('');
      const ready = await run(NODE, [join(ai.dir, 'healthcheck.js'), '--readiness'], { env: { STELLA_HTTP_PORT: String(svc.port) }, timeout: 10_000 });
      expect(ready.stderr).toBe('');
    } finally {
      expect(await svc.stop()).toBe(0);
    }
    await expect(run(NODE, [resolve(ai.dir, 'healthcheck.js')], { env: { STELLA_HTTP_PORT: String(svc.port) }, timeout: 10_000 })).rejects.toMatchObject({ code: 1 });
  });
});
