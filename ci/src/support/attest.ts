/**
 * The support images ship in our bundle and our chart: we vouch for them as for our own
 * images. This attaches to each built support image, in its registry, exactly what the
 * release attaches to a StellaOps image — the cosign v3 signature (and the legacy `.sig` with
 * a key), the SPDX 2.3 SBOMs of the index and of each platform (signed attestation + plain
 * referrer) and a signed SLSA v1 provenance — with the same steps (ci/src/release). Re-runs
 * write nothing that is already there and verifies.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import type { BuildDocument } from '../build/document.ts';
import { MediaType } from '../oci/types.ts';
import { serializeSpdx, type SpdxDocument } from '../sbom/index.ts';
import { attachArtifact, attest, subjectOf } from '../release/attach.ts';
import type { Registries, Signing, StepIo } from '../release/context.ts';
import { BUILDER_ID, SOURCE_REPOSITORY } from '../release/pipeline.ts';
import { provenanceStep } from '../release/provenance.ts';
import { spdxStatement } from '../release/sbom.ts';
import { signStep } from '../release/signatures.ts';
import { COMMITTED_INPUTS_LOCK } from './inputs.ts';
import type { BuiltSupportImage } from './index.ts';

export interface AttestSupportOptions {
  readonly images: readonly (Pick<BuiltSupportImage, 'repository' | 'digest' | 'version'> & { readonly name: string; readonly platforms: Readonly<Record<string, string | undefined>>; readonly sboms: { readonly index: SpdxDocument; readonly platforms: Readonly<Record<string, SpdxDocument | undefined>> } })[];
  readonly registries: Registries;
  readonly signing: Signing;
  /** The release these images ship with (recorded in the provenance). */
  readonly version: string;
  readonly commit: string;
  readonly sourceDateEpoch: number;
  readonly secrets?: readonly string[];
}

/** The support images as a build document (service = support name), for the release's steps. */
export function supportBuildDocument(images: AttestSupportOptions['images']): BuildDocument {
  return { images: images.map((i) => ({ service: i.name, repository: i.repository, digest: i.digest, platforms: i.platforms as Record<string, string> })) };
}

export async function attestSupportImages(o: AttestSupportOptions, io: StepIo): Promise<void> {
  const doc = supportBuildDocument(o.images);
  for (const img of o.images) {
    const { client, repo } = o.registries.forRepository(img.repository);
    const attach = async (digest: string, sbom: SpdxDocument, what: string): Promise<void> => {
      const s = await subjectOf(client, repo, digest, `${img.repository}@${digest}`);
      await attest(s, spdxStatement(img.repository, digest, sbom), o.signing);
      await attachArtifact(s, MediaType.spdxJson, { bytes: serializeSpdx(sbom), mediaType: MediaType.spdxJson, title: 'sbom.spdx.json' });
      io.progress(`${img.name} ${what}: SBOM attached to ${digest.slice(0, 19)}`);
    };
    await attach(img.digest, img.sboms.index, 'index');
    for (const [platform, digest] of Object.entries(img.platforms)) {
      const sbom = img.sboms.platforms[platform];
      if (digest && sbom) await attach(digest, sbom, platform);
    }
  }
  await signStep({ images: doc, registries: o.registries, signing: o.signing }, io);
  const inputs = await readFile(COMMITTED_INPUTS_LOCK);
  const now = new Date();
  await provenanceStep(
    {
      images: doc,
      registries: o.registries,
      signing: o.signing,
      version: o.version,
      source: { repository: SOURCE_REPOSITORY, commit: o.commit },
      sourceDateEpoch: o.sourceDateEpoch,
      // What the images are made of: the locked Debian packages and Go binaries.
      baseImage: { uri: 'pkg:generic/stellaops-support-inputs?file=ci/src/support/inputs.lock.json', digest: `sha256:${createHash('sha256').update(inputs).digest('hex')}` },
      builderId: BUILDER_ID,
      invocation: { id: randomUUID(), startedOn: now, finishedOn: now },
      toolVersions: { node: process.version, 'stella-release': o.commit },
      parameters: { images: o.images.map((i) => `${i.name}@${i.version}`).join(',') },
      secrets: o.secrets,
    },
    io,
  );
}
