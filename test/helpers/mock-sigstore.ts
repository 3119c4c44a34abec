/**
 * Mock Fulcio and Rekor on loopback, doing real cryptography (a test CA issuing
 * certificates for the presented key and identity; a log signing real SETs), for
 * the keyless signing tests: no Sigstore service is reachable from this host.
 * What they cannot prove is listed in test/sign/keyless.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { createHash, createPublicKey, generateKeyPairSync, randomUUID, sign as cryptoSign, verify as cryptoVerify, X509Certificate, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { json as sigstoreJson } from '@sigstore/core';
import { freePort } from './net.ts';

export const OPENSSL = '/usr/bin/openssl';
export const ISSUER = 'https://oidc.stella.test';
export const EMAIL = 'release-bot@stella.example';

function b64url(x: Buffer | string): string {
  return Buffer.from(x).toString('base64url');
}

function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

export function openssl(args: string[], cwd: string): void {
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
export function identityToken(key: KeyObject, claims: Record<string, unknown>): string {
  const header = b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT' }));
  const now = Math.floor(Date.now() / 1000);
  const payload = b64url(JSON.stringify({ iss: ISSUER, aud: 'sigstore', iat: now, exp: now + 300, ...claims }));
  const sig = cryptoSign('sha256', Buffer.from(`${header}.${payload}`), { key, dsaEncoding: 'ieee-p1363' });
  return `${header}.${payload}.${b64url(sig)}`;
}

export interface MockSigstore {
  readonly fulcioURL: string;
  readonly rekorURL: string;
  readonly trustedRoot: Record<string, unknown>;
  readonly fulcioRequests: { subject: string; proofOk: boolean }[];
  readonly rekorEntries: { body: Record<string, unknown> }[];
  rekorDown: boolean;
  close(): Promise<void>;
}

export async function startMockSigstore(dir: string, oidcPublicKey: KeyObject): Promise<MockSigstore> {
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

export function readPem(file: string, dir: string): Buffer {
  return readFileSync(join(dir, file));
}
