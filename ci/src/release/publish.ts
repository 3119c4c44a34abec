/**
 * The publish step: sets the release's tags on each image index — last.
 * Everything is verified first (signature, SBOMs, provenance), every tag
 * decision is taken before any tag is written (so an immutable release tag that
 * points elsewhere stops the whole publish before anything moves), and then
 * each tag is written with the index's exact bytes. A registry therefore never
 * shows a release tag whose signature, SBOM or provenance is missing.
 */
import type { TagPlan, TagWrite } from '../tags/index.ts';
import { tagImage } from '../registry/index.ts';
import type { BuildDocument, Registries, StepIo } from './context.ts';
import { verifyStep, type VerifyOptions } from './verify.ts';

export interface PublishOptions extends VerifyOptions {
  readonly images: BuildDocument;
  readonly registries: Registries;
  readonly plan: TagPlan;
  /** Decide and report, write nothing. */
  readonly dryRun?: boolean;
  /** The caller verified these exact digests just before (release's verify step): do not verify again. */
  readonly verified?: boolean;
}

export interface TagResult {
  readonly service: string;
  readonly repository: string;
  readonly tag: string;
  readonly digest: string;
  readonly action: TagWrite;
  readonly written: boolean;
}

export async function publishStep(o: PublishOptions, io: StepIo): Promise<TagResult[]> {
  if (!o.verified) await verifyStep(o, io);
  // Every decision first (a dry run of each tag): an immutable tag that points elsewhere stops here.
  const decisions: (Omit<TagResult, 'written'>)[] = [];
  for (const image of o.images.images) {
    const { client, repo } = o.registries.forRepository(image.repository);
    for (const tag of o.plan.tags) {
      const { action } = await tagImage(client, repo, tag, image.digest, { dryRun: true });
      decisions.push({ service: image.service, repository: image.repository, tag, digest: image.digest, action });
    }
  }
  const results: TagResult[] = [];
  for (const d of decisions) {
    let written = false;
    if (d.action !== 'unchanged' && !o.dryRun) {
      const { client, repo } = o.registries.forRepository(d.repository);
      await tagImage(client, repo, d.tag, d.digest);
      written = true;
    }
    io.progress(`${d.repository}:${d.tag} → ${d.digest.slice(0, 19)} (${d.action}${o.dryRun ? ', dry run' : ''})`);
    results.push({ ...d, written });
  }
  return results;
}
