/**
 * Verifying a Sigstore bundle (DSSE over an in-toto statement) with
 * @sigstore/verify, offline:
 *
 *   by key        trusted root with empty lists, the given public key for any hint,
 *                 no transparency-log / CT / timestamp requirement (as
 *                 `cosign verify-attestation --key … --insecure-ignore-tlog`).
 *   by identity   a trusted root (Fulcio CA, Rekor keys, CT logs) and the expected
 *                 OIDC issuer + certificate SAN (exact string or RegExp); by default
 *                 one tlog entry, one SCT and one timestamp are required.
 *
 * Then the statement itself: payloadType in-toto, a Statement v1, the expected
 * predicate type, and a subject carrying the expected image digest. Every
 * failure is StellaError('SIGNATURE_INVALID') naming the artifact, expected vs got.
 */
import { bundleFromJSON, type Bundle } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier, type Signer as VerifiedSigner, type TrustMaterial } from '@sigstore/verify';
import { StellaError } from '../errors.ts';
import { assertDigest, MediaType } from '../oci/types.ts';
import { keyFingerprint, loadPublicKey } from './keys.ts';
import type { SigstoreBundle } from './sign.ts';
import { assertStatement, IN_TOTO_PAYLOAD_TYPE, subjectDigests, type InTotoStatement } from './statement.ts';

export const TRUSTED_ROOT_MEDIA_TYPE = 'application/vnd.dev.sigstore.trustedroot+json;version=0.1';

/** A trusted root with no authorities: what offline key-based verification needs (also `cosign --trusted-root`). */
export function emptyTrustedRoot(): Record<string, unknown> {
  return { mediaType: TRUSTED_ROOT_MEDIA_TYPE, tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [] };
}

export interface KeyTrust {
  /** SPKI PEM of the signer's key. */
  readonly publicKeyPem: string;
}

export interface IdentityTrust {
  readonly certificateIdentity: {
    /** OIDC issuer the certificate must carry (Fulcio extension 1.3.6.1.4.1.57264.1.8 / .1.1), compared exactly. */
    readonly issuer: string;
    /** Certificate SAN: a string is compared exactly; a RegExp must match. */
    readonly subjectAlternativeName: string | RegExp;
  };
  /** Trusted root JSON (`application/vnd.dev.sigstore.trustedroot+json`). */
  readonly trustedRoot: unknown;
  /** Minimums; default 1 each. A CT threshold of 0 accepts certificates without SCTs. */
  readonly thresholds?: { readonly tlog?: number; readonly ctlog?: number; readonly timestamp?: number };
}

export type BundleTrust = KeyTrust | IdentityTrust;

export interface BundleExpectations {
  /** The image (or artifact) digest a subject must carry, `sha256:<hex>`. */
  readonly expectedSubjectDigest?: string;
  readonly expectedPredicateType?: string;
  /** Names the artifact in messages (e.g. `registry/stella/api@sha256:…`). */
  readonly artifact?: string;
}

/** Verifies the bundle and returns the statement it signs. */
export function verifyBundle(bundle: SigstoreBundle | Uint8Array | string, trust: BundleTrust, expect: BundleExpectations = {}): InTotoStatement {
  const what = expect.artifact ?? (expect.expectedSubjectDigest ? `signature of ${expect.expectedSubjectDigest}` : 'Sigstore bundle');
  if (expect.expectedSubjectDigest !== undefined) assertDigest(expect.expectedSubjectDigest, `${what}: expected subject digest`);
  const parsed = parseBundle(bundle, what);
  if (parsed.mediaType !== MediaType.sigstoreBundle && !parsed.mediaType.startsWith('application/vnd.dev.sigstore.bundle.v0.3')) {
    fail(what, `bundle media type is ${parsed.mediaType}; expected ${MediaType.sigstoreBundle}`);
  }
  if (parsed.content.$case !== 'dsseEnvelope') {
    fail(what, `bundle content is ${parsed.content.$case}; expected a DSSE envelope over an in-toto statement`);
  }
  const envelope = parsed.content.dsseEnvelope;
  if (envelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    fail(what, `DSSE payloadType is ${JSON.stringify(envelope.payloadType)}; expected "${IN_TOTO_PAYLOAD_TYPE}"`);
  }

  if ('publicKeyPem' in trust) verifyWithKey(parsed, trust, what);
  else verifyWithIdentity(parsed, trust, what);

  let statement: InTotoStatement;
  try {
    statement = assertStatement(JSON.parse(envelope.payload.toString('utf8')), what);
  } catch (e) {
    fail(what, `the signed payload is not an in-toto statement: ${(e as Error).message}`);
  }
  if (expect.expectedPredicateType !== undefined && statement.predicateType !== expect.expectedPredicateType) {
    fail(what, `wrong predicate type: expected ${expect.expectedPredicateType}, got ${statement.predicateType}`);
  }
  if (expect.expectedSubjectDigest !== undefined) {
    const got = subjectDigests(statement);
    if (!got.includes(expect.expectedSubjectDigest)) {
      const names = statement.subject.map((s) => s.name).filter(Boolean);
      const gotText = got.length > 0 ? got.join(', ') : `no sha256 digest${names.length ? ` (subject names ${names.join(', ')}: signed over a tag, not a digest?)` : ''}`;
      fail(what, `the statement is for another artifact: expected subject digest ${expect.expectedSubjectDigest}, got ${gotText}`);
    }
  }
  return statement;
}

function fail(what: string, why: string): never {
  throw new StellaError('SIGNATURE_INVALID', `${what}: ${why}`);
}

function parseBundle(bundle: SigstoreBundle | Uint8Array | string, what: string): Bundle {
  let json: unknown = bundle;
  try {
    if (typeof bundle === 'string') json = JSON.parse(bundle);
    else if (bundle instanceof Uint8Array) json = JSON.parse(new TextDecoder().decode(bundle));
  } catch {
    fail(what, 'the bundle is not JSON');
  }
  try {
    return bundleFromJSON(json);
  } catch (e) {
    fail(what, `the bundle is malformed: ${(e as Error).message}`);
  }
}

function trustedRootFrom(json: unknown, what: string): TrustedRoot {
  if (typeof json !== 'object' || json === null) fail(what, 'the trusted root is not a JSON object');
  try {
    return TrustedRoot.fromJSON(json);
  } catch (e) {
    fail(what, `the trusted root is malformed: ${(e as Error).message}`);
  }
}

function verifyWithKey(bundle: Bundle, trust: KeyTrust, what: string): void {
  const pub = loadPublicKey(trust.publicKeyPem, `${what}: public key`);
  const base = toTrustMaterial(trustedRootFrom(emptyTrustedRoot(), what));
  // The caller chose the key: use it whatever hint the bundle carries (cosign --key does the same).
  const tm: TrustMaterial = { ...base, publicKey: () => ({ publicKey: pub.key, validFor: () => true }) };
  const verifier = new Verifier(tm, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  const vm = bundle.verificationMaterial.content;
  if (vm?.$case !== 'publicKey') {
    fail(what, `the bundle is signed with a ${vm?.$case ?? 'missing'} verification material; expected a public-key bundle for key ${keyFingerprint(pub.spkiDer)}`);
  }
  try {
    verifier.verify(toSignedEntity(bundle));
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'SIGNATURE_ERROR') {
      const hint = vm.publicKey.hint;
      if (hint && hint !== pub.hint) {
        fail(what, `signed by another key: expected key ${keyFingerprint(pub.spkiDer)} (hint ${pub.hint}), the bundle names key hint ${hint}, and the signature does not verify with the expected key`);
      }
      fail(what, `the signature does not verify with key ${keyFingerprint(pub.spkiDer)}: the statement was changed after signing, or another key signed it`);
    }
    fail(what, `verification failed (${code ?? 'error'}): ${(e as Error).message}`);
  }
}

function verifyWithIdentity(bundle: Bundle, trust: IdentityTrust, what: string): void {
  const { issuer, subjectAlternativeName } = trust.certificateIdentity;
  if (!issuer) throw new StellaError('INVALID_ARGUMENT', `${what}: certificateIdentity.issuer is empty`);
  const tm = toTrustMaterial(trustedRootFrom(trust.trustedRoot, what));
  const t = trust.thresholds ?? {};
  const verifier = new Verifier(tm, { tlogThreshold: t.tlog ?? 1, ctlogThreshold: t.ctlog ?? 1, timestampThreshold: t.timestamp ?? 1 });
  if (bundle.verificationMaterial.content?.$case === 'publicKey') {
    fail(what, 'the bundle is signed with a bare key; expected a Fulcio certificate for an identity');
  }
  let signer: VerifiedSigner;
  try {
    signer = verifier.verify(toSignedEntity(bundle));
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'error';
    const why: Record<string, string> = {
      SIGNATURE_ERROR: 'the signature does not verify with the certificate key: the statement was changed after signing',
      CERTIFICATE_ERROR: 'the signing certificate does not chain to a certificate authority of the trusted root (or lacks the required SCTs)',
      TLOG_ERROR: 'transparency log entries do not meet the threshold',
      TLOG_INCLUSION_PROMISE_ERROR: 'the transparency log inclusion promise does not verify with a log key of the trusted root',
      TLOG_BODY_ERROR: 'the transparency log entry is not for this signature',
      TIMESTAMP_ERROR: 'no verified timestamp (transparency log or TSA)',
    };
    fail(what, `${why[code] ?? 'verification failed'} (${code}: ${(e as Error).message})`);
  }
  const gotIssuer = signer.identity?.extensions?.issuer;
  const gotSAN = signer.identity?.subjectAlternativeName;
  if (gotIssuer !== issuer) {
    fail(what, `certificate issuer: expected ${issuer}, got ${gotIssuer ?? '(none)'}`);
  }
  const sanOK = typeof subjectAlternativeName === 'string' ? gotSAN === subjectAlternativeName : gotSAN !== undefined && subjectAlternativeName.test(gotSAN);
  if (!sanOK) {
    fail(what, `certificate identity: expected ${String(subjectAlternativeName)}, got ${gotSAN ?? '(none)'}`);
  }
}
