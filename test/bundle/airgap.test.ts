/**
 * smoke-airgap on this host: a release of the real images (this host's platform), the real
 * support images signed and attested as ours, their bundle; then, inside a network namespace
 * with nothing but loopback, the bundle verified and loaded into a registry of its own, and
 * `quickstart.sh --bundle` run as an operator runs it (its own registry from the bundle, load.sh,
 * the quickstart from there) until every service is healthy; before it, in the same smoke step,
 * the quickstart from the release's images on a fresh Docker daemon (smoke-compose). Then, on the real cluster of
 * scripts/cluster.sh (started here when it is not up, stopped after only then), the bundle's
 * chart installed from a registry that only bundle-load filled.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { smokeAirgap, type SmokeAirgapReport } from '../../ci/src/smoke/airgap.ts';
import { generateKeyPair, loadPrivateKey, type SigningKey } from '../../ci/src/sign/index.ts';
import { bundleReleaseStep } from '../../ci/src/bundle/release-step.ts';
import type { ReleaseStepContext } from '../../ci/src/release/hooks.ts';
import { Registries, signingWithKey } from '../../ci/src/release/context.ts';
import { planTags } from '../../ci/src/tags/index.ts';
import { SUPPORT_IMAGE_NAMES } from '../../ci/src/support/index.ts';
import type { ReleaseRecord } from '../../ci/src/release/pipeline.ts';
import type { StepTiming } from '../../ci/src/release/progress.ts';
import { sha256File } from '../../ci/src/base/fetch.ts';
import { dockerEngine, skipUnless, tool } from '../helpers/tools.ts';
import { runForStatus } from '../../ci/src/base/exec.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const NODE = join(ROOT, 'node_modules/.bin/node');
const REGISTRY = process.env.STELLA_REGISTRY ?? '127.0.0.1:5000';
// A namespace per run: the rc's tags are immutable, and the shared registry keeps them across runs.
const NS = `stellaops-airgap-${process.pid}-${Date.now().toString(36)}`;
const root = process.getuid?.() === 0;
const skip = skipUnless([tool('docker-registry'), tool('ip'), tool('oras'), tool('zstd'), dockerEngine(), ...(root ? [] : [{ name: 'root', ok: false, hint: 'needs root for ip netns and a Docker daemon' }])], 'smoke-airgap');
// The Helm phase needs what scripts/cluster.sh needs (test/cluster/cluster.test.ts runs the same cluster).
const skipHelm =
  skip ||
  skipUnless(
    [...['go', 'gcc', 'containerd', 'runc', 'iptables', 'helm'].map((t) => tool(t)), { name: 'the CNI plugins (/usr/lib/cni/bridge)', ok: existsSync('/usr/lib/cni/bridge'), hint: 'scripts/host-setup.sh installs containernetworking-plugins' }],
    "smoke-airgap's Helm phase on the cluster of scripts/cluster.sh",
  );
let clusterStarted = false;
let releaseKey: SigningKey;

const VERSION = 'v0.0.1-rc.1';
let work: string;
let report: SmokeAirgapReport;
let bundleRecord: ReleaseRecord['bundle'];
let bundleStep: StepTiming | undefined;
let rerunBundle: { record: ReleaseRecord['bundle']; step: StepTiming | undefined; smoke: StepTiming | undefined; support: StepTiming | undefined; records: NonNullable<ReleaseRecord['smoke']>; pageKept: string[] };
let rc: ReleaseRecord;
let promoted: { status: number | null; stdout: string; stderr: string };
const runFor = (cmd: string, args: string[]) => runForStatus(cmd, args, { cwd: ROOT, env: { ...process.env }, timeoutMs: 600_000 });
const cli = async (args: string[]) => (await run(NODE, ['ci/src/cli.ts', ...args], { cwd: ROOT, maxBuffer: 64 << 20, env: { ...process.env, STELLA_BASE_LOCK_POLICY: 'refresh-if-unavailable' } })).stdout;

beforeAll(async () => {
  if (skip) return;
  work = mkdtempSync(join(tmpdir(), 'stella-airgap-test-'));
  const kp = generateKeyPair('');
  releaseKey = loadPrivateKey(kp.privateKeyPem, '');
  writeFileSync(join(work, 'cosign.key'), kp.privateKeyPem, { mode: 0o600 });
  writeFileSync(join(work, 'cosign.pub'), kp.publicKeyPem);
  const key = ['--key', `file:${join(work, 'cosign.key')}`];
  const rev = ['--git-commit', '0'.repeat(40), '--source-date-epoch', '1700000000'];
  const t = Date.now();
  // The release as a release manager runs it: an rc with the support images built (so the
  // bundle step can attest them under the release key), the bundle made by its bundle step, and
  // with --smoke its smoke slot: smoke-airgap, whose compose phase is quickstart.sh --bundle in a
  // network namespace with no route.
  const release = (out: string, ...more: string[]) => cli(['release', '--version', VERSION, '--registry', REGISTRY, '--namespace', NS, '--support-images', 'build', ...key, ...rev, '--out', out, ...more]);
  const first = JSON.parse(await release(join(work, 'dist'), '--smoke')) as ReleaseRecord;
  rc = first;
  bundleRecord = first.bundle;
  bundleStep = first.steps?.find((x) => x.step === 'bundle');
  // A re-release with nothing changed (--smoke again) keeps the bundle it made, the smoke records
  // that passed for these digests, and the release page byte for byte.
  const page = ['release.json', 'checksums.txt', 'checksums.txt.sigstore.json'].map((f) => [f, readFileSync(join(work, 'dist', f))] as const);
  const again = JSON.parse(await release(join(work, 'dist'), '--smoke')) as ReleaseRecord;
  rerunBundle = { record: again.bundle, step: again.steps?.find((x) => x.step === 'bundle'), smoke: again.steps?.find((x) => x.step === 'smoke'), support: again.steps?.find((x) => x.step === 'support-images'), records: again.smoke ?? [], pageKept: page.filter(([f, b]) => !readFileSync(join(work, 'dist', f)).equals(b)).map(([f]) => f) };
  // The rc's smoke records (in dist/release.json) are what promote checks (dry run: nothing is tagged).
  promoted = await runFor(NODE, ['ci/src/cli.ts', 'promote', '--rc-record', join(work, 'dist', 'release.json'), '--public-key', join(work, 'cosign.pub'), '--dry-run', '--out', join(work, 'promoted')]);
  console.log(`smoke-airgap: release, support images and bundle in ${((Date.now() - t) / 1000).toFixed(0)} s`);
  let cluster: { kubeconfig: string; kubectlDir: string } | undefined;
  if (!skipHelm) {
    const up = await run('bash', [join(ROOT, 'scripts/cluster.sh'), 'up'], { timeout: 45 * 60_000, maxBuffer: 16 << 20 });
    const [kubeconfig, how] = up.stdout.trim().split('\n');
    clusterStarted = how === 'started';
    cluster = { kubeconfig: kubeconfig!, kubectlDir: readFileSync(join(kubeconfig!, '../../bin'), 'utf8').trim() };
    console.log(`smoke-airgap: cluster ${how} (${kubeconfig})`);
  }
  // The isolation, the load and (with the cluster) the chart, reported in detail; the compose
  // phase ran in the release's smoke step above.
  report = await smokeAirgap({ source: ROOT, bundle: bundleRecord!.path, publicKey: join(work, 'cosign.pub'), workDir: join(work, 'airgap'), compose: false, timeoutSeconds: 420, ...(cluster ?? {}), progress: (l) => console.log(`smoke-airgap: ${l}`) });
  console.log(`smoke-airgap: load ${report.seconds.load} s; helm: load ${report.seconds.helmLoad ?? '-'} s, install ${report.seconds.helmInstall ?? '-'} s`);
}, 3_000_000);

afterAll(async () => {
  if (clusterStarted) await run('bash', [join(ROOT, 'scripts/cluster.sh'), 'down'], { timeout: 10 * 60_000 });
  if (work) rmSync(work, { recursive: true, force: true });
}, 11 * 60_000);

describe.skipIf(skip)('the release makes the bundle (its bundle step)', () => {
  it('writes stella-bundle-<version>.tar.zst into dist/ and records its sha256 in release.json', async () => {
    expect(bundleStep?.status).toBe('done');
    expect(bundleRecord?.path).toBe(join(work, 'dist', `stella-bundle-${VERSION}.tar.zst`));
    expect(await sha256File(bundleRecord!.path)).toBe(bundleRecord!.sha256);
    expect(readFileSync(`${bundleRecord!.path}.sha256`, 'utf8')).toBe(`${bundleRecord!.sha256}  stella-bundle-${VERSION}.tar.zst\n`);
  });

  it('keeps that bundle, the passed smoke records and the release page on a re-release with nothing changed', () => {
    expect(rerunBundle.step?.did).toMatch(/^unchanged: /);
    expect(rerunBundle.record).toEqual(bundleRecord);
    // The support images are not built again: same inputs, present by digest.
    expect(rerunBundle.support?.did).toMatch(/^7 unchanged \(same inputs as recorded in .*support\.json; present by digest\): not rebuilt$/);
    expect(rerunBundle.smoke?.status).toBe('done');
    expect(rerunBundle.smoke?.did).toMatch(/^smoke-compose passed before for these digests \(.*\); smoke-airgap passed before for these digests \(/);
    expect(rerunBundle.records).toEqual(rc.smoke);
    // Changed files, of release.json, checksums.txt and its signature: none (nothing re-signed).
    expect(rerunBundle.pageKept).toEqual([]);
  });
});

describe.skipIf(skip)('the bundle step with the support images from a lock (no SBOMs at hand)', () => {
  // The context the release gives the step, with an output directory that has no support SBOMs
  // (as with --support-images lock): the step is available only when the lock's images verify
  // under the release key (this rc's support images were attested under it by its bundle step).
  const context = (key: SigningKey): ReleaseStepContext => ({
    source: ROOT, out: mkdtempSync(join(work, 'lock-mode-')), plan: planTags({ version: VERSION }), revision: { commit: '0'.repeat(40), time: 1700000000 },
    images: { images: [] }, supportLockFile: join(work, 'dist', 'support-images.lock.json'), ...(rc.chart ? { chart: { ref: rc.chart.ref, digest: rc.chart.digest, package: rc.chart.package } } : {}),
    registries: new Registries(), signing: signingWithKey(key), io: { progress: () => undefined },
  });

  it('runs when they verify under the release key, and is skipped naming each one when they do not', async () => {
    expect(await bundleReleaseStep.unavailable!(context(releaseKey))).toBeUndefined();
    const other = await bundleReleaseStep.unavailable!(context(loadPrivateKey(generateKeyPair('').privateKeyPem, '')));
    expect(other).toMatch(/^the support images come from the committed lock and .+ do not verify under the release key; .*--support-images build/);
    for (const name of SUPPORT_IMAGE_NAMES) expect(other).toContain(name);
  });
});

describe.skipIf(skip)('smoke-airgap: install from the bundle with no network', () => {
  it('runs in a namespace with no route: the routing table is empty and outside connections fail', () => {
    expect(report.isolation.routes).toBe('');
    expect(report.isolation.refused.length).toBeGreaterThanOrEqual(2);
    for (const r of report.isolation.refused) expect(r).toMatch(/unreachable|refused|No route/i);
  });

  it('verifies and loads the bundle there, every image re-verified from the registry inside', () => {
    expect(report.images).toBeGreaterThanOrEqual(18);
    expect(report.failures.filter((f) => !f.startsWith('quickstart:') && !f.startsWith('helm:'))).toEqual([]);
  });

  it("release --smoke: the quickstart on a fresh Docker daemon, then quickstart.sh --bundle (its own registry from the bundle, load.sh) healthy in the namespace, each recorded with the rc's digests", () => {
    expect(rc.smoke?.map((r) => r.smoke)).toEqual(['smoke-compose', 'smoke-airgap']);
    for (const r of rc.smoke!) {
      expect(r.failures, r.smoke).toEqual([]);
      expect(r.passed).toBe(true);
      expect(r.images).toEqual(rc.images.map((i) => ({ service: i.service, digest: i.digest })));
      expect(r.subject).toMatch(/^sha256:[0-9a-f]{64}$/);
    }
    expect(rc.steps?.find((x) => x.step === 'smoke')?.did).toBe('smoke-compose passed; smoke-airgap passed');
  });

  it('promote accepts the rc on that smoke record (dry run)', () => {
    expect(promoted.status, promoted.stderr.slice(-2000)).toBe(0);
    expect(promoted.stdout + promoted.stderr).toMatch(/smoke-airgap/);
  });

  it.skipIf(skipHelm)("installs the bundle's chart on a real cluster from a registry only the bundle filled", () => {
    const h = report.helm!;
    expect(h.failures).toEqual([]);
    expect(h.repositories.length).toBeGreaterThanOrEqual(18);
    expect(Object.keys(h.pods).length).toBeGreaterThanOrEqual(14);
    expect(Object.values(h.pods).every((p) => p === 'Ready')).toBe(true);
    for (const im of h.images) expect(im.startsWith(`${h.registry}/`) && /@sha256:[0-9a-f]{64}$/.test(im)).toBe(true);
  });
});
