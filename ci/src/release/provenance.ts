/**
 * The provenance step: an in-toto statement with an SLSA v1 provenance
 * predicate per image (subjects: the index and each platform manifest),
 * signed as DSSE and attached to the index digest.
 */
import { provenanceStatement, type ProvenanceStatement } from '../provenance/index.ts';
import type { InTotoStatement } from '../sign/index.ts';
import { attest, subjectOf } from './attach.ts';
import type { BuildDocument, Registries, Signing, StepIo } from './context.ts';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface ProvenanceStepOptions {
  readonly images: BuildDocument;
  readonly registries: Registries;
  readonly signing: Signing;
  readonly version: string;
  readonly source: { readonly repository: string; readonly commit: string; readonly ref?: string };
  readonly sourceDateEpoch: number;
  readonly baseImage: { readonly uri: string; readonly digest: string };
  readonly builderId: string;
  readonly invocation: { readonly id?: string; readonly startedOn: Date | string; readonly finishedOn: Date | string };
  readonly toolVersions: Readonly<Record<string, string>>;
  readonly parameters?: Readonly<Record<string, string | number | boolean>>;
  readonly secrets?: readonly string[];
  readonly outDir?: string;
}

export function imageProvenance(o: ProvenanceStepOptions, image: BuildDocument['images'][number]): ProvenanceStatement {
  const platforms = Object.keys(image.platforms);
  return provenanceStatement({
    subjects: [{ name: image.repository, digest: image.digest }, ...platforms.map((p) => ({ name: `${image.repository}:${p}`, digest: image.platforms[p]! }))],
    source: o.source,
    build: { version: o.version, services: [image.service], platforms, sourceDateEpoch: o.sourceDateEpoch, baseImage: o.baseImage, parameters: o.parameters },
    builder: { id: o.builderId },
    invocation: o.invocation,
    toolVersions: o.toolVersions,
    secrets: o.secrets,
  });
}

/** A re-run's provenance differs only in its run metadata (times, invocation id): that is the same provenance. */
export function withoutRunMetadata(st: InTotoStatement): unknown {
  const p = st.predicate as { buildDefinition?: unknown; runDetails?: { builder?: unknown } } | undefined;
  return { subject: st.subject, predicateType: st.predicateType, buildDefinition: p?.buildDefinition, builder: p?.runDetails?.builder };
}

export async function provenanceStep(o: ProvenanceStepOptions, io: StepIo): Promise<{ service: string; digest: string; referrer: string }[]> {
  const out = [];
  for (const image of o.images.images) {
    const { client, repo } = o.registries.forRepository(image.repository);
    const subject = await subjectOf(client, repo, image.digest, `${image.repository}@${image.digest}`);
    const statement = imageProvenance(o, image);
    const r = await attest(subject, statement as unknown as InTotoStatement, o.signing, withoutRunMetadata);
    if (o.outDir) {
      await mkdir(join(o.outDir, image.service), { recursive: true });
      await writeFile(join(o.outDir, image.service, `${image.service}.provenance.json`), `${JSON.stringify(statement, null, 2)}\n`);
    }
    io.progress(`${image.service}: ${r.written ? 'provenance attached to' : 'provenance already on'} ${image.digest.slice(0, 19)}`);
    out.push({ service: image.service, digest: image.digest, referrer: r.digest });
  }
  return out;
}
