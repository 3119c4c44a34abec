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
import { spawnSync } from 'node:child_process';
import { createHash, createPublicKey, generateKeyPairSync, randomUUID, sign as cryptoSign, verify as cryptoVerify, X509Certificate, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { json as sigstoreJson } from '@sigstore/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StellaError } from '../../ci/src/errors.ts';
import { COSIGN_SIGN_PREDICATE_TYPE, generateKeyPair, imageSignatureStatement, signStatement, verifyBundle, type SigstoreBundle } from '../../ci/src/sign/index.ts';
import { freePort } from '../helpers/net.ts';
import { cosign, cosignAvailable, show } from './helpers.ts';

const OPENSSL = '/usr/bin/openssl';
const IMAGE = `sha256:${'c'.repeat(64)}`;
const ISSUER = 'https://oidc.stella.test';
const EMAIL = 'release-bot@stella.example';

function b64url(x: Buffer | string): string {
  return Buffer.from(x).toString('base64url');
}

function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync(OPENSSL, args, { cwd, encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

async function readBody(req: IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of req) body += String(chunk);
  return body;
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function listen(server: Server): Promise<string> {
  const port = await freePort();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return `http://127.0.0.1:${port}`;
}

// RFC 6962 Merkle tree hashing and audit paths, for the mock log.
const leafHash = (data: Buffer) => createHash('sha256').update(Buffer.from([0])).update(data).digest();
const nodeHash = (l: Buffer, r: Buffer) => createHash('sha256').update(Buffer.from([1])).update(l).update(r).digest();
const split = (n: number) => 2 ** Math.floor(Math.log2(n - 1));
function treeHash(hashes: Buffer[]): Buffer {
  if (hashes.length === 1) return hashes[0]!;
  const k = split(hashes.length);
  return nodeHash(treeHash(hashes.slice(0, k)), treeHash(hashes.slice(k)));
}
function auditPath(m: number, hashes: Buffer[]): Buffer[] {
  if (hashes.length <= 1) return [];
  const k = split(hashes.length);
  return m < k ? [...auditPath(m, hashes.slice(0, k)), treeHash(hashes.slice(k))] : [...auditPath(m - k, hashes.slice(k)), treeHash(hashes.slice(0, k))];
}

/** An OIDC token as an identity provider would issue it (ES256-signed JWT). */
function identityToken(key: KeyObject, claims: Record<string, unknown>): string {
  const header = b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT' }));
  const now = Math.floor(Date.now() / 1000);
  const payload = b64url(JSON.stringify({ iss: ISSUER, aud: 'sigstore', iat: now, exp: now + 300, ...claims }));
  const sig = cryptoSign('sha256', Buffer.from(`${header}.${payload}`), { key, dsaEncoding: 'ieee-p1363' });
  return `${header}.${payload}.${b64url(sig)}`;
}

interface MockSigstore {
  readonly fulcioURL: string;
  readonly rekorURL: string;
  readonly trustedRoot: Record<string, unknown>;
  readonly fulcioRequests: { subject: string; proofOk: boolean }[];
  readonly rekorEntries: { body: Record<string, unknown> }[];
  rekorDown: boolean;
  close(): Promise<void>;
}

async function startMockSigstore(dir: string, oidcPublicKey: KeyObject): Promise<MockSigstore> {
  // Test CA (the "Fulcio root").
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key'], dir);
  openssl(
    ['req', '-x509', '-new', '-key', 'ca.key', '-subj', '/O=stella-test/CN=mock-fulcio-root', '-days', '2', '-out', 'ca.crt',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  const caPem = new X509Certificate(readPem('ca.crt', dir)).toString();
  const rekorKeys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const rekorSpki = rekorKeys.publicKey.export({ format: 'der', type: 'spki' });
  const logID = createHash('sha256').update(rekorSpki).digest('hex');
  let logIndex = 0;
  const leaves: Buffer[] = [];

  const state = {
    fulcioRequests: [] as { subject: string; proofOk: boolean }[],
    rekorEntries: [] as { body: Record<string, unknown> }[],
    rekorDown: false,
  };

  const fulcio = createServer(async (req, res) => {
    if (req.method !== 'POST' || req.url !== '/api/v2/signingCert') return reply(res, 404, { message: 'not found' });
    const body = JSON.parse(await readBody(req));
    const token: string = body.credentials?.oidcIdentityToken ?? '';
    const [h, p, s] = token.split('.');
    const tokenOk = !!(h && p && s) && cryptoVerify('sha256', Buffer.from(`${h}.${p}`), { key: oidcPublicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(s!, 'base64url'));
    if (!tokenOk) return reply(res, 401, { message: 'invalid identity token' });
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    if (claims.aud !== 'sigstore' || claims.exp < Date.now() / 1000) return reply(res, 401, { message: 'token audience or expiry' });
    const subject: string = claims.email ?? claims.sub;
    const pubPem: string = body.publicKeyRequest.publicKey.content;
    const proofOk = cryptoVerify('sha256', Buffer.from(subject), createPublicKey(pubPem), Buffer.from(body.publicKeyRequest.proofOfPossession, 'base64'));
    state.fulcioRequests.push({ subject, proofOk });
    if (!proofOk) return reply(res, 400, { message: 'proof of possession failed' });
    const id = randomUUID();
    writeFileSync(join(dir, `${id}.pub`), pubPem);
    writeFileSync(
      join(dir, `${id}.cnf`),
      [
        '[v3]',
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        'extendedKeyUsage=codeSigning',
        `subjectAltName=critical,${claims.email ? `email:${claims.email}` : `URI:${claims.sub}`}`,
        'authorityKeyIdentifier=keyid',
        'subjectKeyIdentifier=hash',
        `1.3.6.1.4.1.57264.1.1=DER:${Buffer.from(claims.iss).toString('hex')}`,
        `1.3.6.1.4.1.57264.1.8=ASN1:UTF8String:${claims.iss}`,
        '',
      ].join('\n'),
    );
    openssl(['x509', '-new', '-force_pubkey', `${id}.pub`, '-subj', '/', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-days', '1', '-extfile', `${id}.cnf`, '-extensions', 'v3', '-out', `${id}.crt`], dir);
    const leafPem = new X509Certificate(readPem(`${id}.crt`, dir)).toString();
    reply(res, 201, { signedCertificateEmbeddedSct: { chain: { certificates: [leafPem, caPem] } } });
  });

  const rekor = createServer(async (req, res) => {
    if (state.rekorDown) return reply(res, 503, { message: 'rekor unavailable' });
    if (req.method !== 'POST' || req.url !== '/api/v1/log/entries') return reply(res, 404, { message: 'not found' });
    const proposed = JSON.parse(await readBody(req));
    if (proposed.kind !== 'dsse' || proposed.apiVersion !== '0.0.1') return reply(res, 400, { message: `unsupported ${proposed.kind}/${proposed.apiVersion}` });
    const envelopeJson: string = proposed.spec.proposedContent.envelope;
    const envelope = JSON.parse(envelopeJson);
    const verifierPem = Buffer.from(proposed.spec.proposedContent.verifiers[0], 'base64').toString();
    const payload = Buffer.from(envelope.payload, 'base64');
    const pae = Buffer.concat([
      Buffer.from(`DSSEv1 ${Buffer.byteLength(envelope.payloadType)} ${envelope.payloadType} ${payload.length} `),
      payload,
    ]);
    const certKey = new X509Certificate(verifierPem).publicKey;
    if (!cryptoVerify('sha256', pae, certKey, Buffer.from(envelope.signatures[0].sig, 'base64'))) {
      return reply(res, 400, { message: 'signature does not verify' });
    }
    const canonical = {
      apiVersion: '0.0.1',
      kind: 'dsse',
      spec: {
        envelopeHash: { algorithm: 'sha256', value: createHash('sha256').update(envelopeJson).digest('hex') },
        payloadHash: { algorithm: 'sha256', value: createHash('sha256').update(payload).digest('hex') },
        signatures: [{ signature: envelope.signatures[0].sig, verifier: proposed.spec.proposedContent.verifiers[0] }],
      },
    };
    const bodyBytes = Buffer.from(sigstoreJson.canonicalize(canonical));
    const body = bodyBytes.toString('base64');
    const integratedTime = Math.floor(Date.now() / 1000);
    const index = logIndex++;
    leaves.push(leafHash(bodyBytes));
    const set = cryptoSign('sha256', Buffer.from(sigstoreJson.canonicalize({ body, integratedTime, logIndex: index, logID })), rekorKeys.privateKey);
    // A signed checkpoint over the current tree and an RFC 6962 inclusion proof.
    const root = treeHash(leaves);
    const origin = new URL(rekorURL).host;
    const note = `${origin}\n${leaves.length}\n${root.toString('base64')}\n`;
    const noteSig = Buffer.concat([Buffer.from(logID, 'hex').subarray(0, 4), cryptoSign('sha256', Buffer.from(note), rekorKeys.privateKey)]);
    const checkpoint = `${note}\n\u2014 ${origin} ${noteSig.toString('base64')}\n`;
    const inclusionProof = { logIndex: index, treeSize: leaves.length, rootHash: root.toString('hex'), hashes: auditPath(index, leaves).map((h) => h.toString('hex')), checkpoint };
    state.rekorEntries.push({ body: canonical });
    reply(res, 201, {
      [createHash('sha256').update(body).digest('hex')]: { body, integratedTime, logID, logIndex: index, verification: { signedEntryTimestamp: set.toString('base64'), inclusionProof } },
    });
  });

  const fulcioURL = await listen(fulcio);
  const rekorURL = await listen(rekor);
  const start = '2020-01-01T00:00:00Z';
  const trustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [
      {
        baseUrl: rekorURL,
        hashAlgorithm: 'SHA2_256',
        publicKey: { rawBytes: rekorSpki.toString('base64'), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } },
        logId: { keyId: Buffer.from(logID, 'hex').toString('base64') },
      },
    ],
    certificateAuthorities: [
      {
        subject: { organization: 'stella-test', commonName: 'mock-fulcio-root' },
        uri: fulcioURL,
        certChain: { certificates: [{ rawBytes: pemToDer(caPem).toString('base64') }] },
        validFor: { start },
      },
    ],
    ctlogs: [],
    timestampAuthorities: [],
  };
  const close = (s: Server) => new Promise<void>((r) => s.close(() => r()));
  return Object.assign(state, {
    fulcioURL,
    rekorURL,
    trustedRoot,
    close: async () => {
      fulcio.closeAllConnections();
      rekor.closeAllConnections();
      await Promise.all([close(fulcio), close(rekor)]);
    },
  });
}

function readPem(file: string, dir: string): Buffer {
  return readFileSync(join(dir, file));
}

describe.skipIf(!existsSync(OPENSSL))(`keyless signing against mock Fulcio and Rekor${existsSync(OPENSSL) ? '' : ' (skipped: the mock CA needs /usr/bin/openssl)'}`, () => {
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

  it.skipIf(!cosignAvailable())('the real cosign verifies a keyless bundle offline with the mock trusted root (SCT check off)', async () => {
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
