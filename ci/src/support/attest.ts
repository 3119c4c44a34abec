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
import { join } from 'node:path';
import { StellaError } from '../errors.ts';
import type { RegistryClientOptions } from '../registry/index.ts';
import { spdxDigest } from '../sbom/index.ts';
import { COMMITTED_INPUTS_LOCK } from './inputs.ts';
import { buildSupportImages, type BuiltSupportImage, type SupportLock } from './index.ts';

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

export interface AttestLockedOptions {
  readonly source: string;
  readonly lock: SupportLock;
  /** Where the lock was read (for messages). */
  readonly lockPath: string;
  /** The SBOMs `support-images --sbom-dir` wrote: each checked against the lock's SBOM digest, no rebuild. Else the images are rebuilt (reproducibly) to get them. */
  readonly sbomDir?: string;
  readonly registries: Registries;
  readonly registryOptions?: Omit<RegistryClientOptions, 'registry'>;
  readonly signing: Signing;
  readonly version: string;
  readonly commit: string;
  readonly sourceDateEpoch: number;
  readonly secrets?: readonly string[];
  /** Only these support images (default: every image of the lock). */
  readonly names?: readonly string[];
}

/**
 * The support images a lock pins, signed and attested as ours (`attest-support-images`, and
 * the release's bundle step). Their SBOMs come from --sbom-dir (checked against the lock's
 * digests) or from a reproducible rebuild (checked to give the lock's digests).
 */
export async function attestLockedSupportImages(o: AttestLockedOptions, io: StepIo): Promise<{ readonly name: string; readonly image: string }[]> {
  const wanted = Object.entries(o.lock.images).filter(([name, e]) => e && (!o.names || o.names.includes(name)));
  if (!wanted.length) throw new StellaError('LOCK_MISMATCH', `${o.lockPath}: no support images${o.names ? ` among ${o.names.join(', ')}` : ''}`);
  let images: AttestSupportOptions['images'];
  if (o.sbomDir) {
    const out = [];
    for (const [name, e] of wanted) {
      if (!e) continue;
      const read = async (file: string, want: string | undefined): Promise<SpdxDocument> => {
        const path = join(o.sbomDir!, name, file);
        const doc = JSON.parse(await readFile(path, 'utf8').catch(() => {
          throw new StellaError('NOT_FOUND', `--sbom-dir: ${path} is missing (support-images --sbom-dir ${o.sbomDir} writes it)`);
        })) as SpdxDocument;
        if (spdxDigest(doc) !== want) throw new StellaError('LOCK_MISMATCH', `--sbom-dir: ${path} has digest ${spdxDigest(doc)}, ${o.lockPath} records ${want ?? 'none'} for ${name}: not the SBOM of the locked image`);
        return doc;
      };
      const platforms: Record<string, SpdxDocument> = {};
      for (const p of Object.keys(e.platforms)) platforms[p] = await read(`${p.replace('/', '-')}.spdx.json`, e.sbom?.platforms[p as keyof typeof e.platforms]);
      out.push({ name, repository: e.repository, digest: e.digest, platforms: e.platforms as Record<string, string>, version: e.version, sboms: { index: await read('index.spdx.json', e.sbom?.index), platforms } });
    }
    images = out;
  } else {
    const repo = wanted[0]![1]!.repository;
    const registry = repo.slice(0, repo.indexOf('/'));
    const namespace = repo.slice(repo.indexOf('/') + 1, repo.lastIndexOf('/'));
    const built = await buildSupportImages({ source: o.source, names: wanted.map(([n]) => n), push: { registry, namespace }, lockFile: false, sourceDateEpoch: o.lock.sourceDateEpoch ?? 0, ...(o.registryOptions ? { registryOptions: o.registryOptions } : {}), progress: (l) => io.progress(l) });
    for (const b of built.images) {
      const want = o.lock.images[b.name];
      if (!want || want.digest !== b.digest || want.repository !== b.repository) {
        throw new StellaError('LOCK_MISMATCH', `support image ${b.name}: built ${b.repository}@${b.digest}, ${o.lockPath} pins ${want ? `${want.repository}@${want.digest}` : 'nothing'}: the lock is not what these inputs build (run support-images to rewrite it)`);
      }
    }
    images = built.images;
  }
  await attestSupportImages({ images, registries: o.registries, signing: o.signing, version: o.version, commit: o.commit, sourceDateEpoch: o.sourceDateEpoch, ...(o.secrets ? { secrets: o.secrets } : {}) }, io);
  return images.map((b) => ({ name: b.name, image: `${b.repository}@${b.digest}` }));
}
