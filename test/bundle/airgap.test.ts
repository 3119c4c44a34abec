/**
 * smoke-airgap on this host: a release of the real images (this host's platform), the real
 * support images signed and attested as ours, their bundle; then, inside a network namespace
 * with nothing but loopback, the bundle verified and loaded into a registry of its own and the
 * quickstart run from that registry until every service is healthy.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { smokeAirgap, type SmokeAirgapReport } from '../../ci/src/smoke/airgap.ts';
import { generateKeyPair } from '../../ci/src/sign/index.ts';
import { dockerEngine, skipUnless, tool } from '../helpers/tools.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const NODE = join(ROOT, 'node_modules/.bin/node');
const REGISTRY = process.env.STELLA_REGISTRY ?? '127.0.0.1:5000';
const NS = 'stellaops-airgap';
const root = process.getuid?.() === 0;
const skip = skipUnless([tool('docker-registry'), tool('ip'), dockerEngine(), ...(root ? [] : [{ name: 'root', ok: false, hint: 'needs root for ip netns and a Docker daemon' }])], 'smoke-airgap');

let work: string;
let report: SmokeAirgapReport;
const cli = async (args: string[]) => (await run(NODE, ['ci/src/cli.ts', ...args], { cwd: ROOT, maxBuffer: 64 << 20, env: { ...process.env, STELLA_BASE_LOCK_POLICY: 'refresh-if-unavailable' } })).stdout;

beforeAll(async () => {
  if (skip) return;
  work = mkdtempSync(join(tmpdir(), 'stella-airgap-test-'));
  const kp = generateKeyPair('');
  writeFileSync(join(work, 'cosign.key'), kp.privateKeyPem, { mode: 0o600 });
  writeFileSync(join(work, 'cosign.pub'), kp.publicKeyPem);
  const key = ['--key', `file:${join(work, 'cosign.key')}`];
  const rev = ['--git-commit', '0'.repeat(40), '--source-date-epoch', '1700000000'];
  const t = Date.now();
  const base = JSON.parse(await cli(['build-base', '--registry', REGISTRY, '--namespace', NS, '--oci-layout', join(work, 'base'), ...rev])) as { ref: string };
  const platform = `linux/${process.arch === 'arm64' ? 'arm64' : 'amd64'}`;
  await cli(['build', '--version', 'edge', '--base', `oci:${join(work, 'base')}`, '--registry', REGISTRY, '--namespace', NS, '--platforms', platform, '--output', join(work, 'build.json'), ...rev]);
  const images = ['--images', join(work, 'build.json')];
  await cli(['sbom', ...images, ...key, ...rev]);
  await cli(['sign', ...images, ...key]);
  await cli(['provenance', ...images, '--version', 'edge', '--base', base.ref, ...key, ...rev]);
  // The support images as a release leaves them: built (cached), pushed, signed and attested.
  await cli(['support-images', '--registry', REGISTRY, '--sbom-dir', join(work, 'sbom'), '--lock-file', join(work, 'support.lock.json')]);
  await cli(['attest-support-images', '--version', 'edge', '--support-lock', join(work, 'support.lock.json'), '--sbom-dir', join(work, 'sbom'), ...key, ...rev]);
  await cli(['bundle', ...images, '--version', 'edge', '--support-lock', join(work, 'support.lock.json'), ...key, '--out', join(work, 'out'), ...rev]);
  console.log(`smoke-airgap: release, support images and bundle in ${((Date.now() - t) / 1000).toFixed(0)} s`);
  report = await smokeAirgap({ source: ROOT, bundle: join(work, 'out', 'stella-bundle-edge.tar.zst'), publicKey: join(work, 'cosign.pub'), workDir: join(work, 'airgap'), timeoutSeconds: 420, progress: (l) => console.log(`smoke-airgap: ${l}`) });
  console.log(`smoke-airgap: load ${report.seconds.load} s; quickstart ${report.seconds.compose} s (start → healthy ${report.seconds.startToHealthy} s)`);
}, 3_000_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.skipIf(skip)('smoke-airgap: install from the bundle with no network', () => {
  it('runs in a namespace with no route: the routing table is empty and outside connections fail', () => {
    expect(report.isolation.routes).toBe('');
    expect(report.isolation.refused.length).toBeGreaterThanOrEqual(2);
    for (const r of report.isolation.refused) expect(r).toMatch(/unreachable|refused|No route/i);
  });

  it('verifies and loads the bundle there, every image re-verified from the registry inside', () => {
    expect(report.images).toBeGreaterThanOrEqual(17);
    expect(report.failures.filter((f) => !f.startsWith('quickstart:'))).toEqual([]);
  });

  it('brings the quickstart up from that registry until every service is healthy', () => {
    expect(report.compose?.failures).toEqual([]);
    expect(report.seconds.startToHealthy).toBeGreaterThan(0);
  });
});
