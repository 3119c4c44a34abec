/**
 * Benchmark of the whole release (not a test; numbers only, nothing asserted):
 *
 *   npm run bench:release [-- --services api,console] [--no-peer]
 *
 * Prints, from one run, against a throwaway registry and a scratch copy of the checkout, each
 * run's per-step timings (release.json `steps`) and:
 *  - cold: a release into an empty registry and an empty output directory (the base's Debian
 *    and Node inputs come from their cache, as on any machine that ran host setup);
 *  - no-op re-release: the same release again, nothing changed, as a ratio of cold
 *    (target <= 10 %: nothing rebuilt, re-signed, re-uploaded or re-verified beyond a digest
 *    check: the caches in <out>/app/.stella-cache, docs/release/runbook.md);
 *  - one service changed (one file of the first service edited in the scratch copy, released
 *    again (edge, same version) into the same output directory): its ratio of cold, which
 *    digests changed (target: only that service's) and which images have new referrers, on
 *    their index or platform manifests (target: only that service);
 *  - the peer, same run: the same Dockerfiles built by buildah (one platform per build, a
 *    manifest list per service, pushed) and signed by cosign with a key, against our cold time.
 * Needs the docker-registry binary; the peer needs buildah and cosign.
 */
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { appendFileSync, cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { release, type ReleaseRecord } from '../ci/src/release/pipeline.ts';
import { selectServices } from '../ci/src/catalog/index.ts';
import { generateKeyPair } from '../ci/src/sign/index.ts';
import { RegistryClient } from '../ci/src/registry/client.ts';
import { rfc3339 } from '../ci/src/build/dockerfile.ts';
import { startRegistry } from '../test/helpers/registry.ts';

const ROOT = resolve(import.meta.dirname, '..');
const execFileAsync = promisify(execFile);
const { values } = parseArgs({ options: { services: { type: 'string' }, 'no-peer': { type: 'boolean', default: false } } });
const services = selectServices(values.services).map((s) => s.name);
const VERSION = 'edge';
const COMMIT = '0000000000000000000000000000000000000000';
const EPOCH = 1700000000;

const say = (s: string) => process.stdout.write(`${s}\n`);
const steps = (r: ReleaseRecord) => {
  for (const s of r.steps ?? []) say(`  ${s.step.padEnd(15)} ${s.status.padEnd(8)} ${s.seconds.toFixed(2).padStart(7)} s  ${s.did}`);
};
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const pct = (a: number, b: number) => `${((100 * a) / b).toFixed(1)} %`;

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, performance.now() - t0];
}

/** A copy of the checkout to edit (one service changes), node_modules linked, no dist/ or git. */
function scratchCheckout(dir: string): string {
  const src = join(dir, 'src');
  for (const e of readdirSync(ROOT)) {
    if (['dist', 'test-results', '.git'].includes(e)) continue;
    if (e === 'node_modules') symlinkSync(join(ROOT, e), join(src, e));
    else cpSync(join(ROOT, e), join(src, e), { recursive: true, filter: (p) => !p.split('/').includes('node_modules') });
  }
  for (const ws of ['ci', 'services']) if (existsSync(join(ROOT, ws, 'node_modules'))) symlinkSync(join(ROOT, ws, 'node_modules'), join(src, ws, 'node_modules'));
  return src;
}

const work = mkdtempSync(join(tmpdir(), 'stella-bench-release-'));
const reg = await startRegistry();
const log: string[] = [];
const io = { progress: (l: string) => log.push(l) };
try {
  const source = scratchCheckout(work);
  const pair = generateKeyPair('');
  const out = join(work, 'dist');
  const run = () =>
    release({ source, version: VERSION, services: services.join(','), registry: reg.host, namespace: 'bench', key: pair.privateKeyPem, keyPassword: '', out, gitCommit: COMMIT, sourceDateEpoch: EPOCH, supportImages: 'skip' }, io) as Promise<ReleaseRecord>;

  say(`stella release benchmark: ${services.length} service(s), registry ${reg.host}`);
  const [cold, coldMs] = await timed(run);
  say(`cold release: ${secs(coldMs)}`);
  steps(cold);

  const [noop, noopMs] = await timed(run);
  say(`no-op re-release: ${secs(noopMs)} = ${pct(noopMs, coldMs)} of cold (target <= 10 %)`);
  say(`  tags: ${noop.tags.map((t) => t.action).join(', ')}`);
  steps(noop);

  const client = new RegistryClient({ registry: reg.host });
  /** Every referrer of every image (its index and each platform manifest), as `service subject referrer`. */
  const referrers = async (r: ReleaseRecord) => {
    const all = new Set<string>();
    for (const i of r.images) {
      const repo = i.repository.slice(reg.host.length + 1);
      for (const subject of [i.digest, ...Object.values(i.platforms)]) for (const d of await client.referrers(repo, subject)) all.add(`${i.service} ${d.digest}`);
    }
    return all;
  };
  const before = await referrers(cold);
  const changed = services[0]!;
  const dir = join(source, 'services', 'src', changed);
  // A change the bundler keeps (a comment would be stripped): a statement in the service's entry point.
  const file = existsSync(join(dir, 'main.ts')) ? 'main.ts' : readdirSync(dir, { recursive: true }).map(String).find((f) => /\.(ts|js)$/.test(f) && statSync(join(dir, f)).isFile());
  if (!file) throw new Error(`no source file under services/src/${changed}`);
  appendFileSync(join(dir, file), `\n(globalThis as Record<string, unknown>).stellaBenchChange = ${JSON.stringify(new Date().toISOString())};\n`);
  const [one, oneMs] = await timed(run);
  const moved = one.images.filter((i) => cold.images.find((c) => c.service === i.service)?.digest !== i.digest).map((i) => i.service);
  const after = await referrers(one);
  const fresh = [...after].filter((d) => !before.has(d));
  const freshOf = [...new Set(fresh.map((d) => d.split(' ')[0]!))];
  say(`one service changed (${changed}): ${secs(oneMs)} = ${pct(oneMs, coldMs)} of cold`);
  steps(one);
  say(`  digests changed: ${moved.join(', ') || 'none'} (target: ${changed} only)`);
  say(`  new referrers: ${fresh.length}, of ${freshOf.join(', ') || 'no image'} (target: ${changed}'s own only: its signature, SBOMs and provenance on its new index and platform manifests)`);
  say(`\nratios: no-op ${pct(noopMs, coldMs)} (target <= 10 %), one service changed ${pct(oneMs, coldMs)} of cold ${secs(coldMs)}`);

  const peerOk = !values['no-peer'] && spawnSync('buildah', ['--version']).status === 0 && spawnSync('cosign', ['version']).status === 0;
  if (!peerOk) {
    say('\npeer (buildah + cosign): skipped (--no-peer, or buildah/cosign missing)');
  } else {
    const ctx = join(out, 'app');
    const keyFile = join(work, 'peer.key');
    writeFileSync(keyFile, pair.privateKeyPem);
    const env = { ...process.env, COSIGN_PASSWORD: '', BUILDAH_ISOLATION: 'chroot' };
    // Asynchronous: the throwaway registry's log pipe is read by this process, and a blocked event
    // loop would let it fill and stall the registry (cosign's 404 lookups are logged as errors).
    const sh = async (cmd: string, args: string[]) => (await execFileAsync(cmd, args, { env, timeout: 900_000, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })).stdout;
    const t0 = performance.now();
    for (const s of services) {
      const list = `bench-peer-${s}`;
      // A list left by an interrupted run would refuse the name.
      spawnSync('buildah', ['manifest', 'rm', list], { env, stdio: 'ignore' });
      await sh('buildah', ['manifest', 'create', list]);
      for (const p of ['linux/amd64', 'linux/arm64']) {
        await sh('buildah', ['bud', '--quiet', '--platform', p, '--manifest', list, '-f', join(ROOT, `docker/stella-${s}.Dockerfile`), '--build-arg', `BASE_IMAGE=${cold.base}`, '--build-arg', `VERSION=${VERSION}`, '--build-arg', `GIT_COMMIT=${COMMIT}`, '--build-arg', `BUILD_DATE=${rfc3339(EPOCH)}`, '--tls-verify=false', ctx]);
      }
      const digestFile = join(work, `${s}.digest`);
      await sh('buildah', ['manifest', 'push', '--all', '--tls-verify=false', '--digestfile', digestFile, list, `docker://${reg.host}/peer/stella-${s}:${VERSION}`]);
      const digest = readFileSync(digestFile, 'utf8').trim();
      await sh('cosign', ['sign', '--yes', '--key', keyFile, '--tlog-upload=false', '--allow-insecure-registry', '--allow-http-registry', `${reg.host}/peer/stella-${s}@${digest}`]);
      spawnSync('buildah', ['manifest', 'rm', list], { env });
    }
    const peerMs = performance.now() - t0;
    say(`\npeer: buildah bud (one platform per build) + manifest push + cosign sign --key, ${services.length} image(s): ${secs(peerMs)}`);
    const baseMs = 1000 * (cold.steps?.find((x) => x.step === 'base')?.seconds ?? 0);
    say(`ours cold / peer: ${(coldMs / peerMs).toFixed(2)}; without our base build (${secs(baseMs)}; the peer reuses that base): ${((coldMs - baseMs) / peerMs).toFixed(2)} (ours also makes and attaches SBOMs and provenance, verifies, and records; the peer only builds, pushes and signs)`);
  }
} finally {
  await reg.stop();
  rmSync(work, { recursive: true, force: true });
}
