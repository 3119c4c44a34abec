/**
 * The release as a release manager runs it, through the CLI, against a throwaway registry
 * behind a recording proxy: pre-flight refusals before any write, `--dry-run` printing the plan,
 * `--json` events, the summary table and per-step timings, dist/digests.txt (GoReleaser's
 * format), dist/checksums.txt and its Sigstore bundle, a re-run that writes nothing, and
 * promotion of an rc's verified digests to the final version (refused without a passed smoke
 * record for exactly those digests, for a dirty rc, and when the final tag is taken).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { runNode, type CliRun } from '../helpers/cli.ts';
import { skipUnless } from '../helpers/tools.ts';
import { makeFixtureBase } from '../build/fixtures.ts';
import { generateKeyPair, verifyBlob } from '../../ci/src/sign/index.ts';
import { RegistryClient, tagImage } from '../../ci/src/registry/index.ts';
import type { ReleasePlan, ReleaseRecord } from '../../ci/src/release/pipeline.ts';
import type { SmokeRecord } from '../../ci/src/release/hooks.ts';
import { COMMIT, SOURCE_DATE_EPOCH } from './fixture.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const RC = 'v0.9.1-rc.1';
const FINAL = 'v0.9.1';
const SERVICES = 'api,conseiller';
const KEY_PASSWORD = 'canary-flow-keypass-5b20c4';

let reg: TestRegistry;
let proxy: FaultProxy;
let dir: string;
let base: string;
let publicKeyPem: string;
let rc: ReleaseRecord;
const env: NodeJS.ProcessEnv = { ...process.env, FLOW_KEY: '', FLOW_KEY_PASSWORD: KEY_PASSWORD, FLOW_WRONG_PASSWORD: 'not-the-password' };
const revision = ['--git-commit', COMMIT, '--source-date-epoch', String(SOURCE_DATE_EPOCH)];
const key = ['--key', 'env:FLOW_KEY', '--key-password', 'env:FLOW_KEY_PASSWORD'];

const cli = (...args: string[]): Promise<CliRun> => runNode(['ci/src/cli.ts', ...args], env, { timeoutMs: 400_000 });
const releaseArgs = (out: string, ...more: string[]) => ['release', '--version', RC, '--services', SERVICES, '--registry', proxy.host, '--namespace', 'flow', '--base', base, ...key, ...revision, '--out', out, ...more];
const writes = () => proxy.requests.filter((q) => q.method === 'PUT' || q.method === 'PATCH' || (q.method === 'POST' && !/\/blobs\/uploads\/$/.test(q.path)));
const pushes = () => proxy.requests.filter((q) => q.method === 'PUT' || q.method === 'PATCH');

async function catalogRepos(): Promise<string[]> {
  const r = await fetch(`${reg.url}/v2/_catalog`);
  return ((await r.json()) as { repositories?: string[] }).repositories ?? [];
}

beforeAll(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy({ upstream: reg.host });
  dir = mkdtempSync(join(tmpdir(), 'stella-flow-'));
  const pair = generateKeyPair(KEY_PASSWORD);
  env.FLOW_KEY = pair.privateKeyPem;
  publicKeyPem = pair.publicKeyPem;
  writeFileSync(join(dir, 'cosign.pub'), publicKeyPem);
  base = `oci:${join(dir, 'base')}@${await makeFixtureBase(join(dir, 'base'))}`;
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
});

describe.skipIf(skipUnless(['docker-registry'], 'release flow against a throwaway registry'))('release: pre-flight, plan, progress, outputs, promotion', () => {
  it('--dry-run runs pre-flight, prints the plan and writes nothing to the registry', async () => {
    proxy.reset();
    const out = join(dir, 'plan');
    const r = await cli(...releaseArgs(out, '--dry-run'));
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const plan = JSON.parse(r.stdout) as ReleasePlan;
    expect(plan.dryRun).toBe(true);
    expect(plan.tags).toEqual([RC]);
    expect(plan.images).toEqual([`${proxy.host}/flow/stella-api`, `${proxy.host}/flow/stella-conseiller`]);
    expect(plan.signing).toBe('key');
    expect(plan.preflight.map((c) => c.check)).toEqual(['version', 'tree', 'registry', 'signing', 'tags']);
    expect(plan.steps.map((s) => s.step)).toEqual(['key', 'base', 'build', 'support-images', 'sbom', 'sign', 'provenance', 'chart', 'bundle', 'smoke', 'verify', 'publish', 'record']);
    expect(JSON.parse(readFileSync(join(out, 'plan.json'), 'utf8'))).toEqual(plan);
    // The writability probe opens an upload session and cancels it: no blob, manifest or tag.
    expect(proxy.count('POST', /\/blobs\/uploads\/$/)).toBe(1);
    expect(proxy.count('DELETE')).toBe(1);
    expect(pushes()).toEqual([]);
    expect(await catalogRepos()).toEqual([]);
    expect(existsSync(join(out, 'build.json'))).toBe(false);
  });

  it('--json: every progress line is one JSON event; the plan and the summary are events', async () => {
    const r = await cli(...releaseArgs(join(dir, 'plan-json'), '--dry-run', '--json'));
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const lines = r.stderr.split('\n').filter(Boolean);
    const events = lines.map((l) => JSON.parse(l) as { event: string; step?: string; ok?: boolean; status?: string });
    expect(events[0]).toMatchObject({ event: 'step-start', step: 'preflight' });
    expect(events.find((e) => e.event === 'step-end' && e.step === 'preflight')).toMatchObject({ status: 'done' });
    expect(events.some((e) => e.event === 'plan')).toBe(true);
    expect(events.at(-1)).toMatchObject({ event: 'summary', ok: true });
  });

  describe('pre-flight refuses before anything is written', () => {
    it('a signing key whose password is wrong: no request at all', async () => {
      proxy.reset();
      const r = await cli('release', '--version', RC, '--services', SERVICES, '--registry', proxy.host, '--base', base, '--key', 'env:FLOW_KEY', '--key-password', 'env:FLOW_WRONG_PASSWORD', ...revision, '--out', join(dir, 'x1'));
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/preflight: .*(KEY_INVALID|password)/is);
      expect(proxy.requests).toEqual([]);
      expect(r.stderr).toMatch(/preflight\s+failed/);
    });

    it('no key and no identity for a registry that is not loopback: never a generated key', async () => {
      const r = await cli('release', '--version', RC, '--services', SERVICES, '--registry', 'registry.invalid', '--base', base, ...revision, '--out', join(dir, 'x2'));
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('never signed with a generated key');
      expect(existsSync(join(dir, 'x2', 'keys'))).toBe(false);
    });

    it('an expired OIDC identity token', async () => {
      const claims = Buffer.from(JSON.stringify({ iss: 'https://issuer.example', sub: 'release', exp: 1_000_000_000 })).toString('base64url');
      const r = await runNode(['ci/src/cli.ts', 'release', '--version', RC, '--services', SERVICES, '--registry', proxy.host, '--base', base, '--identity-token', 'env:FLOW_TOKEN', ...revision, '--out', join(dir, 'x3')], { ...env, FLOW_TOKEN: `e30.${claims}.c2ln` });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/identity token expired at 2001-09-09/);
    });

    it('a registry that does not answer, named', async () => {
      const r = await cli('release', '--version', RC, '--services', SERVICES, '--registry', '127.0.0.1:1', '--base', base, ...key, ...revision, '--out', join(dir, 'x4'));
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/registry 127\.0\.0\.1:1 is not reachable/);
    }, 120_000);

    it('a final release from a working tree with uncommitted changes, unless --allow-dirty', async () => {
      const src = join(dir, 'dirty-src');
      mkdirSync(src);
      const git = (...a: string[]) => execFileSync('git', ['-C', src, '-c', 'user.email=t@example.com', '-c', 'user.name=t', ...a], { stdio: 'pipe' });
      git('init', '-q');
      writeFileSync(join(src, 'f'), 'a');
      git('add', 'f');
      git('commit', '-qm', 'one');
      writeFileSync(join(src, 'f'), 'b');
      proxy.reset();
      const refused = await cli('--source', src, 'release', '--version', 'v0.9.9', '--services', SERVICES, '--registry', proxy.host, '--base', base, ...key, '--out', join(dir, 'x5'));
      expect(refused.status).toBe(1);
      expect(refused.stderr).toMatch(/uncommitted changes; a final release \(v0\.9\.9\) is built only from a clean commit.*--allow-dirty/);
      expect(proxy.requests).toEqual([]);
      const allowed = await cli('--source', src, 'release', '--version', 'v0.9.9', '--services', SERVICES, '--registry', proxy.host, '--base', base, ...key, '--out', join(dir, 'x5'), '--allow-dirty', '--dry-run');
      expect(allowed.status, allowed.stderr.slice(-2000)).toBe(0);
      expect((JSON.parse(allowed.stdout) as ReleasePlan).dirty).toBe(true);
    });
  });

  describe('an rc release', () => {
    const out = () => join(dir, 'rc');

    it('releases, with per-step timings in release.json and a summary table', async () => {
      proxy.reset();
      const r = await cli(...releaseArgs(out()));
      expect(r.status, r.stderr.slice(-3000)).toBe(0);
      rc = JSON.parse(r.stdout) as ReleaseRecord;
      expect(rc.images.map((i) => i.service)).toEqual(['api', 'conseiller']);
      const recorded = JSON.parse(readFileSync(join(out(), 'release.json'), 'utf8')) as ReleaseRecord;
      const steps = recorded.steps!.map((s) => [s.step, s.status]);
      expect(steps).toEqual([
        ['preflight', 'done'], ['key', 'done'], ['base', 'done'], ['build', 'done'], ['support-images', expect.stringMatching(/done|skipped/)],
        ['sbom', 'done'], ['sign', 'done'], ['provenance', 'done'], ['chart', 'skipped'], ['bundle', 'skipped'], ['smoke', 'skipped'], ['verify', 'done'], ['publish', 'done'],
      ]);
      for (const s of recorded.steps!) expect(s.seconds).toBeGreaterThanOrEqual(0);
      expect(recorded.steps!.find((s) => s.step === 'chart')!.did).toMatch(/chart pins every service/);
      expect(rc.steps!.at(-1)!.step).toBe('record');
      expect(recorded.dirty).toBe(false);
      // The table: header, one row per step, total.
      const table = r.stderr.split('\n').filter((l) => /^release: (step|preflight|build|publish|total)\s/.test(l));
      expect(table[0]).toMatch(/step\s+status\s+time\s+what it did/);
      expect(table.some((l) => /^release: build\s+done\s+\d+\.\d\ds\s+2 images/.test(l))).toBe(true);
      expect(table.at(-1)).toMatch(/^release: total\s+\d+\.\d\ds/);
    }, 600_000);

    it('dist/digests.txt is GoReleaser\'s format: `<hex> <image>` per index, sorted, no sha256: prefix', () => {
      const lines = readFileSync(join(out(), 'digests.txt'), 'utf8').split('\n').filter(Boolean);
      // The service images and the support images the release pinned (when the lock's images are present).
      const all = [...rc.images, ...(rc.supportImages ?? [])];
      expect(lines).toEqual(all.map((i) => `${i.digest.slice(7)} ${i.repository}`).sort((a, b) => (a.split(' ')[1]! < b.split(' ')[1]! ? -1 : 1)));
      for (const i of rc.images) expect(lines).toContain(`${i.digest.slice(7)} ${i.repository}`);
      for (const l of lines) expect(l).toMatch(/^[0-9a-f]{64} \S+$/);
    });

    it('dist/checksums.txt covers every release file (sha256sum -c accepts it) and never the private key or build contexts', () => {
      const text = readFileSync(join(out(), 'checksums.txt'), 'utf8');
      const names = text.split('\n').filter(Boolean).map((l) => l.slice(66));
      for (const f of ['build.json', 'release.json', 'digests.txt', 'compatibility.json', 'docs/release/image-catalog.md', 'sbom/api/api-index.spdx.json', 'provenance/conseiller/conseiller.provenance.json']) expect(names, f).toContain(f);
      expect(names).not.toContain('last-run.json');
      expect(names.some((n) => n.startsWith('app/') || n.startsWith('base-layout/') || n.endsWith('.key') || n.startsWith('checksums.txt'))).toBe(false);
      expect([...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))).toEqual(names);
      const check = spawnSync('sha256sum', ['-c', '--strict', 'checksums.txt'], { cwd: out(), encoding: 'utf8' });
      expect(check.status, check.stdout + check.stderr).toBe(0);
    });

    it('dist/compatibility.json: the release, its digests, the Kubernetes range the chart accepts and the engines quickstart.sh accepts', () => {
      const row = JSON.parse(readFileSync(join(out(), 'compatibility.json'), 'utf8')) as Record<string, unknown>;
      const chartYaml = readFileSync(join(ROOT, 'deploy/helm/stella/Chart.yaml'), 'utf8');
      const quickstart = readFileSync(join(ROOT, 'deploy/compose/quickstart.sh'), 'utf8');
      expect(row).toEqual({
        release: rc.version,
        images: Object.fromEntries(rc.images.map((i) => [i.service, i.digest])),
        supportImages: Object.fromEntries((rc.supportImages ?? []).map((i) => [i.name, i.digest])),
        kubernetes: /^kubeVersion: "(.+)"$/m.exec(chartYaml)![1],
        docker: `>=${/^MIN_DOCKER=(.+)$/m.exec(quickstart)![1]}`,
        compose: `>=${/^MIN_COMPOSE=(.+)$/m.exec(quickstart)![1]}`,
        smokeTested: [],
      });
      const doc = readFileSync(join(out(), 'docs/release/image-catalog.md'), 'utf8');
      expect(doc).toContain('## Compatibility');
      expect(doc).toContain(`| (no chart) | ${rc.version} | \`${row.kubernetes as string}\` |`);
    });

    it('checksums.txt.sigstore.json verifies over checksums.txt with the release key, and not over an edited one', () => {
      const bundle = readFileSync(join(out(), 'checksums.txt.sigstore.json'), 'utf8');
      const data = readFileSync(join(out(), 'checksums.txt'));
      expect(() => verifyBlob(bundle, data, { publicKeyPem })).not.toThrow();
      const edited = Buffer.from(data.toString().replace(/^[0-9a-f]/, (c) => (c === '0' ? '1' : '0')));
      expect(() => verifyBlob(bundle, edited, { publicKeyPem })).toThrow(/SIGNATURE_INVALID|digest|signature/i);
    });

    it.skipIf(skipUnless(['cosign'], 'cosign verify-blob accepts checksums.txt.sigstore.json'))('cosign verify-blob accepts the checksums bundle, offline, with only the public key', () => {
      const root = join(dir, 'trusted_root.json');
      writeFileSync(root, JSON.stringify({ mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1', tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [] }));
      const r = spawnSync('cosign', ['verify-blob', '--key', join(dir, 'cosign.pub'), '--bundle', join(out(), 'checksums.txt.sigstore.json'), '--new-bundle-format', '--insecure-ignore-tlog=true', '--trusted-root', root, join(out(), 'checksums.txt')], { encoding: 'utf8' });
      expect(r.status, r.stdout + r.stderr).toBe(0);
    });

    it('a re-run resumes the recorded release: nothing pushed, tags unchanged, the release page left as it was', async () => {
      const page = ['release.json', 'checksums.txt', 'checksums.txt.sigstore.json'].map((f) => [f, readFileSync(join(out(), f))] as const);
      proxy.reset();
      const r = await cli(...releaseArgs(out()));
      expect(r.status, r.stderr.slice(-3000)).toBe(0);
      const again = JSON.parse(r.stdout) as ReleaseRecord;
      expect(again.images).toEqual(rc.images);
      expect(again.tags.map((t) => t.action)).toEqual(['unchanged', 'unchanged']);
      expect(writes()).toEqual([]);
      expect(proxy.count('POST')).toBe(0);
      expect(r.stderr).toMatch(/2 immutable tag\(s\) already point to this release's recorded digests \(resuming\)/);
      // Nothing of the release changed: release.json, checksums.txt and its signature are the same bytes (not re-signed).
      for (const [f, bytes] of page) expect(readFileSync(join(out(), f)).equals(bytes), f).toBe(true);
      expect(() => verifyBlob(readFileSync(join(out(), 'checksums.txt.sigstore.json'), 'utf8'), readFileSync(join(out(), 'checksums.txt')), { publicKeyPem })).not.toThrow();
    }, 600_000);

    it('the same rc from another output directory is refused in pre-flight, naming the digest its tag holds', async () => {
      proxy.reset();
      const r = await cli(...releaseArgs(join(dir, 'rc-other')));
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('IMMUTABLE_TAG');
      expect(r.stderr).toContain(`${proxy.host}/flow/stella-api:${RC} already points to ${rc.images[0]!.digest}`);
      expect(pushes()).toEqual([]);
    });
  });

  describe('promote rc → final', () => {
    const smokeFile = (name: string, r: Partial<SmokeRecord>) => {
      const f = join(dir, `${name}.json`);
      const rec: SmokeRecord = { smoke: 'smoke-compose', passed: true, failures: [], images: rc.images.map((i) => ({ service: i.service, digest: i.digest })), finishedAt: new Date().toISOString(), ...r };
      writeFileSync(f, JSON.stringify(rec));
      return f;
    };
    const promoteCli = (...more: string[]) => cli('promote', '--rc-record', join(dir, 'rc', 'release.json'), '--public-key', join(dir, 'cosign.pub'), ...key, '--out', join(dir, 'final'), ...more);

    it('refuses an rc without a smoke record, with a failed one, and with one for other digests; writes nothing', async () => {
      proxy.reset();
      const none = await promoteCli();
      expect(none.status).toBe(1);
      expect(none.stderr).toMatch(/v0\.9\.1-rc\.1 has no smoke record/);
      const failed = await promoteCli('--smoke-records', smokeFile('failed', { passed: false, failures: ['console did not answer'] }));
      expect(failed.status).toBe(1);
      expect(failed.stderr).toMatch(/smoke-compose failed: console did not answer/);
      const other = await promoteCli('--smoke-records', smokeFile('other', { images: [{ service: 'api', digest: `sha256:${'0'.repeat(64)}` }] }));
      expect(other.status).toBe(1);
      expect(other.stderr).toMatch(/ran api sha256:0{64}, not the rc's sha256:/);
      expect(other.stderr).toMatch(/ran conseiller \(not at all\)/);
      expect(pushes()).toEqual([]);
      expect(existsSync(join(dir, 'final', 'release.json'))).toBe(false);
    }, 300_000);

    it('refuses a dirty rc', async () => {
      const dirty = join(dir, 'dirty-rc.json');
      writeFileSync(dirty, JSON.stringify({ ...JSON.parse(readFileSync(join(dir, 'rc', 'release.json'), 'utf8')), dirty: true }));
      const r = await cli('promote', '--rc-record', dirty, '--public-key', join(dir, 'cosign.pub'), '--smoke-records', smokeFile('ok', {}), '--out', join(dir, 'final'));
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/uncommitted changes \(dirty: true\)/);
    });

    it('promotes the verified rc digests: final tags on the same digests, nothing rebuilt or re-signed', async () => {
      proxy.reset();
      const r = await promoteCli('--smoke-records', smokeFile('ok', {}));
      expect(r.status, r.stderr.slice(-3000)).toBe(0);
      const final = JSON.parse(r.stdout) as ReleaseRecord;
      expect(final.version).toBe(FINAL);
      expect(final.promotedFrom).toEqual({ version: RC, gitCommit: COMMIT });
      expect(final.images.map((i) => i.digest)).toEqual(rc.images.map((i) => i.digest));
      expect(final.tags.map((t) => [t.tag, t.action])).toEqual([[FINAL, 'create'], [FINAL, 'create']]);
      const client = new RegistryClient({ registry: reg.host });
      for (const i of rc.images) expect(await client.resolve(`flow/stella-${i.service}`, FINAL)).toBe(i.digest);
      // Only tags were written: no blob upload, no referrer (nothing re-signed).
      expect(proxy.count('POST')).toBe(0);
      expect(pushes().map((q) => q.path)).toEqual(rc.images.map((i) => `/v2/flow/stella-${i.service}/manifests/${FINAL}`));
      const page = readFileSync(join(dir, 'final', 'checksums.txt'));
      expect(() => verifyBlob(readFileSync(join(dir, 'final', 'checksums.txt.sigstore.json'), 'utf8'), page, { publicKeyPem })).not.toThrow();
      expect(readFileSync(join(dir, 'final', 'digests.txt'), 'utf8')).toBe(readFileSync(join(dir, 'rc', 'digests.txt'), 'utf8'));
    }, 300_000);

    it('a re-run finds the final tags unchanged and writes nothing', async () => {
      proxy.reset();
      const r = await promoteCli('--smoke-records', smokeFile('ok', {}));
      expect(r.status, r.stderr.slice(-3000)).toBe(0);
      expect((JSON.parse(r.stdout) as ReleaseRecord).tags.map((t) => t.action)).toEqual(['unchanged', 'unchanged']);
      expect(pushes()).toEqual([]);
    }, 300_000);

    it('a final tag already pointing elsewhere is refused, naming that digest, before any tag moves', async () => {
      // Another rc of the same digests, whose final tag someone pointed at other content.
      const client = new RegistryClient({ registry: reg.host });
      const [api, conseiller] = rc.images;
      for (const i of rc.images) await tagImage(client, `flow/stella-${i.service}`, 'v0.9.2-rc.1', i.digest);
      await tagImage(client, 'flow/stella-api', 'v0.9.2', api!.platforms['linux/amd64']!);
      const record = join(dir, 'rc2.json');
      writeFileSync(record, JSON.stringify({ ...rc, version: 'v0.9.2-rc.1', smoke: [] }));
      proxy.reset();
      const r = await cli('promote', '--rc-record', record, '--public-key', join(dir, 'cosign.pub'), '--smoke-records', smokeFile('ok', {}), '--out', join(dir, 'final2'));
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('IMMUTABLE_TAG');
      expect(r.stderr).toContain(api!.platforms['linux/amd64']);
      expect(pushes()).toEqual([]);
      expect(await client.resolve('flow/stella-conseiller', 'v0.9.2')).toBeUndefined();
      expect(conseiller).toBeDefined();
    }, 300_000);
  });
});
