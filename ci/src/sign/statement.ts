/**
 * in-toto Statement v1: what every signature and attestation of an image is
 * made over. https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md
 */
import { StellaError } from '../errors.ts';
import { assertDigest, digestHex } from '../oci/types.ts';

export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
/** The DSSE payloadType of an in-toto statement. */
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
/** The predicate type of a cosign v3 image signature (`cosign sign --new-bundle-format`). */
export const COSIGN_SIGN_PREDICATE_TYPE = 'https://sigstore.dev/cosign/sign/v1';

export interface ResourceDescriptor {
  readonly name?: string;
  readonly uri?: string;
  readonly digest?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, unknown>>;
  readonly [extra: string]: unknown;
}

export interface InTotoStatement<P = unknown> {
  readonly _type: string;
  readonly subject: readonly ResourceDescriptor[];
  readonly predicateType: string;
  readonly predicate?: P;
}

/**
 * The statement cosign v3 signs for an image: subject = the image digest only
 * (cosign's `signDigestBundle` sets `digest: {sha256: <hex>}` and no `name`),
 * predicate `{}`. Annotations (`cosign sign -a k=v`) go on the subject.
 */
export function imageSignatureStatement(imageDigest: string, annotations?: Readonly<Record<string, string>>): InTotoStatement<Record<string, never>> {
  assertDigest(imageDigest, 'image signature subject');
  const subject: ResourceDescriptor =
    annotations && Object.keys(annotations).length > 0
      ? { digest: { sha256: digestHex(imageDigest) }, annotations }
      : { digest: { sha256: digestHex(imageDigest) } };
  return { _type: IN_TOTO_STATEMENT_V1, subject: [subject], predicateType: COSIGN_SIGN_PREDICATE_TYPE, predicate: {} };
}

/** Checks the shape of a statement we are asked to sign or have just verified. */
export function assertStatement(value: unknown, what: string): InTotoStatement {
  const s = value as Partial<InTotoStatement> | null;
  if (typeof s !== 'object' || s === null || Array.isArray(s)) {
    throw new StellaError('ATTESTATION_INVALID', `${what}: the statement is not a JSON object`);
  }
  if (s._type !== IN_TOTO_STATEMENT_V1 && s._type !== 'https://in-toto.io/Statement/v0.1') {
    throw new StellaError('ATTESTATION_INVALID', `${what}: statement _type is ${JSON.stringify(s._type)}; expected "${IN_TOTO_STATEMENT_V1}"`);
  }
  if (!Array.isArray(s.subject) || s.subject.length === 0) {
    throw new StellaError('ATTESTATION_INVALID', `${what}: the statement has no subject; expected at least one subject with a digest`);
  }
  if (typeof s.predicateType !== 'string' || s.predicateType === '') {
    throw new StellaError('ATTESTATION_INVALID', `${what}: the statement has no predicateType`);
  }
  return s as InTotoStatement;
}

/** The sha256 digests (as `sha256:<hex>`) that a statement's subjects carry. */
export function subjectDigests(s: InTotoStatement): string[] {
  const out: string[] = [];
  for (const sub of s.subject) {
    const hex = sub?.digest?.['sha256'];
    if (typeof hex === 'string') out.push(`sha256:${hex}`);
  }
  return out;
}
