/**
 * Legacy (cosign v2) image signatures: a "simple signing" JSON payload naming
 * the image digest, signed with the key (base64 DER ECDSA / RSA PKCS#1 v1.5 over
 * the payload bytes, SHA-256). Stored under the `sha256-<hex>.sig` tag; this is
 * what `cosign verify` (v2) reads.
 */
import { createSign, createVerify } from 'node:crypto';
import { StellaError } from '../errors.ts';
import { assertDigest } from '../oci/types.ts';
import { keyFingerprint, loadPublicKey, type SigningKey } from './keys.ts';

export const SIMPLE_SIGNING_TYPE = 'cosign container image signature';

export interface SimpleSigningPayload {
  readonly critical: {
    readonly identity: { readonly 'docker-reference': string };
    readonly image: { readonly 'docker-manifest-digest': string };
    readonly type: string;
  };
  readonly optional: Readonly<Record<string, unknown>> | null;
}

export interface LegacySignature {
  /** The exact payload bytes that were signed (the layer blob). */
  readonly payload: Uint8Array;
  /** base64 of the DER signature (the `dev.cosignproject.cosign/signature` annotation). */
  readonly signatureB64: string;
}

/**
 * The payload cosign v2 signs, byte for byte as sigstore's `payload.Cosign`
 * marshals it: `docker-reference` is the repository without tag or digest
 * (e.g. `registry.example/stella/api`), `optional` is null without annotations.
 */
export function simpleSigningPayload(dockerReference: string, imageDigest: string, annotations?: Readonly<Record<string, unknown>>): Uint8Array {
  assertDigest(imageDigest, `signature payload for ${dockerReference}`);
  if (!dockerReference || /[@\s]/.test(dockerReference)) {
    throw new StellaError('INVALID_ARGUMENT', `signature payload: docker-reference "${dockerReference}" must be a repository name without digest (e.g. registry.example/stella/api)`);
  }
  const payload: SimpleSigningPayload = {
    critical: {
      identity: { 'docker-reference': dockerReference },
      image: { 'docker-manifest-digest': imageDigest },
      type: SIMPLE_SIGNING_TYPE,
    },
    optional: annotations && Object.keys(annotations).length > 0 ? annotations : null,
  };
  return new TextEncoder().encode(JSON.stringify(payload));
}

/** Signs the simple-signing payload for `dockerReference@imageDigest`. */
export function signLegacy(key: SigningKey, dockerReference: string, imageDigest: string, annotations?: Readonly<Record<string, unknown>>): LegacySignature {
  const payload = simpleSigningPayload(dockerReference, imageDigest, annotations);
  const s = createSign('sha256');
  s.update(payload);
  return { payload, signatureB64: s.sign(key.privateKey).toString('base64') };
}

/**
 * Verifies a legacy signature and its claim: the signature over `payload` checks
 * with `publicKeyPem`, the payload is a cosign simple-signing payload, and it
 * names `expectedDigest`. Returns the parsed payload.
 */
export function verifyLegacySignature(payload: Uint8Array, signatureB64: string, publicKeyPem: string, expectedDigest: string, what = `signature of ${expectedDigest}`): SimpleSigningPayload {
  assertDigest(expectedDigest, `${what}: expected digest`);
  const pub = loadPublicKey(publicKeyPem, `${what}: public key`);
  const sig = Buffer.from(signatureB64, 'base64');
  const v = createVerify('sha256');
  v.update(payload);
  let ok = false;
  try {
    ok = sig.length > 0 && v.verify(pub.key, sig);
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new StellaError('SIGNATURE_INVALID', `${what}: the signature does not verify with the given public key (${keyFingerprint(pub.spkiDer)}): signed by another key, or the payload was changed`);
  }
  let parsed: SimpleSigningPayload;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload)) as SimpleSigningPayload;
  } catch {
    throw new StellaError('SIGNATURE_INVALID', `${what}: the signed payload is not JSON; expected a cosign simple-signing payload`);
  }
  const type = parsed?.critical?.type;
  if (type !== SIMPLE_SIGNING_TYPE) {
    throw new StellaError('SIGNATURE_INVALID', `${what}: payload type is ${JSON.stringify(type)}; expected "${SIMPLE_SIGNING_TYPE}"`);
  }
  const got = parsed.critical.image?.['docker-manifest-digest'];
  if (got !== expectedDigest) {
    throw new StellaError('SIGNATURE_INVALID', `${what}: the signature is for another image: expected digest ${expectedDigest}, got ${JSON.stringify(got)}`);
  }
  return parsed;
}
