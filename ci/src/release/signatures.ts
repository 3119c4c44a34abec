/**
 * The sign step: each image index digest signed as cosign v3 signs images (a
 * Sigstore bundle over a `https://sigstore.dev/cosign/sign/v1` statement,
 * stored as a referrer), and, for cosign v2 users, the legacy simple-signing
 * signature under the `sha256-<hex>.sig` tag. Only digests are signed.
 */
import { imageSignatureStatement } from '../sign/index.ts';
import { attachLegacySignature, attest, subjectOf } from './attach.ts';
import type { BuildDocument, Registries, Signing, StepIo } from './context.ts';

export interface SignStepOptions {
  readonly images: BuildDocument;
  readonly registries: Registries;
  readonly signing: Signing;
  /** Also write the legacy `.sig` signature (needs a key; keyless signing writes only the bundle). */
  readonly legacy?: boolean;
}

export interface SignResult {
  readonly service: string;
  readonly digest: string;
  readonly bundleReferrer: string;
  readonly legacyTag?: string;
  readonly written: boolean;
}

export async function signStep(o: SignStepOptions, io: StepIo): Promise<SignResult[]> {
  const out: SignResult[] = [];
  for (const image of o.images.images) {
    const { client, repo } = o.registries.forRepository(image.repository);
    const subject = await subjectOf(client, repo, image.digest, `${image.repository}@${image.digest}`);
    const bundle = await attest(subject, imageSignatureStatement(image.digest), o.signing);
    let legacyTag: string | undefined;
    let legacyWritten = false;
    if ((o.legacy ?? true) && o.signing.key) {
      const legacy = await attachLegacySignature(client, repo, image.digest, o.signing.key, image.repository);
      legacyTag = legacy.tag;
      legacyWritten = legacy.written;
    }
    io.progress(`${image.service}: ${bundle.written || legacyWritten ? 'signed' : 'already signed'} ${image.digest.slice(0, 19)}`);
    out.push({ service: image.service, digest: image.digest, bundleReferrer: bundle.digest, legacyTag, written: bundle.written || legacyWritten });
  }
  return out;
}
