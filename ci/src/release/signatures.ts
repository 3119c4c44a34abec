/**
 * The sign step: each image index digest signed as cosign v3 signs images (a
 * Sigstore bundle over a `https://sigstore.dev/cosign/sign/v1` statement,
 * stored as a referrer), and, for cosign v2 users, the legacy simple-signing
 * signature under the `sha256-<hex>.sig` tag. Only digests are signed.
 */
import type { ImageManifest } from '../oci/types.ts';
import {
  imageSignatureStatement,
  legacySignatureTag,
  legacySignaturesOf,
  publishLegacySignature,
  verifyLegacySignature,
} from '../sign/index.ts';
import { attest, subjectOf } from './attach.ts';
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
      legacyTag = legacySignatureTag(image.digest);
      const existing = await readLegacy(o, image.repository, legacyTag);
      const valid = existing?.signatures.some((s) => {
        try {
          verifyLegacySignature(s.payload, s.signatureB64, o.signing.key!.publicKeyPem, image.digest);
          return true;
        } catch {
          return false;
        }
      });
      if (!valid) {
        await publishLegacySignature(client, repo, image.digest, o.signing.key, image.repository);
        legacyWritten = true;
      }
    }
    io.progress(`${image.service}: ${bundle.written || legacyWritten ? 'signed' : 'already signed'} ${image.digest.slice(0, 19)}`);
    out.push({ service: image.service, digest: image.digest, bundleReferrer: bundle.digest, legacyTag, written: bundle.written || legacyWritten });
  }
  return out;
}

/** The legacy `.sig` manifest of an image and its signatures with their payloads, if any. */
export async function readLegacy(
  o: { registries: Registries },
  repository: string,
  tag: string,
): Promise<{ manifest: ImageManifest; signatures: { payload: Uint8Array; signatureB64: string }[] } | undefined> {
  const { client, repo } = o.registries.forRepository(repository);
  if ((await client.resolve(repo, tag)) === undefined) return undefined;
  const manifest = JSON.parse(new TextDecoder().decode((await client.getManifest(repo, tag)).bytes)) as ImageManifest;
  const signatures = [];
  for (const s of legacySignaturesOf(manifest)) signatures.push({ payload: await client.getBlob(repo, s.layer.digest), signatureB64: s.signatureB64 });
  return { manifest, signatures };
}
