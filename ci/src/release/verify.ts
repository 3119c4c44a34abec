/**
 * The verify step: for every image of a release (by digest), checks that the
 * registry holds the index with exactly the expected platforms, a signature
 * that verifies under the trusted key or identity and names the digest, the
 * legacy signature (key trust), a signed and schema-valid SPDX SBOM for the
 * index and for each platform (plus the plain SPDX referrers, identical to the
 * attested ones), and a signed SLSA provenance naming the index and platform
 * digests. Fails naming the image and each missing or bad piece.
 */
import { isDeepStrictEqual } from 'node:util';
import { StellaError } from '../errors.ts';
import { MediaType, platformName, type ImageIndex } from '../oci/types.ts';
import { validateProvenance, SLSA_PROVENANCE_V1 } from '../provenance/index.ts';
import { spdxReport, SPDX_PREDICATE_TYPE, type SpdxDocument } from '../sbom/index.ts';
import { COSIGN_SIGN_PREDICATE_TYPE, legacySignatureTag, verifyLegacySignature } from '../sign/index.ts';
import { artifactFiles, readLegacySignatures, subjectOf, verifiedAttestations, type Subject } from './attach.ts';
import type { BuildDocument, BuiltImage, Registries, Signing, StepIo } from './context.ts';

export interface VerifyOptions {
  readonly images: BuildDocument;
  readonly registries: Registries;
  readonly trust: NonNullable<Signing['trust']>;
  /** Require the legacy `.sig` signature too (default: when trusting a key). */
  readonly requireLegacy?: boolean;
  /** SPDX 2.3 JSON schema for full validation (default: SPDX_SCHEMA or ../shared/schemas); structural checks always run. */
  readonly spdxSchema?: string;
  /** Each platform SBOM must list Node.js (StellaOps images; default true). False for support images. */
  readonly requireNode?: boolean;
}

export interface ImageVerification {
  readonly service: string;
  readonly image: string;
  readonly ok: boolean;
  readonly problems: readonly string[];
  readonly checked: readonly string[];
}

export async function verifyImage(o: VerifyOptions, image: BuiltImage): Promise<ImageVerification> {
  const name = `${image.repository}@${image.digest}`;
  const problems: string[] = [];
  const checked: string[] = [];
  const { client, repo } = o.registries.forRepository(image.repository);
  let index: Subject;
  let manifests: ImageIndex['manifests'];
  try {
    index = await subjectOf(client, repo, image.digest, name);
    const doc = JSON.parse(new TextDecoder().decode((await client.getManifest(repo, image.digest)).bytes)) as ImageIndex;
    manifests = doc.manifests.filter((m) => m.platform);
  } catch (e) {
    return { service: image.service, image: name, ok: false, problems: [`image index: ${(e as Error).message}`], checked };
  }
  const got = Object.fromEntries(manifests.map((m) => [platformName(m.platform!), m.digest]));
  if (!isDeepStrictEqual(got, image.platforms)) {
    problems.push(`platforms: expected ${JSON.stringify(image.platforms)}, got ${JSON.stringify(got)}`);
  } else checked.push(`index lists ${Object.keys(got).join(', ')}`);

  // Signature (bundle format, cosign v3).
  const sigProblems: string[] = [];
  const sigs = await verifiedAttestations(index, COSIGN_SIGN_PREDICATE_TYPE, { trust: o.trust }, sigProblems);
  if (sigs.length === 0) problems.push(`signature: none verifies for ${image.digest}${sigProblems.length ? ` (${sigProblems.join('; ')})` : ' (no signature attached)'}`);
  else checked.push('signature (bundle)');

  // Legacy signature (cosign v2).
  const wantLegacy = o.requireLegacy ?? 'publicKeyPem' in o.trust;
  if (wantLegacy && 'publicKeyPem' in o.trust) {
    const legacy = await readLegacySignatures(client, repo, image.digest);
    const errors: string[] = [];
    const ok = legacy?.signatures.some((s) => {
      try {
        verifyLegacySignature(s.payload, s.signatureB64, (o.trust as { publicKeyPem: string }).publicKeyPem, image.digest, `legacy signature of ${name}`);
        return true;
      } catch (e) {
        errors.push((e as Error).message);
        return false;
      }
    });
    if (!ok) problems.push(`legacy signature: ${legacy ? `none of ${legacy.signatures.length} verifies (${errors.join('; ')})` : `no ${legacySignatureTag(image.digest)} tag`}`);
    else checked.push('signature (legacy .sig)');
  }

  // SBOMs: the index and each platform.
  await checkSbom(o, index, 'index', problems, checked);
  for (const m of manifests) {
    const s: Subject = { client, repo, name: `${image.repository}@${m.digest}`, descriptor: { mediaType: m.mediaType, digest: m.digest, size: m.size } };
    await checkSbom(o, s, platformName(m.platform!), problems, checked, o.requireNode ?? true);
  }

  // Provenance.
  const provProblems: string[] = [];
  const provs = await verifiedAttestations(index, SLSA_PROVENANCE_V1, { trust: o.trust }, provProblems);
  if (provs.length === 0) problems.push(`provenance: none verifies${provProblems.length ? ` (${provProblems.join('; ')})` : ' (no provenance attached)'}`);
  else {
    const expected = [image.digest, ...Object.values(image.platforms)];
    const bad: string[] = [];
    const good = provs.some((p) => {
      try {
        validateProvenance(p.statement, { expectedSubjects: expected.map((digest) => ({ digest })) });
        return true;
      } catch (e) {
        bad.push((e as Error).message);
        return false;
      }
    });
    if (!good) problems.push(`provenance: ${bad.join('; ')}`);
    else checked.push('provenance (SLSA v1)');
  }
  return { service: image.service, image: name, ok: problems.length === 0, problems, checked };
}

async function checkSbom(o: VerifyOptions, s: Subject, what: string, problems: string[], checked: string[], mustListPackages = false): Promise<void> {
  const p: string[] = [];
  const atts = await verifiedAttestations(s, SPDX_PREDICATE_TYPE, { trust: o.trust }, p);
  if (atts.length === 0) {
    problems.push(`SBOM (${what}): no signed SPDX attestation verifies for ${s.descriptor.digest}${p.length ? ` (${p.join('; ')})` : ''}`);
    return;
  }
  const doc = atts[0]!.statement.predicate as SpdxDocument;
  const report = spdxReport(doc, { schemaPath: o.spdxSchema });
  if (report.problems.length) problems.push(`SBOM (${what}): invalid SPDX 2.3: ${report.problems.slice(0, 5).join('; ')}`);
  if (!JSON.stringify(doc).includes(s.descriptor.digest.slice('sha256:'.length))) problems.push(`SBOM (${what}): the document does not name ${s.descriptor.digest}`);
  if (mustListPackages && !doc.packages?.some((x) => x.name === 'node')) problems.push(`SBOM (${what}): Node.js is not listed`);
  const plain = await artifactFiles(s, MediaType.spdxJson);
  if (plain.length === 0) problems.push(`SBOM (${what}): no plain ${MediaType.spdxJson} referrer`);
  else if (!plain.some((f) => isDeepStrictEqual(JSON.parse(new TextDecoder().decode(f.bytes)), doc))) {
    problems.push(`SBOM (${what}): the plain ${MediaType.spdxJson} referrer differs from the signed SBOM`);
  }
  if (report.problems.length === 0) checked.push(`SBOM ${what}${report.schema.checked ? ' (schema-valid)' : ''}`);
}

/** Verifies every image; throws VERIFY_FAILED naming each image and piece when anything is missing or bad. */
export async function verifyStep(o: VerifyOptions, io: StepIo): Promise<ImageVerification[]> {
  const results: ImageVerification[] = [];
  for (const image of o.images.images) {
    const r = await verifyImage(o, image);
    io.progress(`${image.service}: ${r.ok ? `verified (${r.checked.length} checks)` : `FAILED: ${r.problems.join(' | ')}`}`);
    results.push(r);
  }
  const failed = results.filter((r) => !r.ok);
  if (failed.length) {
    throw new StellaError('VERIFY_FAILED', `verification failed for ${failed.length} of ${results.length} images:\n${failed.map((r) => `  - ${r.image}:\n      ${r.problems.join('\n      ')}`).join('\n')}`);
  }
  return results;
}
