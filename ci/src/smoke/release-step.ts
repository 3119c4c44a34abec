/**
 * The release's smoke slot (registered in ../release/hooks.ts): with `release --smoke`,
 * smoke-airgap on the bundle the bundle step just made — verified, loaded and run with
 * `quickstart.sh --bundle` inside a network namespace with no route (./airgap.ts) — recorded
 * with the release's digests, which is what `promote` checks. Needs root (ip netns, a Docker
 * daemon); without --smoke, or without a bundle, the slot is skipped, saying so.
 */
import { join } from 'node:path';
import type { SmokeStep } from '../release/hooks.ts';

export const smokeAirgapReleaseStep: SmokeStep = {
  name: 'smoke-airgap',
  unavailable(c) {
    if (!c.smoke) return 'not asked for (release --smoke runs smoke-airgap here; smoke.yml runs the smoke tests on the rc)';
    if (process.getuid?.() !== 0) return 'needs root (a network namespace and a Docker daemon in it)';
    return undefined;
  },
  async run(c) {
    if (!c.bundle) {
      return { did: 'no bundle to smoke-test', record: { smoke: 'smoke-airgap', passed: false, failures: ['the release made no bundle (see its bundle step)'], images: c.images.images.map((i) => ({ service: i.service, digest: i.digest })), finishedAt: new Date().toISOString() } };
    }
    // Loaded when it runs: ./airgap.ts imports what imports the pipeline.
    const { smokeAirgap } = await import('./airgap.ts');
    const { writeFile } = await import('node:fs/promises');
    const publicKey = join(c.out, 'smoke-airgap.pub');
    if (c.signing.key) await writeFile(publicKey, c.signing.key.publicKeyPem);
    const r = await smokeAirgap({ source: c.source, bundle: c.bundle.path, ...(c.signing.key ? { publicKey } : {}), progress: (l) => c.io.progress(`smoke-airgap: ${l}`) });
    return {
      did: `bundle loaded in ${r.seconds.load} s; quickstart.sh --bundle healthy in ${r.seconds.startToHealthy ?? '-'} s (no route out)`,
      record: { smoke: 'smoke-airgap', passed: r.failures.length === 0, failures: r.failures, images: c.images.images.map((i) => ({ service: i.service, digest: i.digest })), finishedAt: new Date().toISOString() },
    };
  },
};
