/**
 * The release's smoke slot (registered in ../release/hooks.ts), with `release --smoke`:
 *
 *   smoke-compose  the Compose quickstart from the release's own images (build.json) and support
 *                  image lock, on a fresh Docker daemon when this is root with dockerd, else on
 *                  the Docker engine here (DOCKER_HOST, or /var/run/docker.sock: a runner VM's);
 *                  skipped, saying so, where there is no Docker engine (./compose.ts)
 *   smoke-airgap   the bundle the bundle step just made — verified, loaded and run with
 *                  `quickstart.sh --bundle` inside a network namespace with no route
 *                  (./airgap.ts); needs root (ip netns, a Docker daemon in the namespace)
 *
 * Each is recorded with the release's digests, which is what `promote` checks. Without --smoke
 * the slot is skipped, saying so (smoke.yml runs the smoke tests on the rc instead).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ReleaseStepContext, SmokeRecord, SmokeStep } from '../release/hooks.ts';

const NOT_ASKED = 'not asked for (release --smoke runs it here; smoke.yml runs the smoke tests on the rc)';
const onPath = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const ran = (c: ReleaseStepContext) => c.images.images.map((i) => ({ service: i.service, digest: i.digest }));
const record = (c: ReleaseStepContext, smoke: string, failures: readonly string[]): SmokeRecord => ({ smoke, passed: failures.length === 0, failures, images: ran(c), finishedAt: new Date().toISOString() });

/** The Docker engine smoke-compose runs on: a fresh daemon (root with dockerd), the one DOCKER_HOST names, or the local socket's. */
function composeEngine(): { fresh: true } | { fresh: false; dockerHost: string } | undefined {
  if (process.getuid?.() === 0 && onPath('dockerd')) return { fresh: true };
  if (process.env.DOCKER_HOST) return { fresh: false, dockerHost: process.env.DOCKER_HOST };
  if (existsSync('/var/run/docker.sock')) return { fresh: false, dockerHost: 'unix:///var/run/docker.sock' };
  return undefined;
}

export const smokeComposeReleaseStep: SmokeStep = {
  name: 'smoke-compose',
  unavailable(c) {
    if (!c.smoke) return NOT_ASKED;
    if (!onPath('docker')) return 'no docker CLI here (the quickstart runs docker compose)';
    if (!composeEngine()) return 'no Docker engine here (DOCKER_HOST, /var/run/docker.sock, or root with dockerd for a fresh daemon)';
    return undefined;
  },
  async run(c) {
    const engine = composeEngine()!;
    // Loaded when it runs: ./compose.ts is large and the release may not smoke at all.
    const { smokeCompose } = await import('./compose.ts');
    const r = await smokeCompose({
      source: c.source,
      images: join(c.out, 'build.json'),
      ...(c.supportLockFile ? { supportLock: c.supportLockFile } : {}),
      ...(engine.fresh ? {} : { dockerHost: engine.dockerHost }),
      progress: (l) => c.io.progress(`smoke-compose: ${l}`),
    });
    const where = engine.fresh ? 'a fresh Docker daemon' : engine.dockerHost;
    return { did: `quickstart healthy in ${r.startToHealthySeconds ?? '-'} s on ${where}`, record: record(c, 'smoke-compose', r.failures) };
  },
};

export const smokeAirgapReleaseStep: SmokeStep = {
  name: 'smoke-airgap',
  unavailable(c) {
    if (!c.smoke) return NOT_ASKED;
    if (process.getuid?.() !== 0) return 'needs root (a network namespace and a Docker daemon in it)';
    return undefined;
  },
  async run(c) {
    if (!c.bundle) return { did: 'no bundle to smoke-test', record: record(c, 'smoke-airgap', ['the release made no bundle (see its bundle step)']) };
    // Loaded when it runs: ./airgap.ts imports what imports the pipeline.
    const { smokeAirgap } = await import('./airgap.ts');
    const { writeFile } = await import('node:fs/promises');
    const publicKey = join(c.out, 'smoke-airgap.pub');
    if (c.signing.key) await writeFile(publicKey, c.signing.key.publicKeyPem);
    const r = await smokeAirgap({ source: c.source, bundle: c.bundle.path, ...(c.signing.key ? { publicKey } : {}), progress: (l) => c.io.progress(`smoke-airgap: ${l}`) });
    return { did: `bundle loaded in ${r.seconds.load} s; quickstart.sh --bundle healthy in ${r.seconds.startToHealthy ?? '-'} s (no route out)`, record: record(c, 'smoke-airgap', r.failures) };
  },
};
