/**
 * smoke-compose on a FRESH Docker daemon (own empty data-root, exec-root, socket; started by
 * the function and stopped after), with images only in the local registry: the StellaOps
 * images this test builds from the tree (build-base + build, this host's platform), the
 * support images from deploy/support-images.lock.json. One run of the function, then one
 * assertion per outcome: all healthy (timed), loopback only, AOC rule, seed, idempotent
 * re-run, backup → reset → restore compared row for row and byte for byte, EXPOSE_PUBLIC=1, and
 * last the tls profile (quickstart.sh --tls): HTTPS to the console and the API verified against
 * the generated CA, plain HTTP still on loopback. The collector: a span from the API, a scraped
 * metric. Every support service healthy by its own probe.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalog } from '../../ci/src/catalog/index.ts';
import { SUPPORT_LOCK_PATH, parseSupportLock } from '../../ci/src/compose/index.ts';
import { smokeCompose, type SmokeReport } from '../../ci/src/smoke/index.ts';
import { file, skipUnless, tool } from '../helpers/tools.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const NODE = join(ROOT, 'node_modules/.bin/node');
const REGISTRY = process.env.STELLA_REGISTRY ?? '127.0.0.1:5000';
const NAMESPACE = 'stellaops-smoke';

function registryUp(): boolean {
  return spawnSync('curl', ['-sf', '-o', '/dev/null', `http://${REGISTRY}/v2/`], { timeout: 5000 }).status === 0;
}

/** A candidate lock (STELLA_SMOKE_SUPPORT_LOCK=<file>) instead of the committed one: smoke-compose --support-lock. */
const CANDIDATE_LOCK = process.env.STELLA_SMOKE_SUPPORT_LOCK;
const LOCK_FILE = CANDIDATE_LOCK ?? join(ROOT, SUPPORT_LOCK_PATH);

/** Every support image of the lock is in its registry (pulled by digest, as the fresh daemon will). */
function supportImagesPresent(): { ok: boolean; detail: string } {
  const lock = parseSupportLock(JSON.parse(readFileSync(LOCK_FILE, 'utf8')), LOCK_FILE);
  const missing = ['postgres', 'redis', 'object-store', 'queue', 'otel-collector', 'nginx'].filter((n) => {
    const i = lock[n as keyof typeof lock];
    if (!i) return true;
    const [host, ...path] = i.repository.split('/');
    return spawnSync('curl', ['-sf', '-o', '/dev/null', '-I', '-H', 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json', `http://${host}/v2/${path.join('/')}/manifests/${i.digest}`], { timeout: 5000 }).status !== 0;
  });
  return { ok: missing.length === 0, detail: missing.join(', ') };
}

const support = existsSync(LOCK_FILE) ? supportImagesPresent() : { ok: false, detail: 'all (no lock)' };
const skip = skipUnless(
  [
    'docker',
    'dockerd',
    'iptables',
    'ss',
    { name: 'root (a fresh dockerd mounts overlays)', ok: process.getuid?.() === 0, hint: 'run the tests as root, as .ci/run does' },
    { name: `the local registry ${REGISTRY}`, ok: registryUp(), hint: 'scripts/host-setup.sh starts it' },
    file(LOCK_FILE, 'the support image lock', '`stella-release support-images` writes it'),
  ].map((n) => (typeof n === 'string' ? tool(n) : n)),
  'smoke-compose on a fresh Docker daemon',
);

let work: string;
let report: SmokeReport;

beforeAll(async () => {
  if (skip) return;
  work = mkdtempSync(join(tmpdir(), 'stella-smoke-test-'));
  const cli = (args: string[]) => run(NODE, ['ci/src/cli.ts', ...args], { cwd: ROOT, maxBuffer: 64 << 20, env: { ...process.env, STELLA_BASE_LOCK_POLICY: 'refresh-if-unavailable' } });
  const platform = `linux/${process.arch === 'arm64' ? 'arm64' : 'amd64'}`;
  if (!support.ok) {
    // A fresh host's registry lacks them: build them here (reproducible: the same digests as the
    // committed lock, or the smoke would not test what the lock pins).
    const built = join(work, 'support-images.lock.json');
    const ts = Date.now();
    await cli(['support-images', '--registry', REGISTRY, '--lock-file', built, ]);
    const want = parseSupportLock(JSON.parse(readFileSync(LOCK_FILE, 'utf8')), LOCK_FILE);
    const got = parseSupportLock(JSON.parse(readFileSync(built, 'utf8')), built);
    for (const n of Object.keys(want) as (keyof typeof want)[]) {
      if (got[n]?.digest !== want[n]?.digest) throw new Error(`support image ${n}: built ${got[n]?.digest}, the lock pins ${want[n]?.digest} (missing from ${REGISTRY}: ${support.detail})`);
    }
    console.log(`smoke-compose: support images (${support.detail}) built and pushed to ${REGISTRY} in ${((Date.now() - ts) / 1000).toFixed(1)} s`);
  }
  const t = Date.now();
  await cli(['build-base', '--registry', REGISTRY, '--namespace', NAMESPACE, '--oci-layout', join(work, 'base')]);
  await cli(['build', '--version', 'edge', '--base', `oci:${join(work, 'base')}`, '--registry', REGISTRY, '--namespace', NAMESPACE, '--platforms', platform, '--output', join(work, 'build.json')]);
  console.log(`smoke-compose: images built and pushed to ${REGISTRY}/${NAMESPACE} in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  report = await smokeCompose({ source: ROOT, images: join(work, 'build.json'), workDir: join(work, 'run'), ...(CANDIDATE_LOCK ? { supportLock: CANDIDATE_LOCK } : {}), roundTrip: true, exposePublic: true, tls: true, timeoutSeconds: 300, progress: (l) => console.log(`smoke-compose: ${l}`) });
  console.log(`smoke-compose: start → all healthy ${report.startToHealthySeconds} s; start → console answers ${report.startToConsoleSeconds} s`);
  if (report.roundTrip) console.log(`smoke-compose: backup ${report.roundTrip.backupSeconds} s (${report.roundTrip.backupBytes} bytes), restore ${report.roundTrip.restoreSeconds} s`);
  if (report.failures.length) console.log(`smoke-compose failures:\n  - ${report.failures.join('\n  - ')}`);
}, 1_800_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const failuresAbout = (re: RegExp) => report.failures.filter((f) => re.test(f));

describe.skipIf(skip)('smoke-compose on a fresh Docker daemon', () => {
  it('ran on a daemon it started, which is gone after', () => {
    expect(report.freshDaemon).toBe(true);
    expect(existsSync(join(work, 'run', 'daemon'))).toBe(false);
  });

  it('quickstart.sh --check passes on the fresh host and changes nothing', () => {
    expect(failuresAbout(/--check/)).toEqual([]);
  });

  it('brings every service to healthy, timed, and prints the admin credentials', () => {
    expect(failuresAbout(/quickstart\.sh failed|is not healthy|console|credentials/)).toEqual([]);
    for (const s of catalog.services) expect(report.services[s.name], s.name).toMatch(/\(healthy\)/);
    expect(report.startToHealthySeconds).toBeGreaterThan(0);
    expect(report.startToConsoleSeconds).toBeLessThanOrEqual(report.startToHealthySeconds! + 1);
  });

  it('listens only on 127.0.0.1 by default', () => {
    expect(report.listeners.length).toBeGreaterThanOrEqual(4);
    for (const l of report.listeners) expect(l).toMatch(/^127\.0\.0\.1:/);
  });

  it('with EXPOSE_PUBLIC=1, on every address', () => {
    expect(failuresAbout(/EXPOSE_PUBLIC/)).toEqual([]);
    expect(report.exposedListeners!.length).toBeGreaterThanOrEqual(4);
    for (const l of report.exposedListeners!) expect(l).toMatch(/^(0\.0\.0\.0|\*|\[::\]):/);
  });

  it('keeps the AOC rule: conseiller and excitator say merge: false', () => {
    expect((report.capabilities.conseiller as { merge: boolean }).merge).toBe(false);
    expect((report.capabilities.excitator as { merge: boolean }).merge).toBe(false);
  });

  it('serves the seed data through the API', () => {
    expect(failuresAbout(/seed|tokens/)).toEqual([]);
  });

  it('the collector received a span from the API and scraped the services\' /metrics', () => {
    console.log(`smoke-compose: collector: ${report.telemetry!.scrapedMetrics} scraped metric lines, ${report.telemetry!.spans} spans (${report.telemetry!.apiSpans} from stella-api) from ${report.telemetry!.spanServices.join(', ') || 'no service'}`);
    expect(report.telemetry!.scrapedMetrics).toBeGreaterThan(0);
    expect(report.telemetry!.apiSpans).toBeGreaterThan(0);
    expect(report.telemetry!.spanServices).toContain('stella-api');
  });

  it('every support service is healthy by its own health check (NATS, SeaweedFS, the collector: stella-probe)', () => {
    expect(failuresAbout(/health check/)).toEqual([]);
    for (const s of ['postgres', 'redis', 'object-store', 'nats', 'otel-collector']) expect(report.services[s], s).toMatch(/\(healthy\)/);
  });

  it('the tls profile: HTTPS to console and API verified against the generated CA; plain HTTP stays on loopback', () => {
    expect(failuresAbout(/tls|TLS|https/)).toEqual([]);
    const t = report.tls!;
    expect(t.proxy).toMatch(/\(healthy\)/);
    expect(t.console).toBe(200);
    expect(t.api).toBe(200);
    expect(t.untrustedRefused).toBe(true);
    expect(t.keyMode).toBe('0600');
    console.log(`smoke-compose: tls listeners ${t.listeners.join(', ')}`);
  });

  it('changes nothing when run again: same containers, secrets and .env', () => {
    expect(report.rerun).toEqual({ recreated: [], secretsKept: true, envKept: true });
    expect(failuresAbout(/second quickstart/)).toEqual([]);
  });

  it('backs up, resets and restores everything: every table row for row, every object byte for byte', () => {
    expect(failuresAbout(/backup|reset|restore|round trip/)).toEqual([]);
    const rt = report.roundTrip!;
    expect(Object.keys(rt.before.tables).length).toBeGreaterThan(0);
    expect(rt.after.tables).toEqual(rt.before.tables);
    expect(rt.after.objects).toEqual(rt.before.objects);
    expect(rt.after.redis).toEqual(rt.before.redis);
    expect(rt.after.streams).toEqual(rt.before.streams);
  });

  it('has no other failure', () => {
    expect(report.failures).toEqual([]);
    expect(readFileSync(LOCK_FILE, 'utf8')).toMatch(/"images"/);
  });
});
