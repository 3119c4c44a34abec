/**
 * Keyless signing (FulcioSigner + RekorWitness) against MOCK Fulcio and Rekor
 * servers on loopback, since no Sigstore service is reachable here.
 *
 * The mocks do real cryptography:
 *   - an OIDC issuer key signs the identity token (ES256); mock Fulcio checks
 *     it, checks the proof of possession (the token's subject signed with the
 *     presented key), and issues a certificate for that key from a test CA
 *     (openssl), with the email SAN and the Fulcio issuer extensions;
 *   - mock Rekor checks the DSSE signature with the certificate key, builds
 *     the dsse v0.0.1 canonical body and signs a real SET with its log key.
 * The trusted root lists the test CA and the mock log, so @sigstore/verify checks
 * the chain, the SET, the tlog body against the signature, and the identity.
 *
 * The real cosign 2.5 also verifies such a bundle offline against the mock
 * trusted root (with --insecure-ignore-sct), so the bundle and the mock log's
 * entry have the shape cosign expects.
 *
 * What the mocks cannot prove: that the real Fulcio accepts our token and
 * request (OIDC discovery, audience, its issuer mapping), embedded SCTs (the mock
 * certificate has none, so verification here runs with ctlogThreshold 0 — the
 * default of 1 is shown to refuse it), real Rekor's inclusion proofs and
 * checkpoints, rate limits and outages of the public-good instance, and the
 * public trusted root (TUF). Those are covered only where Sigstore is reachable
 * (a CI job with id-token permission).
 */
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StellaError } from '../../ci/src/errors.ts';
import { COSIGN_SIGN_PREDICATE_TYPE, generateKeyPair, imageSignatureStatement, signStatement, verifyBundle, type SigstoreBundle } from '../../ci/src/sign/index.ts';
import { EMAIL, ISSUER, OPENSSL, identityToken, openssl, readPem, startMockSigstore, type MockSigstore } from '../helpers/mock-sigstore.ts';
import { cosign, show } from './helpers.ts';
import { skipUnless, tool } from '../helpers/tools.ts';

const IMAGE = `sha256:${'c'.repeat(64)}`;

describe.skipIf(skipUnless([tool('openssl')], `keyless signing against mock Fulcio and Rekor (the mock CA needs ${OPENSSL})`))('keyless signing against mock Fulcio and Rekor', () => {
  let dir: string;
  let mock: MockSigstore;
  let bundle: SigstoreBundle;
  let token: string;
  const oidc = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const identity = { issuer: ISSUER, subjectAlternativeName: EMAIL };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stella-keyless-'));
    mock = await startMockSigstore(dir, oidc.publicKey);
    token = identityToken(oidc.privateKey, { email: EMAIL, email_verified: true, sub: 'bot-1' });
    bundle = await signStatement(imageSignatureStatement(IMAGE), { kind: 'keyless', identityToken: token, fulcioURL: mock.fulcioURL, rekorURL: mock.rekorURL, retries: 0 }, `stella/api@${IMAGE}`);
  }, 60_000);

  afterAll(async () => {
    await mock?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('asked Fulcio once, with a valid proof of possession, and logged one dsse entry in Rekor', () => {
    expect(mock.fulcioRequests).toEqual([{ subject: EMAIL, proofOk: true }]);
    expect(mock.rekorEntries).toHaveLength(1);
    expect(mock.rekorEntries[0]!.body).toMatchObject({ kind: 'dsse', apiVersion: '0.0.1' });
  });

  it('the bundle: v0.3, a single certificate for the identity, one tlog entry with an inclusion promise, no keyid', () => {
    expect(bundle.mediaType).toBe('application/vnd.dev.sigstore.bundle.v0.3+json');
    const cert = new X509Certificate(Buffer.from(bundle.verificationMaterial.certificate!.rawBytes, 'base64'));
    expect(cert.subjectAltName).toBe(`email:${EMAIL}`);
    expect(bundle.verificationMaterial.tlogEntries).toHaveLength(1);
    expect(bundle.verificationMaterial.tlogEntries[0]!.kindVersion).toEqual({ kind: 'dsse', version: '0.0.1' });
    expect(bundle.verificationMaterial.tlogEntries[0]!.inclusionPromise?.signedEntryTimestamp).toBeTruthy();
    expect(JSON.stringify(bundle.dsseEnvelope)).not.toContain('keyid');
  });

  it('verifies with the trusted root and identity (chain, SET, tlog body, identity, subject, predicate)', () => {
    const st = verifyBundle(bundle, { certificateIdentity: identity, trustedRoot: mock.trustedRoot, thresholds: { ctlog: 0 } }, { expectedSubjectDigest: IMAGE, expectedPredicateType: COSIGN_SIGN_PREDICATE_TYPE });
    expect(st.subject[0]!.digest).toEqual({ sha256: 'c'.repeat(64) });
    // A SAN pattern works too.
    verifyBundle(bundle, { certificateIdentity: { issuer: ISSUER, subjectAlternativeName: /^[a-z-]+@stella\.example$/ }, trustedRoot: mock.trustedRoot, thresholds: { ctlog: 0 } });
  });

  it('later entries sit deeper in the log tree: their inclusion proofs (with hashes) verify too', async () => {
    let last: SigstoreBundle | undefined;
    for (const d of ['e', 'f']) {
      last = await signStatement(imageSignatureStatement(`sha256:${d.repeat(64)}`), { kind: 'keyless', identityToken: token, fulcioURL: mock.fulcioURL, rekorURL: mock.rekorURL, retries: 0 });
    }
    expect(last!.verificationMaterial.tlogEntries[0]!.inclusionProof!.hashes.length).toBeGreaterThan(0);
    verifyBundle(last!, { certificateIdentity: identity, trustedRoot: mock.trustedRoot, thresholds: { ctlog: 0 } }, { expectedSubjectDigest: `sha256:${'f'.repeat(64)}` });
  });

  it.skipIf(skipUnless(['cosign'], 'keyless: the real cosign verifies a keyless bundle'))('the real cosign verifies a keyless bundle offline with the mock trusted root (SCT check off)', async () => {
    const blob = Buffer.from('stella keyless blob\n');
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    const b = await signStatement(imageSignatureStatement(digest), { kind: 'keyless', identityToken: token, fulcioURL: mock.fulcioURL, rekorURL: mock.rekorURL, retries: 0 });
    writeFileSync(join(dir, 'blob.bin'), blob);
    writeFileSync(join(dir, 'keyless.bundle.json'), JSON.stringify(b));
    writeFileSync(join(dir, 'root.json'), JSON.stringify(mock.trustedRoot));
    const args = (who: string) => [
      'verify-blob-attestation', '--new-bundle-format', '--bundle', 'keyless.bundle.json', '--trusted-root', 'root.json',
      '--certificate-identity', who, '--certificate-oidc-issuer', ISSUER, '--insecure-ignore-sct', '--type', COSIGN_SIGN_PREDICATE_TYPE, 'blob.bin',
    ];
    const ok = cosign(args(EMAIL), {}, dir);
    expect(ok.status, show(ok)).toBe(0);
    const wrong = cosign(args('someone@stella.example'), {}, dir);
    expect(wrong.status, show(wrong)).not.toBe(0);
    expect(ok.stderr).toContain('Verified OK');
    expect(wrong.stderr).toMatch(/expected SAN value "someone@stella.example", got "release-bot@stella.example"/);
  });

  function refusal(fn: () => unknown): StellaError {
    try {
      fn();
    } catch (e) {
      if (e instanceof StellaError) return e;
      throw e;
    }
    throw new Error('expected a refusal');
  }

  it('refuses by default: the mock certificate has no SCT (what a real Fulcio certificate carries)', () => {
    const e = refusal(() => verifyBundle(bundle, { certificateIdentity: identity, trustedRoot: mock.trustedRoot }, { artifact: 'api' }));
    expect(e.code).toBe('SIGNATURE_INVALID');
    expect(e.message).toMatch(/^api: the signing certificate does not chain .* \(CERTIFICATE_ERROR: expected 1 SCTs, got 0\)$/);
  });

  it('refuses another identity, another issuer, and a string SAN is not a pattern', () => {
    const t = { trustedRoot: mock.trustedRoot, thresholds: { ctlog: 0 } };
    expect(refusal(() => verifyBundle(bundle, { ...t, certificateIdentity: { issuer: ISSUER, subjectAlternativeName: 'someone@stella.example' } }, { artifact: 'api' })).message).toBe(
      `api: certificate identity: expected someone@stella.example, got ${EMAIL}`,
    );
    expect(refusal(() => verifyBundle(bundle, { ...t, certificateIdentity: { issuer: 'https://token.actions.githubusercontent.com', subjectAlternativeName: EMAIL } }, { artifact: 'api' })).message).toBe(
      `api: certificate issuer: expected https://token.actions.githubusercontent.com, got ${ISSUER}`,
    );
    expect(refusal(() => verifyBundle(bundle, { ...t, certificateIdentity: { issuer: ISSUER, subjectAlternativeName: '.*@stella.example' } })).message).toMatch(/certificate identity: expected \.\*@stella\.example/);
  });

  it('refuses a trusted root with another CA, or another log key', () => {
    const otherCa = structuredClone(mock.trustedRoot) as { certificateAuthorities: { certChain: { certificates: { rawBytes: string }[] } }[]; tlogs: { publicKey: { rawBytes: string } }[] };
    const dir2 = mkdtempSync(join(tmpdir(), 'stella-otherca-'));
    try {
      openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'o.key'], dir2);
      openssl(['req', '-x509', '-new', '-key', 'o.key', '-subj', '/O=stella-test/CN=mock-fulcio-root', '-days', '2', '-out', 'o.crt', '-addext', 'basicConstraints=critical,CA:TRUE'], dir2);
      otherCa.certificateAuthorities[0]!.certChain.certificates[0]!.rawBytes = new X509Certificate(readPem('o.crt', dir2)).raw.toString('base64');
    } finally {
      rmSync(dir2, { recursive: true, force: true });
    }
    expect(refusal(() => verifyBundle(bundle, { certificateIdentity: identity, trustedRoot: otherCa, thresholds: { ctlog: 0 } })).message).toMatch(/CERTIFICATE_ERROR/);

    const otherLog = structuredClone(mock.trustedRoot) as typeof otherCa;
    otherLog.tlogs[0]!.publicKey.rawBytes = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
    expect(refusal(() => verifyBundle(bundle, { certificateIdentity: identity, trustedRoot: otherLog, thresholds: { ctlog: 0 } })).message).toMatch(/TLOG_INCLUSION_PROMISE_ERROR/);
  });

  it('refuses a statement changed after signing, and key-based verification of a certificate bundle', () => {
    const forged = structuredClone(bundle);
    const st = JSON.parse(Buffer.from(forged.dsseEnvelope!.payload, 'base64').toString());
    st.subject = [{ digest: { sha256: 'd'.repeat(64) } }];
    forged.dsseEnvelope!.payload = Buffer.from(JSON.stringify(st)).toString('base64');
    expect(refusal(() => verifyBundle(forged, { certificateIdentity: identity, trustedRoot: mock.trustedRoot, thresholds: { ctlog: 0 } })).message).toMatch(/TLOG_BODY_ERROR|SIGNATURE_ERROR/);
    expect(refusal(() => verifyBundle(bundle, { publicKeyPem: generateKeyPair().publicKeyPem })).message).toMatch(/signed with a certificate verification material; expected a public-key bundle/);
  });

  it('a token Fulcio refuses: SIGNING_FAILED naming Fulcio, the token never in the message', async () => {
    const stranger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const bad = identityToken(stranger.privateKey, { email: EMAIL, email_verified: true });
    const e = await signStatement(imageSignatureStatement(IMAGE), { kind: 'keyless', identityToken: bad, fulcioURL: mock.fulcioURL, rekorURL: mock.rekorURL, retries: 0 }, 'api').catch((x) => x);
    expect(e).toBeInstanceOf(StellaError);
    expect(e.code).toBe('SIGNING_FAILED');
    expect(e.message).toContain(`Fulcio at ${mock.fulcioURL}`);
    expect(e.message).toMatch(/invalid identity token/);
    for (const part of bad.split('.')) expect(e.message).not.toContain(part);
  });

  it('a token that is not a JWT, or has an unverified email, is refused before any request', async () => {
    const before = mock.fulcioRequests.length;
    const e1 = await signStatement(imageSignatureStatement(IMAGE), { kind: 'keyless', identityToken: 'secret-not-a-jwt', fulcioURL: mock.fulcioURL, rekorURL: mock.rekorURL }, 'api').catch((x) => x);
    expect(e1.message).toBe('api: the OIDC identity token is not a JWT (expected header.payload.signature with a JSON payload)');
    const unverified = identityToken(oidc.privateKey, { email: EMAIL, email_verified: false });
    const e2 = await signStatement(imageSignatureStatement(IMAGE), { kind: 'keyless', identityToken: unverified, fulcioURL: mock.fulcioURL, rekorURL: mock.rekorURL }, 'api').catch((x) => x);
    expect(e2.message).toMatch(/email is not verified/);
    expect(mock.fulcioRequests.length).toBe(before);
  });

  it('Rekor down: SIGNING_FAILED naming Rekor', async () => {
    mock.rekorDown = true;
    try {
      const e = await signStatement(imageSignatureStatement(IMAGE), { kind: 'keyless', identityToken: token, fulcioURL: mock.fulcioURL, rekorURL: mock.rekorURL, retries: 0 }, 'api').catch((x) => x);
      expect(e).toBeInstanceOf(StellaError);
      expect(e.code).toBe('SIGNING_FAILED');
      expect(e.message).toContain(`Rekor at ${mock.rekorURL}`);
      expect(e.message).not.toContain(token);
    } finally {
      mock.rekorDown = false;
    }
  });
});
