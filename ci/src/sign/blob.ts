/**
 * Signing and verifying a file (a "blob") as a Sigstore bundle v0.3 with a message
 * signature — what `cosign sign-blob --bundle` writes and
 * `cosign verify-blob --bundle --new-bundle-format` reads.
 *
 * With a key the signature is deterministic, so that the same file signed twice gives the
 * same bundle (the air-gap bundle must be byte-identical from the same inputs):
 *   ECDSA P-256  RFC 6979 nonces (@noble/curves), DER-encoded as cosign writes it;
 *   RSA          PKCS#1 v1.5 is deterministic by construction (node:crypto).
 * Keyless signing (Fulcio certificate + Rekor hashedrekord entry) is inherently not.
 */
import { createSign, createHash, verify as cryptoVerify } from 'node:crypto';
import { p256 } from '@noble/curves/nist.js';
import { bundleFromJSON, bundleToJSON, type Bundle } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { FulcioSigner, MessageSignatureBundleBuilder, RekorWitness, DEFAULT_FULCIO_URL, DEFAULT_REKOR_URL, type Signer } from '@sigstore/sign';
import { toSignedEntity, toTrustMaterial, Verifier, type TrustMaterial } from '@sigstore/verify';
import { StellaError } from '../errors.ts';
import { keyFingerprint, loadPublicKey, type SigningKey } from './keys.ts';
import type { SigstoreBundle, StatementSigner } from './sign.ts';
import { emptyTrustedRoot, type BundleTrust } from './verify.ts';

/** The raw signature over `data` (DER for ECDSA), deterministic for a key. */
export function signBytes(key: SigningKey, data: Uint8Array): Buffer {
  if (key.algorithm === 'ecdsa-p256') {
    const jwk = key.privateKey.export({ format: 'jwk' }) as { d?: string };
    if (!jwk.d) throw new StellaError('KEY_INVALID', 'ECDSA key: no private scalar');
    const sig = p256.sign(data, Buffer.from(jwk.d, 'base64url'), { prehash: true, lowS: true, format: 'der' });
    return Buffer.from(sig);
  }
  const s = createSign('sha256');
  s.update(data);
  return s.sign(key.privateKey);
}

function deterministicSigner(key: SigningKey): Signer {
  return {
    async sign(data: Buffer) {
      return { signature: signBytes(key, data), key: { $case: 'publicKey', publicKey: key.publicKeyPem, hint: key.hint } };
    },
  };
}

/** Signs `data` into a Sigstore bundle (message signature over its sha256). */
export async function signBlob(data: Uint8Array, signer: StatementSigner, what = 'file'): Promise<SigstoreBundle> {
  let bundle: Bundle;
  if (signer.kind === 'key') {
    bundle = await new MessageSignatureBundleBuilder({ signer: deterministicSigner(signer.key), witnesses: [] }).create({ data: Buffer.from(data) });
  } else {
    const fulcioBaseURL = signer.fulcioURL ?? DEFAULT_FULCIO_URL;
    const rekorBaseURL = signer.rekorURL ?? DEFAULT_REKOR_URL;
    const fetchOpts = { timeout: signer.timeoutMs ?? 30_000, retry: signer.retries ?? 2 };
    const token = signer.identityToken;
    try {
      bundle = await new MessageSignatureBundleBuilder({
        signer: new FulcioSigner({ identityProvider: { getToken: async () => token }, fulcioBaseURL, ...fetchOpts }),
        witnesses: [new RekorWitness({ rekorBaseURL, fetchOnConflict: true, ...fetchOpts })], // a message signature: a hashedrekord entry
      }).create({ data: Buffer.from(data) });
    } catch (e) {
      throw new StellaError('SIGNING_FAILED', `${what}: keyless signing failed at Fulcio (${fulcioBaseURL}) or Rekor (${rekorBaseURL}): ${String((e as Error).message).split(token).join('[identity token]')}`);
    }
  }
  return bundleToJSON(bundle);
}

function fail(what: string, why: string): never {
  throw new StellaError('SIGNATURE_INVALID', `${what}: ${why}`);
}

/** Verifies a message-signature bundle over `data`; throws SIGNATURE_INVALID saying what is wrong. */
export function verifyBlob(bundleJson: Uint8Array | string, data: Uint8Array, trust: BundleTrust, what = 'file'): void {
  let bundle: Bundle;
  try {
    bundle = bundleFromJSON(JSON.parse(typeof bundleJson === 'string' ? bundleJson : new TextDecoder().decode(bundleJson)));
  } catch (e) {
    fail(what, `the signature bundle is not a Sigstore bundle: ${(e as Error).message}`);
  }
  if (bundle.content.$case !== 'messageSignature') fail(what, `the signature bundle holds a ${bundle.content.$case}; expected a message signature`);
  const md = bundle.content.messageSignature.messageDigest;
  const got = createHash('sha256').update(data).digest();
  if (md && Buffer.compare(Buffer.from(md.digest), got) !== 0) {
    fail(what, `the signature is over another file (sha256 ${Buffer.from(md.digest).toString('hex')}; this file has ${got.toString('hex')}): the file was changed after signing`);
  }
  if ('publicKeyPem' in trust) {
    const pub = loadPublicKey(trust.publicKeyPem, `${what}: public key`);
    const vm = bundle.verificationMaterial.content;
    if (vm?.$case !== 'publicKey') fail(what, `signed with a ${vm?.$case ?? 'missing'} verification material; expected key ${keyFingerprint(pub.spkiDer)}`);
    const ok = cryptoVerify('sha256', data, pub.key, Buffer.from(bundle.content.messageSignature.signature));
    if (!ok) {
      const hint = vm.publicKey.hint;
      fail(what, hint && hint !== pub.hint ? `signed by another key (the bundle names key hint ${hint}; expected key ${keyFingerprint(pub.spkiDer)}, hint ${pub.hint})` : `the signature does not verify with key ${keyFingerprint(pub.spkiDer)}`);
    }
    return;
  }
  const tm: TrustMaterial = toTrustMaterial(TrustedRoot.fromJSON(trust.trustedRoot ?? emptyTrustedRoot()));
  const t = trust.thresholds ?? {};
  const verifier = new Verifier(tm, { tlogThreshold: t.tlog ?? 1, ctlogThreshold: t.ctlog ?? 1, timestampThreshold: t.timestamp ?? 1 });
  let signer;
  try {
    signer = verifier.verify(toSignedEntity(bundle, Buffer.from(data)));
  } catch (e) {
    fail(what, `verification failed (${(e as { code?: string }).code ?? 'error'}): ${(e as Error).message}`);
  }
  const { issuer, subjectAlternativeName: san } = trust.certificateIdentity;
  if (signer.identity?.extensions?.issuer !== issuer) fail(what, `certificate issuer: expected ${issuer}, got ${signer.identity?.extensions?.issuer ?? '(none)'}`);
  const gotSan = signer.identity?.subjectAlternativeName;
  if (!(typeof san === 'string' ? gotSan === san : gotSan !== undefined && san.test(gotSan))) fail(what, `certificate identity: expected ${String(san)}, got ${gotSan ?? '(none)'}`);
}
