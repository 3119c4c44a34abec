/**
 * The release's `bundle` step (registered in ../release/hooks.ts), after `chart`:
 *
 *   1. the support images the release built (`--support-images build`) signed and attested under
 *      the release's own signing, as `attest-support-images` does, with the SBOMs the build wrote
 *      (dist/sbom/support) — only those that do not verify under it yet (a bundle carries nothing
 *      we do not vouch for, and `bundle` checks every image at its source);
 *   2. `bundle` into dist/: stella-bundle-<version>.tar.zst, byte-identical from the same inputs.
 *
 * Versioned releases only (vX.Y.Z-rc.N, vX.Y.Z): a disconnected site installs a version; edge
 * and nightly are channels that move, and skip the step (saying so). With the support images
 * taken from the committed lock (`--support-images lock`) the step runs when they already verify
 * under the release key (attested before: attest-support-images); otherwise it is skipped, naming
 * them and how to get it: attesting them needs their SBOMs, which only their build writes. A re-release with the
 * same inputs — every image digest, the support lock, the chart digest, the version, the time,
 * the commit and the public key — keeps the bundle it made (its sha256 checked): nothing is
 * attested, collected or compressed again.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BundleStep, ReleaseStepContext } from '../release/hooks.ts';
import type { SupportImageLock } from './create.ts';
import { bundleFileName } from './format.ts';

// The release's pipeline imports this module (through hooks.ts); what the step runs is loaded
// when it runs, so that the modules it needs (which import the pipeline) load after it.
const runtime = async () => ({
  ...(await import('../release/verify.ts')),
  ...(await import('../support/index.ts')),
  ...(await import('../support/attest.ts')),
  ...(await import('../base/fetch.ts')),
  ...(await import('./create.ts')),
});

/** Where the step records what it made from which inputs (dist/, beside the bundle). */
export const BUNDLE_RECORD_FILE = 'bundle-inputs.json';

interface Recorded {
  readonly key: string;
  readonly file: string;
  readonly sha256: string;
  readonly bytes: number;
}

/** Where `--support-images build` wrote the support images' SBOMs (ci/src/release/extras.ts). */
const supportSbomDir = (c: ReleaseStepContext): string => join(c.out, 'sbom', 'support');

function inputsKey(c: ReleaseStepContext, supportLock: string): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({
    version: c.plan.version,
    commit: c.revision.commit,
    time: c.revision.time,
    images: c.images.images.map((i) => [i.service, i.repository, i.digest]),
    supportLock,
    chart: c.chart?.digest,
    key: c.signing.key?.publicKeyPem ?? c.signing.trust,
  }));
  return `sha256:${h.digest('hex')}`;
}

/** Verdicts on support images, per release run (its context): the availability check and the run share them. */
const verdictsOf = new WeakMap<ReleaseStepContext, Map<string, boolean>>();

/** The support images of the lock that do not verify under the release's trust (each verified once per release run). */
async function unverifiedSupport(c: ReleaseStepContext, lock: Awaited<ReturnType<Awaited<ReturnType<typeof runtime>>['readSupportLock']>>): Promise<{ unverified: string[]; verified: Set<string> }> {
  const { verifyImage } = await runtime();
  const verdicts = verdictsOf.get(c) ?? new Map<string, boolean>();
  verdictsOf.set(c, verdicts);
  const unverified: string[] = [];
  const verified = new Set<string>();
  for (const [name, e] of Object.entries(lock.images)) {
    if (!e) continue;
    const id = `${e.repository}@${e.digest}`;
    let ok = verdicts.get(id);
    if (ok === undefined) {
      const v = await verifyImage({ images: { images: [] }, registries: c.registries, trust: c.signing.trust!, requireNode: false }, { service: name, repository: e.repository, digest: e.digest, platforms: e.platforms as Record<string, string> }).catch(() => undefined);
      ok = v?.ok === true;
      verdicts.set(id, ok);
    }
    if (ok) verified.add(`${e.repository}@${e.digest}`);
    else unverified.push(name);
  }
  return { unverified, verified };
}

export const bundleReleaseStep: BundleStep = {
  name: 'bundle',
  async unavailable(c) {
    if (c.plan.channel !== 'release' && c.plan.channel !== 'rc') return `versioned releases only (vX.Y.Z-rc.N, vX.Y.Z); ${c.plan.version} is the ${c.plan.channel} channel`;
    if (!c.supportLockFile) return 'no support images in this release (--support-images skip, or none pushed): a bundle carries them all';
    if (!c.chart) return 'no chart in this release: a bundle carries it';
    if (!c.signing.key) return 'keyless signing: the bundle is signed with the release key (its signature must be deterministic); sign with --key';
    if (!existsSync(supportSbomDir(c))) {
      // From the committed lock: bundled when they already verify under the release key (attested
      // before, e.g. by attest-support-images); attesting them here would need their build's SBOMs.
      const { readSupportLock } = await runtime();
      const { unverified } = await unverifiedSupport(c, await readSupportLock(c.supportLockFile));
      if (unverified.length) return `the support images come from the committed lock and ${unverified.join(', ')} do not verify under the release key; attesting them needs the SBOMs their build writes: use --support-images build (or attest-support-images, then release again)`;
    }
    return undefined;
  },
  async run(c) {
    const { readSupportLock, attestLockedSupportImages, sha256File, createBundle } = await runtime();
    const lockText = await readFile(c.supportLockFile!, 'utf8');
    const key = inputsKey(c, lockText);
    const recordPath = join(c.out, BUNDLE_RECORD_FILE);
    const file = join(c.out, bundleFileName(c.plan.version));
    if (existsSync(recordPath) && existsSync(file)) {
      const r = JSON.parse(await readFile(recordPath, 'utf8')) as Recorded;
      if (r.key === key && r.file === file && (await stat(file)).size === r.bytes && (await sha256File(file)) === r.sha256) {
        return { did: `unchanged: ${file} (same inputs, sha256 ${r.sha256.slice(0, 12)}…)`, record: { path: file, sha256: r.sha256, bytes: r.bytes } };
      }
    }
    const lock = await readSupportLock(c.supportLockFile!);
    // 1. The support images under the release's signing: only those that do not verify yet.
    const { unverified, verified } = await unverifiedSupport(c, lock);
    if (unverified.length) {
      c.io.progress(`bundle: signing and attesting ${unverified.length} support image(s) under the release key: ${unverified.join(', ')}`);
      await attestLockedSupportImages(
        { source: c.source, lock, lockPath: c.supportLockFile!, sbomDir: supportSbomDir(c), names: unverified, registries: c.registries, signing: c.signing, version: c.plan.version, commit: c.revision.commit, sourceDateEpoch: c.revision.time },
        c.io,
      );
    }
    // 2. The bundle.
    const made = await createBundle({
      source: c.source,
      version: c.plan.version,
      images: c.images,
      supportLock: lock as unknown as SupportImageLock,
      registries: c.registries,
      signing: c.signing,
      sourceDateEpoch: c.revision.time,
      commit: c.revision.commit,
      outDir: c.out,
      // Those verified above are not verified again; the rest (the release's images, the support
      // images just attested) are, at their source.
      verified,
      progress: (l) => c.io.progress(l),
    });
    const rec: Recorded = { key, file: made.file, sha256: made.sha256, bytes: made.bytes };
    await writeFile(recordPath, `${JSON.stringify(rec, null, 2)}\n`);
    return {
      did: `${made.file}: ${made.images} images, ${made.blobs.count} blobs, ${(made.bytes / 1e6).toFixed(1)} MB${unverified.length ? `; ${unverified.length} support images attested` : ''}`,
      record: { path: made.file, sha256: made.sha256, bytes: made.bytes },
    };
  },
};
