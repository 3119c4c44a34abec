/**
 * Key-based Sigstore bundles (offline), legacy simple-signing signatures and
 * the OCI manifests that store them: round trips and every refusal.
 */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { StellaError } from '../../ci/src/errors.ts';
import { EMPTY_JSON_DIGEST, MediaType, jsonBytes, sha256Digest, type Descriptor } from '../../ci/src/oci/types.ts';
import {
  COSIGN_SIGN_PREDICATE_TYPE,
  IN_TOTO_PAYLOAD_TYPE,
  IN_TOTO_STATEMENT_V1,
  bundleReferrerManifest,
  generateKeyPair,
  imageSignatureStatement,
  keyFingerprint,
  legacySignatureManifest,
  legacySignatureTag,
  legacySignaturesOf,
  loadPrivateKey,
  signLegacy,
  signStatement,
  simpleSigningPayload,
  verifyBundle,
  verifyLegacySignature,
  type InTotoStatement,
  type SigstoreBundle,
} from '../../ci/src/sign/index.ts';

const IMAGE = `sha256:${'a'.repeat(64)}`;
const OTHER_IMAGE = `sha256:${'b'.repeat(64)}`;
const REF = `registry.example/stella/api@${IMAGE}`;
const SLSA = 'https://slsa.dev/provenance/v1';

const ours = generateKeyPair('pw');
const key = loadPrivateKey(ours.privateKeyPem, 'pw');
const stranger = generateKeyPair();

async function rejects(p: Promise<unknown> | (() => unknown)): Promise<StellaError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (e instanceof StellaError) return e;
    throw e;
  }
  throw new Error('expected a StellaError');
}

function tamperPayload(bundle: SigstoreBundle, edit: (s: Record<string, unknown>) => void): SigstoreBundle {
  const b = structuredClone(bundle);
  const st = JSON.parse(Buffer.from(b.dsseEnvelope!.payload, 'base64').toString());
  edit(st);
  b.dsseEnvelope!.payload = Buffer.from(JSON.stringify(st)).toString('base64');
  return b;
}

describe('image signature statement (cosign v3 layout)', () => {
  it('has the sign/v1 predicate, predicate {}, and a subject with only the digest', () => {
    expect(imageSignatureStatement(IMAGE)).toEqual({
      _type: IN_TOTO_STATEMENT_V1,
      subject: [{ digest: { sha256: 'a'.repeat(64) } }],
      predicateType: COSIGN_SIGN_PREDICATE_TYPE,
      predicate: {},
    });
  });

  it('refuses a tag where a digest belongs', async () => {
    expect((await rejects(() => imageSignatureStatement('registry.example/stella/api:v1.4.0'))).code).toBe('DIGEST_INVALID');
  });
});

describe('signStatement (key, offline) → verifyBundle', () => {
  it('round-trips: a v0.3 bundle, DSSE over the in-toto statement, key hint in verificationMaterial, no keyid', async () => {
    const statement = imageSignatureStatement(IMAGE);
    const bundle = await signStatement(statement, { kind: 'key', key }, REF);
    expect(bundle.mediaType).toBe('application/vnd.dev.sigstore.bundle.v0.3+json');
    expect(bundle.dsseEnvelope!.payloadType).toBe(IN_TOTO_PAYLOAD_TYPE);
    expect(JSON.parse(Buffer.from(bundle.dsseEnvelope!.payload, 'base64').toString())).toEqual(statement);
    expect(bundle.dsseEnvelope!.signatures).toHaveLength(1);
    expect(Object.keys(bundle.dsseEnvelope!.signatures[0]!)).toEqual(['sig']);
    expect(JSON.stringify(bundle)).not.toContain('"keyid"');
    expect(bundle.verificationMaterial.publicKey).toEqual({ hint: key.hint });
    expect(bundle.verificationMaterial.tlogEntries ?? []).toEqual([]);

    const got = verifyBundle(bundle, { publicKeyPem: ours.publicKeyPem }, { expectedSubjectDigest: IMAGE, expectedPredicateType: COSIGN_SIGN_PREDICATE_TYPE });
    expect(got).toEqual(statement);
    // Bytes and string forms too (what a registry blob or a file gives).
    expect(verifyBundle(jsonBytes(bundle), { publicKeyPem: ours.publicKeyPem })).toEqual(statement);
    expect(verifyBundle(JSON.stringify(bundle), { publicKeyPem: ours.publicKeyPem })).toEqual(statement);
  });

  it('signs any statement (e.g. SLSA provenance) and signs with RSA keys too', async () => {
    const rsa = loadPrivateKey(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
    const statement: InTotoStatement = { _type: IN_TOTO_STATEMENT_V1, subject: [{ name: 'registry.example/stella/api', digest: { sha256: 'a'.repeat(64) } }], predicateType: SLSA, predicate: { buildDefinition: {} } };
    const bundle = await signStatement(statement, { kind: 'key', key: rsa });
    expect(verifyBundle(bundle, { publicKeyPem: rsa.publicKeyPem }, { expectedSubjectDigest: IMAGE, expectedPredicateType: SLSA })).toEqual(statement);
  });

  it('refuses to sign something that is not an in-toto statement', async () => {
    const e = await rejects(signStatement({ _type: 'x', subject: [], predicateType: SLSA } as InTotoStatement, { kind: 'key', key }, 'provenance of api'));
    expect(e.code).toBe('ATTESTATION_INVALID');
    expect(e.message).toMatch(/^provenance of api: statement _type is "x"; expected "https:\/\/in-toto.io\/Statement\/v1"/);
  });

  describe('refusals: SIGNATURE_INVALID naming the artifact, expected vs got', () => {
    it('wrong key', async () => {
      const bundle = await signStatement(imageSignatureStatement(IMAGE), { kind: 'key', key }, REF);
      const e = await rejects(() => verifyBundle(bundle, { publicKeyPem: stranger.publicKeyPem }, { artifact: REF }));
      expect(e.code).toBe('SIGNATURE_INVALID');
      const strangerFp = keyFingerprint(loadPrivateKey(stranger.privateKeyPem).spkiDer);
      expect(e.message).toBe(
        `${REF}: signed by another key: expected key ${strangerFp} (hint ${loadPrivateKey(stranger.privateKeyPem).hint}), the bundle names key hint ${key.hint}, and the signature does not verify with the expected key`,
      );
    });

    it('wrong key even when the bundle claims the expected key\'s hint', async () => {
      const bundle = structuredClone(await signStatement(imageSignatureStatement(IMAGE), { kind: 'key', key }, REF));
      bundle.verificationMaterial.publicKey = { hint: loadPrivateKey(stranger.privateKeyPem).hint };
      const e = await rejects(() => verifyBundle(bundle, { publicKeyPem: stranger.publicKeyPem }, { artifact: REF }));
      expect(e.message).toMatch(/the signature does not verify with key sha256:[0-9a-f]{64}: the statement was changed after signing, or another key signed it/);
    });

    it('a statement changed after signing (subject swapped to another image)', async () => {
      const bundle = await signStatement(imageSignatureStatement(IMAGE), { kind: 'key', key }, REF);
      const forged = tamperPayload(bundle, (s) => (s['subject'] = [{ digest: { sha256: 'b'.repeat(64) } }]));
      const e = await rejects(() => verifyBundle(forged, { publicKeyPem: ours.publicKeyPem }, { expectedSubjectDigest: OTHER_IMAGE }));
      expect(e.code).toBe('SIGNATURE_INVALID');
      expect(e.message).toMatch(new RegExp(`^signature of ${OTHER_IMAGE}: the signature does not verify with key sha256:[0-9a-f]{64}: the statement was changed after signing`));
    });

    it('a signature made for another image', async () => {
      const bundle = await signStatement(imageSignatureStatement(OTHER_IMAGE), { kind: 'key', key });
      const e = await rejects(() => verifyBundle(bundle, { publicKeyPem: ours.publicKeyPem }, { expectedSubjectDigest: IMAGE, artifact: REF }));
      expect(e.code).toBe('SIGNATURE_INVALID');
      expect(e.message).toBe(`${REF}: the statement is for another artifact: expected subject digest ${IMAGE}, got ${OTHER_IMAGE}`);
    });

    it('a signature over a tag instead of a digest', async () => {
      const overTag: InTotoStatement = { _type: IN_TOTO_STATEMENT_V1, subject: [{ name: 'registry.example/stella/api:v1.4.0', digest: {} }], predicateType: COSIGN_SIGN_PREDICATE_TYPE, predicate: {} };
      const bundle = await signStatement(overTag, { kind: 'key', key });
      const e = await rejects(() => verifyBundle(bundle, { publicKeyPem: ours.publicKeyPem }, { expectedSubjectDigest: IMAGE, artifact: REF }));
      expect(e.code).toBe('SIGNATURE_INVALID');
      expect(e.message).toBe(
        `${REF}: the statement is for another artifact: expected subject digest ${IMAGE}, got no sha256 digest (subject names registry.example/stella/api:v1.4.0: signed over a tag, not a digest?)`,
      );
      // And the expectation itself must be a digest, not a tag.
      const e2 = await rejects(() => verifyBundle(bundle, { publicKeyPem: ours.publicKeyPem }, { expectedSubjectDigest: 'registry.example/stella/api:v1.4.0' }));
      expect(e2.code).toBe('DIGEST_INVALID');
    });

    it('the wrong predicate type', async () => {
      const bundle = await signStatement(imageSignatureStatement(IMAGE), { kind: 'key', key });
      const e = await rejects(() => verifyBundle(bundle, { publicKeyPem: ours.publicKeyPem }, { expectedSubjectDigest: IMAGE, expectedPredicateType: SLSA, artifact: REF }));
      expect(e.code).toBe('SIGNATURE_INVALID');
      expect(e.message).toBe(`${REF}: wrong predicate type: expected ${SLSA}, got ${COSIGN_SIGN_PREDICATE_TYPE}`);
    });

    it('a malformed bundle, a non-JSON one, and a changed payloadType', async () => {
      expect((await rejects(() => verifyBundle('{', { publicKeyPem: ours.publicKeyPem }))).message).toBe('Sigstore bundle: the bundle is not JSON');
      expect((await rejects(() => verifyBundle({ mediaType: 'x' } as unknown as SigstoreBundle, { publicKeyPem: ours.publicKeyPem }))).message).toMatch(/the bundle is malformed/);
      const bundle = structuredClone(await signStatement(imageSignatureStatement(IMAGE), { kind: 'key', key }));
      bundle.dsseEnvelope!.payloadType = 'text/plain';
      expect((await rejects(() => verifyBundle(bundle, { publicKeyPem: ours.publicKeyPem }))).message).toBe(
        'Sigstore bundle: DSSE payloadType is "text/plain"; expected "application/vnd.in-toto+json"',
      );
    });
  });
});

describe('legacy (cosign v2) simple-signing signatures', () => {
  it('the payload is byte for byte what cosign signs', () => {
    expect(new TextDecoder().decode(simpleSigningPayload('registry.example/stella/api', IMAGE))).toBe(
      `{"critical":{"identity":{"docker-reference":"registry.example/stella/api"},"image":{"docker-manifest-digest":"${IMAGE}"},"type":"cosign container image signature"},"optional":null}`,
    );
  });

  it('signs and verifies; refuses another key, another image, a changed payload', async () => {
    const sig = signLegacy(key, 'registry.example/stella/api', IMAGE);
    expect(verifyLegacySignature(sig.payload, sig.signatureB64, ours.publicKeyPem, IMAGE).critical.identity['docker-reference']).toBe('registry.example/stella/api');

    const wrongKey = await rejects(() => verifyLegacySignature(sig.payload, sig.signatureB64, stranger.publicKeyPem, IMAGE, REF));
    expect(wrongKey.code).toBe('SIGNATURE_INVALID');
    expect(wrongKey.message).toMatch(new RegExp(`^${REF.replace(/[.]/g, '\\.')}: the signature does not verify with the given public key \\(sha256:[0-9a-f]{64}\\)`));

    const otherImage = await rejects(() => verifyLegacySignature(sig.payload, sig.signatureB64, ours.publicKeyPem, OTHER_IMAGE));
    expect(otherImage.message).toBe(`signature of ${OTHER_IMAGE}: the signature is for another image: expected digest ${OTHER_IMAGE}, got "${IMAGE}"`);

    const changed = simpleSigningPayload('registry.example/stella/api', OTHER_IMAGE);
    expect((await rejects(() => verifyLegacySignature(changed, sig.signatureB64, ours.publicKeyPem, OTHER_IMAGE))).code).toBe('SIGNATURE_INVALID');
  });
});

describe('storage manifests', () => {
  const subject: Descriptor = { mediaType: MediaType.ociIndex, digest: IMAGE, size: 1234 };

  it('bundle referrer: artifactType, empty config, one bundle layer, subject, annotations; deterministic', async () => {
    const bundle = await signStatement(imageSignatureStatement(IMAGE), { kind: 'key', key });
    const r = bundleReferrerManifest(bundle, subject, COSIGN_SIGN_PREDICATE_TYPE);
    const bundleBytes = jsonBytes(bundle);
    expect(JSON.parse(new TextDecoder().decode(r.manifestBytes))).toEqual({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      artifactType: MediaType.sigstoreBundle,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: EMPTY_JSON_DIGEST, size: 2 },
      layers: [{ mediaType: MediaType.sigstoreBundle, digest: sha256Digest(bundleBytes), size: bundleBytes.byteLength }],
      subject: { mediaType: MediaType.ociIndex, digest: IMAGE, size: 1234 },
      annotations: { 'dev.sigstore.bundle.content': 'dsse-envelope', 'dev.sigstore.bundle.predicateType': COSIGN_SIGN_PREDICATE_TYPE },
    });
    expect(r.digest).toBe(sha256Digest(r.manifestBytes));
    expect(r.blobs.map((b) => [b.digest, sha256Digest(b.bytes)])).toEqual(r.blobs.map((b) => [b.digest, b.digest]));
    expect(r.referrerDescriptor).toEqual({
      mediaType: MediaType.ociManifest,
      digest: r.digest,
      size: r.manifestBytes.byteLength,
      artifactType: MediaType.sigstoreBundle,
      annotations: r.manifest.annotations,
    });
    expect(bundleReferrerManifest(bundle, subject, COSIGN_SIGN_PREDICATE_TYPE).digest).toBe(r.digest);
    expect(bundleReferrerManifest(bundle, subject, COSIGN_SIGN_PREDICATE_TYPE, { created: '2025-01-01T00:00:00Z' }).manifest.annotations).toHaveProperty(
      ['org.opencontainers.image.created'],
      '2025-01-01T00:00:00Z',
    );
  });

  it('bundle referrer refuses bundles cosign would not read', async () => {
    const bundle = await signStatement(imageSignatureStatement(IMAGE), { kind: 'key', key });
    const v02 = { ...bundle, mediaType: 'application/vnd.dev.sigstore.bundle+json;version=0.2' };
    expect((await rejects(() => bundleReferrerManifest(v02, subject, COSIGN_SIGN_PREDICATE_TYPE))).message).toMatch(/expected application\/vnd\.dev\.sigstore\.bundle\.v0\.3\+json \(cosign reads v0\.3 only\)/);
  });

  it('legacy .sig: one simple-signing layer per signature; merging keeps the others and does not duplicate', () => {
    expect(legacySignatureTag(IMAGE)).toBe(`sha256-${'a'.repeat(64)}.sig`);
    const mine = signLegacy(key, 'registry.example/stella/api', IMAGE);
    const first = legacySignatureManifest([mine]);
    expect(first.manifest.layers).toEqual([
      { mediaType: MediaType.cosignSimpleSigning, digest: sha256Digest(mine.payload), size: mine.payload.byteLength, annotations: { 'dev.cosignproject.cosign/signature': mine.signatureB64 } },
    ]);
    const config = JSON.parse(new TextDecoder().decode(first.blobs.find((b) => b.digest === first.manifest.config.digest)!.bytes));
    expect(config.rootfs.diff_ids).toEqual([sha256Digest(mine.payload)]);

    const theirs = signLegacy(loadPrivateKey(stranger.privateKeyPem), 'registry.example/stella/api', IMAGE);
    const merged = legacySignatureManifest([theirs, mine], first.manifest);
    expect(legacySignaturesOf(merged.manifest).map((s) => s.signatureB64)).toEqual([mine.signatureB64, theirs.signatureB64]);
    // Blobs: the new config and the new entry's payload (kept layers' blobs are already in the registry).
    expect(merged.blobs.map((b) => b.digest)).toEqual([merged.manifest.config.digest, sha256Digest(theirs.payload)]);
    expect(legacySignatureManifest([mine], merged.manifest).digest).toBe(merged.digest);
  });
});
