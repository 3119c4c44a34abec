/**
 * Benchmark of the build step (not a test; numbers only, nothing asserted):
 *
 *   node bench/build.ts [--services api,console] [--repeat 3] [--no-peer]
 *
 * Prints, from one run:
 *  - our builder's arm64/amd64 build-time ratio (target ≤ 1.1: no emulation, so
 *    the arm64 images cost what the amd64 ones do);
 *  - our total time for all images × both platforms vs the same Dockerfiles
 *    built by `docker buildx build` (docker driver, one platform per build) on
 *    the same context and base, as a ratio measured in the same run;
 *  - each image's compressed size per platform and its application-layer size
 *    (target ≤ 5 MB).
 *
 * Inputs: the real offline base (ci/src/base, inputs from its cache) pushed to a
 * throwaway registry, and one run of the JavaScript build (services/build.ts).
 * Needs the docker-registry binary; the peer needs a Docker engine with buildx.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { buildImages, type BuildDocument } from '../ci/src/build/index.ts';
import { rfc3339 } from '../ci/src/build/dockerfile.ts';
import { selectServices } from '../ci/src/catalog/index.ts';
import { fetchBaseInputs, buildBase } from '../ci/src/base/index.ts';
import { OciLayout } from '../ci/src/oci/layout.ts';
import { RegistryClient } from '../ci/src/registry/client.ts';
import { pushLayout } from '../ci/src/registry/copy.ts';
import { buildServices } from '../services/build.ts';
import { startRegistry } from '../test/helpers/registry.ts';

const ROOT = resolve(import.meta.dirname, '..');
const { values } = parseArgs({ options: { services: { type: 'string' }, repeat: { type: 'string', default: '3' }, 'no-peer': { type: 'boolean', default: false } } });
const services = selectServices(values.services).map((s) => s.name);
const repeat = Math.max(1, Number(values.repeat));
const VERSION = 'v0.0.0-bench';
const COMMIT = '0000000000000000000000000000000000000000';
const EPOCH = 1700000000;
const MB = 1024 * 1024;

const say = (s: string) => process.stdout.write(`${s}\n`);
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, performance.now() - t0];
}

const work = mkdtempSync(join(tmpdir(), 'stella-bench-'));
const reg = await startRegistry();
try {
  say(`stella build benchmark: ${services.length} service(s), repeat ${repeat}`);
  await fetchBaseInputs({});
  const base = await buildBase({ outLayout: join(work, 'base'), sourceDateEpoch: 0 });
  const client = new RegistryClient({ registry: reg.host });
  await pushLayout(client, join(work, 'base'), 'bench/base', base.indexDigest);
  const baseRef = `${reg.host}/bench/base@${base.indexDigest}`;

  const context = join(work, 'ctx');
  const [, jsMs] = await timed(() => buildServices({ outDir: join(context, 'dist/app'), version: VERSION, gitCommit: COMMIT, buildDate: rfc3339(EPOCH), services }));
  say(`javascript build (once, native): ${secs(jsMs)}`);

  let n = 0;
  const ours = (platforms: string[]) =>
    timed(() => buildImages({ source: ROOT, contextDir: context, services, version: VERSION, gitCommit: COMMIT, sourceDateEpoch: EPOCH, base: baseRef, platforms, ociLayout: join(work, `ours-${n++}`) }));

  // arm64 vs amd64, alternating, median of `repeat`.
  const amd: number[] = [];
  const arm: number[] = [];
  await ours(['linux/amd64']); // warm-up (module loading, page cache)
  for (let i = 0; i < repeat; i++) {
    amd.push((await ours(['linux/amd64']))[1]);
    arm.push((await ours(['linux/arm64']))[1]);
  }
  say(`ours, linux/amd64 only: ${secs(median(amd))} (median of ${repeat})`);
  say(`ours, linux/arm64 only: ${secs(median(arm))} (median of ${repeat})`);
  say(`ours, arm64/amd64 build-time ratio: ${(median(arm) / median(amd)).toFixed(2)} (target <= 1.1)`);

  const both: number[] = [];
  let doc: BuildDocument | undefined;
  let layoutDir = '';
  for (let i = 0; i < repeat; i++) {
    layoutDir = join(work, `ours-${n}`);
    const [d, ms] = await ours(['linux/amd64', 'linux/arm64']);
    doc = d;
    both.push(ms);
  }
  const oursTotal = median(both);
  say(`ours, ${services.length} image(s) x 2 platforms (multi-arch indexes into an OCI layout): ${secs(oursTotal)} (median of ${repeat})`);

  // Sizes from the last layout.
  const layout = await OciLayout.open(layoutDir);
  say('');
  say('image                     platform       compressed   app layer');
  let over = 0;
  for (const img of doc!.images) {
    for (const [platform, digest] of Object.entries(img.platforms)) {
      const m = await layout.readManifest(digest);
      const total = m.config.size + m.layers.reduce((a, l) => a + l.size, 0);
      const app = m.layers.at(-1)!.size;
      if (app > 5 * MB) over++;
      say(`stella-${img.service.padEnd(18)} ${platform.padEnd(14)} ${(total / MB).toFixed(2).padStart(7)} MB ${(app / MB).toFixed(3).padStart(8)} MB`);
    }
  }
  say(`application layers over the 5 MB target: ${over}`);

  // The peer: BuildKit through docker buildx (docker driver), one platform per build, same Dockerfiles, context and base.
  const peerOk = !values['no-peer'] && spawnSync('docker', ['buildx', 'version']).status === 0 && spawnSync('docker', ['info'], { timeout: 20_000 }).status === 0;
  if (!peerOk) {
    say('\npeer (docker buildx): skipped (--no-peer, or no Docker engine with buildx)');
  } else {
    const tags: string[] = [];
    const bx = (service: string, platform: string) => {
      const tag = `stella-bench-${service}:${platform.replace('/', '-')}`;
      tags.push(tag);
      execFileSync('docker', ['buildx', 'build', '--builder', 'default', '--platform', platform, '-f', join(ROOT, `docker/stella-${service}.Dockerfile`), '--build-arg', `BASE_IMAGE=${baseRef}`, '--build-arg', `VERSION=${VERSION}`, '--build-arg', `GIT_COMMIT=${COMMIT}`, '--build-arg', `BUILD_DATE=${rfc3339(EPOCH)}`, '--load', '-t', tag, context], { stdio: 'pipe', timeout: 600_000 });
    };
    try {
      for (const p of ['linux/amd64', 'linux/arm64']) bx(services[0]!, p); // warm-up: base pulled into BuildKit's cache
      const per: Record<string, number> = { 'linux/amd64': 0, 'linux/arm64': 0 };
      const t0 = performance.now();
      for (const s of services) {
        for (const p of ['linux/amd64', 'linux/arm64']) {
          const t = performance.now();
          bx(s, p);
          per[p]! += performance.now() - t;
        }
      }
      const peerTotal = performance.now() - t0;
      say(`\npeer: docker buildx build (docker driver, --load, one platform per build), ${services.length} x 2 builds: ${secs(peerTotal)}`);
      say(`peer, arm64/amd64 build-time ratio: ${(per['linux/arm64']! / per['linux/amd64']!).toFixed(2)}`);
      say(`peer/ours total-time ratio: ${(peerTotal / oursTotal).toFixed(2)} (ours writes multi-arch indexes; the peer loads per-platform images and still needs an index step)`);
    } finally {
      for (const t of tags) spawnSync('docker', ['rmi', '-f', t]);
    }
  }
} finally {
  await reg.stop();
  rmSync(work, { recursive: true, force: true });
}
