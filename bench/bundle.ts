/**
 * Benchmark of the air-gap bundle (not a test; numbers only, nothing asserted):
 *
 *   npm run bench:bundle [-- --images dist/build.json --key dist/keys/cosign.key]
 *
 * On the same images in one run (a release made by `npm run release:local`, and the support
 * images of deploy/support-images.lock.json in the local registry), prints as ratios:
 *  - `bundle` create time and size vs the peer: `skopeo copy --all` of every image into one
 *    OCI layout, then `tar | zstd -3`;
 *  - bundle size vs the sum of its unique blobs (target ≤ 1.02×);
 *  - `bundle-load` time (which also verifies the bundle before and every image after) vs
 *    `skopeo copy --all` from that OCI layout into the same kind of registry;
 *  - peak memory (max RSS, /usr/bin/time) of create and load, ours and the peer's.
 * The support images are first signed and attested (attest-support-images), as a release does.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { bundleImages, type SupportImageLock } from '../ci/src/bundle/create.ts';
import { readBuildDocument } from '../ci/src/build/document.ts';
import { readSupportLock, SUPPORT_LOCK_FILE } from '../ci/src/support/index.ts';
import { startRegistry } from '../test/helpers/registry.ts';

const ROOT = resolve(import.meta.dirname, '..');
const NODE = join(ROOT, 'node_modules/.bin/node');
const { values } = parseArgs({ options: { images: { type: 'string', default: 'dist/build.json' }, key: { type: 'string', default: 'dist/keys/cosign.key' }, 'support-lock': { type: 'string', default: SUPPORT_LOCK_FILE } } });
const say = (s: string) => process.stdout.write(`${s}\n`);
const MB = 1e6;

interface Measured {
  readonly seconds: number;
  readonly maxRssMb: number;
  readonly stdout: string;
}

/**
 * Runs a command under /usr/bin/time: wall time and peak memory. Asynchronous: the registries
 * this process started write their logs to pipes it must keep reading (a blocked event loop
 * would let a pipe fill and stall the registry).
 */
function measure(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', '@@TIME %e %M', cmd, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += String(d)));
    child.stderr.on('data', (d) => (stderr = (stderr + String(d)).slice(-20_000)));
    child.on('error', reject);
    child.on('exit', (status) => {
      const m = /@@TIME ([\d.]+) (\d+)/.exec(stderr);
      if (status !== 0 || !m) reject(new Error(`${cmd} ${args.join(' ')} failed (${status}):\n${stderr.slice(-3000)}`));
      else resolve({ seconds: Number(m[1]), maxRssMb: Number(m[2]) / 1024, stdout });
    });
  });
}

const cli = (args: string[]): Promise<Measured> => measure(NODE, ['ci/src/cli.ts', ...args]);
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;

const imagesFile = resolve(ROOT, values.images);
const keyFile = resolve(ROOT, values.key);
if (!existsSync(imagesFile) || !existsSync(keyFile)) {
  say(`bench:bundle needs a release: ${imagesFile} and ${keyFile} (run: bash scripts/host-setup.sh && npm run release:local)`);
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), 'stella-bench-bundle-'));
const regs = [await startRegistry(), await startRegistry()];
try {
  const build = await readBuildDocument(imagesFile);
  const lock = await readSupportLock(values['support-lock']);
  const version = 'edge';
  say(`stella bundle benchmark: ${build.images.length} StellaOps images + ${Object.keys(lock.images).length} support images, both platforms`);

  // The support images as a release leaves them: pushed, signed, attested.
  const sbomDir = join(work, 'sbom');
  await cli(['support-images', '--sbom-dir', sbomDir, '--lock-file', join(work, 'support.lock.json')]);
  await cli(['attest-support-images', '--version', version, '--support-lock', join(work, 'support.lock.json'), '--sbom-dir', sbomDir, '--key', `file:${keyFile}`, '--git-commit', '0'.repeat(40), '--source-date-epoch', '1700000000']);

  // Ours: create.
  const ours = await cli(['bundle', '--images', imagesFile, '--version', version, '--support-lock', join(work, 'support.lock.json'), '--key', `file:${keyFile}`, '--out', join(work, 'ours'), '--git-commit', '0'.repeat(40), '--source-date-epoch', '1700000000']);
  const created = JSON.parse(ours.stdout) as { file: string; bytes: number; blobs: { count: number; bytes: number } };

  // Peer: skopeo copy --all of every image into one OCI layout, then tar | zstd -3.
  const all = bundleImages(build, JSON.parse(readFileSync(join(work, 'support.lock.json'), 'utf8')) as SupportImageLock);
  const layout = join(work, 'peer-layout');
  let peerCopy = 0;
  let peerCopyRss = 0;
  for (const im of all) {
    const m = await measure('skopeo', ['copy', '--all', '--preserve-digests', '--src-tls-verify=false', `docker://${im.repository}@${im.digest}`, `oci:${layout}:${im.name}`]);
    peerCopy += m.seconds;
    peerCopyRss = Math.max(peerCopyRss, m.maxRssMb);
  }
  const peerFile = join(work, 'peer.tar.zst');
  const tar = await measure('bash', ['-c', `tar -cf - -C ${layout} . | zstd -3 -T1 -q -o ${peerFile}`]);
  const peerCreate = peerCopy + tar.seconds;
  const peerBytes = statSync(peerFile).size;

  say('');
  say('create');
  say(`  ours  bundle (verify at source, collect with referrers, sign, tar.zst): ${ours.seconds.toFixed(1)} s, ${(created.bytes / MB).toFixed(1)} MB, peak ${ours.maxRssMb.toFixed(0)} MB`);
  say(`  peer  skopeo copy --all ×${all.length} + tar | zstd -3:                ${peerCreate.toFixed(1)} s, ${(peerBytes / MB).toFixed(1)} MB, peak ${Math.max(peerCopyRss, tar.maxRssMb).toFixed(0)} MB (images only: no referrers)`);
  say(`  time ratio ours/peer ${ratio(ours.seconds, peerCreate)}; size ratio ours/peer ${ratio(created.bytes, peerBytes)}`);
  say(`  bundle size / sum of unique blobs (${created.blobs.count} blobs, ${(created.blobs.bytes / MB).toFixed(1)} MB): ${ratio(created.bytes, created.blobs.bytes)} (target ≤ 1.02×)`);

  // Load: ours (verify + push + re-verify from the target) vs skopeo copy --all from the layout.
  const loaded = await cli(['bundle-load', '--bundle', created.file, '--to', regs[0]!.host, '--public-key', keyFile.replace(/cosign\.key$/, 'cosign.pub'), '--out', join(work, 'relocated')]);
  const lr = JSON.parse(loaded.stdout) as { seconds: { verify: number; push: number; reverify: number } };
  let peerLoad = 0;
  let peerLoadRss = 0;
  for (const im of all) {
    const path = im.repository.slice(im.repository.indexOf('/') + 1);
    const m = await measure('skopeo', ['copy', '--all', '--preserve-digests', '--dest-tls-verify=false', `oci:${layout}:${im.name}`, `docker://${regs[1]!.host}/${path}@${im.digest}`]);
    peerLoad += m.seconds;
    peerLoadRss = Math.max(peerLoadRss, m.maxRssMb);
  }
  say('');
  say('load');
  say(`  ours  bundle-load: ${loaded.seconds.toFixed(1)} s (verify ${lr.seconds.verify} s, push ${lr.seconds.push} s, re-verify ${lr.seconds.reverify} s), peak ${loaded.maxRssMb.toFixed(0)} MB`);
  say(`  peer  skopeo copy --all ×${all.length} from the layout: ${peerLoad.toFixed(1)} s, peak ${peerLoadRss.toFixed(0)} MB (images only: no referrers, nothing verified)`);
  say(`  time ratio ours/peer ${ratio(loaded.seconds, peerLoad)}; push alone ${ratio(lr.seconds.push, peerLoad)}`);
} finally {
  for (const r of regs) await r.stop();
  rmSync(work, { recursive: true, force: true });
}
