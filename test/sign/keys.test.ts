/**
 * Key formats and interop with the real cosign binary (blob operations work offline).
 */
import { createPrivateKey, createVerify, generateKeyPairSync, randomBytes, scryptSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StellaError } from '../../ci/src/errors.ts';
import { COSIGN_KEY_PEM, SIGSTORE_KEY_PEM, generateKeyPair, loadPrivateKey, loadPublicKey } from '../../ci/src/sign/index.ts';
import { cosign, show } from './helpers.ts';
import { skipUnless } from '../helpers/tools.ts';

const CANARY = 'canary-Pw-93b1e7d2';

/** Runs fn, which must fail with a StellaError whose message never contains the canary password (checked right here, in each test). */
function failure(fn: () => unknown): StellaError {
  try {
    fn();
  } catch (e) {
    expect((e as Error).message).not.toContain(CANARY);
    expect(String((e as Error).stack)).not.toContain(CANARY);
    if (!(e instanceof StellaError)) throw e;
    return e;
  }
  throw new Error('expected a failure');
}

function pem(type: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64').match(/.{1,64}/g)!.join('\n');
  return `-----BEGIN ${type}-----\n${b64}\n-----END ${type}-----\n`;
}

/** A key as cosign < 2.2 wrote it: ENCRYPTED COSIGN PRIVATE KEY, legacy scrypt N=2^15. */
function legacyCosignKey(pkcs8: Uint8Array, password: string): string {
  const salt = randomBytes(32);
  const nonce = randomBytes(24);
  const k = scryptSync(password, salt, 32, { N: 32768, r: 8, p: 1, maxmem: 64 * 1024 * 1024 });
  const env = {
    kdf: { name: 'scrypt', params: { N: 32768, r: 8, p: 1 }, salt: salt.toString('base64') },
    cipher: { name: 'nacl/secretbox', nonce: nonce.toString('base64') },
    ciphertext: Buffer.from(nacl.secretbox(pkcs8, nonce, k)).toString('base64'),
  };
  return pem(COSIGN_KEY_PEM, Buffer.from(JSON.stringify(env)));
}

const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const ecPkcs8 = ec.privateKey.export({ format: 'der', type: 'pkcs8' });
const ecPub = String(ec.publicKey.export({ format: 'pem', type: 'spki' }));

describe('loadPrivateKey: PEM forms', () => {
  it('reads PKCS#8 (PRIVATE KEY) without a password', () => {
    const k = loadPrivateKey(ec.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
    expect(k.algorithm).toBe('ecdsa-p256');
    expect(k.keyDetails).toBe('PKIX_ECDSA_P256_SHA_256');
    expect(k.publicKeyPem).toBe(ecPub);
  });

  it('reads SEC1 (EC PRIVATE KEY), as bytes too', () => {
    const sec1 = Buffer.from(ec.privateKey.export({ format: 'pem', type: 'sec1' }) as string);
    expect(loadPrivateKey(sec1).publicKeyPem).toBe(ecPub);
  });

  it('reads PKCS#8 encrypted with a password, and refuses a wrong or missing one', () => {
    const enc = ec.privateKey.export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: CANARY }) as string;
    expect(loadPrivateKey(enc, CANARY).publicKeyPem).toBe(ecPub);
    const wrong = failure(() => loadPrivateKey(enc, 'not-it'));
    expect(wrong.code).toBe('KEY_INVALID');
    expect(wrong.message).toMatch(/wrong password/);
    expect(failure(() => loadPrivateKey(enc)).message).toMatch(/no password was given/);
  });

  it('reads SEC1 with OpenSSL\'s legacy encryption (Proc-Type/DEK-Info headers)', () => {
    const enc = ec.privateKey.export({ format: 'pem', type: 'sec1', cipher: 'aes-256-cbc', passphrase: CANARY }) as string;
    expect(enc).toContain('Proc-Type: 4,ENCRYPTED');
    expect(loadPrivateKey(enc, CANARY).publicKeyPem).toBe(ecPub);
    expect(failure(() => loadPrivateKey(enc, 'nope')).message).toBe('signing key: cannot read the EC PRIVATE KEY PEM block: wrong password, or not a valid key');
    expect(failure(() => loadPrivateKey(enc)).message).toBe('signing key: the EC PRIVATE KEY is encrypted and no password was given');
  });

  it('reads RSA (PKCS#1 RSA PRIVATE KEY) 2048', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const k = loadPrivateKey(rsa.privateKey.export({ format: 'pem', type: 'pkcs1' }) as string);
    expect(k.algorithm).toBe('rsa');
    expect(k.keyDetails).toBe('PKIX_RSA_PKCS1V15_2048_SHA256');
  });

  it('refuses key types that would not interoperate (P-384, Ed25519), naming what it got', () => {
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    const e1 = failure(() => loadPrivateKey(p384, undefined, 'keys/p384.pem'));
    expect(e1.code).toBe('KEY_INVALID');
    expect(e1.message).toMatch(/^keys\/p384\.pem: unsupported key type ECDSA secp384r1; expected ECDSA P-256/);
    const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    expect(failure(() => loadPrivateKey(ed)).message).toMatch(/unsupported key type ed25519/);
  });

  it('refuses text that is not PEM, and unknown PEM blocks', () => {
    expect(failure(() => loadPrivateKey('hello')).code).toBe('INVALID_ARGUMENT');
    expect(failure(() => loadPrivateKey(pem('CERTIFICATE', Buffer.from('x')))).message).toMatch(/unsupported PEM block "CERTIFICATE"/);
  });

  it('reads the older ENCRYPTED COSIGN PRIVATE KEY with legacy scrypt parameters', () => {
    const k = loadPrivateKey(legacyCosignKey(ecPkcs8, CANARY), CANARY);
    expect(k.publicKeyPem).toBe(ecPub);
    expect(failure(() => loadPrivateKey(legacyCosignKey(ecPkcs8, CANARY), 'wrong')).message).toMatch(
      /cannot decrypt the ENCRYPTED COSIGN PRIVATE KEY: wrong password/,
    );
  });

  it('refuses scrypt parameters outside the accepted set (a tampered file cannot exhaust memory)', () => {
    const env = JSON.parse(Buffer.from(generateKeyPair(CANARY).privateKeyPem.split('\n').slice(1, -2).join(''), 'base64').toString());
    env.kdf.params.N = 1 << 24;
    const e = failure(() => loadPrivateKey(pem(SIGSTORE_KEY_PEM, Buffer.from(JSON.stringify(env))), CANARY));
    expect(e.message).toMatch(/scrypt parameters N=16777216 r=8 p=1 are not among the accepted ones/);
  });
});

describe('generateKeyPair', () => {
  it('writes cosign\'s encrypted format that loads back only with the password', () => {
    const g = generateKeyPair(CANARY);
    expect(g.privateKeyPem).toMatch(/^-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n/);
    const env = JSON.parse(Buffer.from(g.privateKeyPem.split('\n').slice(1, -2).join(''), 'base64').toString());
    expect(env.kdf).toMatchObject({ name: 'scrypt', params: { N: 65536, r: 8, p: 1 } });
    expect(Buffer.from(env.kdf.salt, 'base64')).toHaveLength(32);
    expect(env.cipher.name).toBe('nacl/secretbox');
    expect(Buffer.from(env.cipher.nonce, 'base64')).toHaveLength(24);
    const k = loadPrivateKey(g.privateKeyPem, CANARY);
    expect(k.publicKeyPem).toBe(g.publicKeyPem);
    expect(loadPublicKey(g.publicKeyPem).hint).toBe(k.hint);
    const e = failure(() => loadPrivateKey(g.privateKeyPem, 'wrong'));
    expect(e.code).toBe('KEY_INVALID');
    expect(e.message).toBe('signing key: cannot decrypt the ENCRYPTED SIGSTORE PRIVATE KEY: wrong password (or the file was altered)');
    expect(failure(() => loadPrivateKey(g.privateKeyPem)).code).toBe('KEY_INVALID');
  });

  it('without a password uses the empty one, as cosign does', () => {
    const g = generateKeyPair();
    expect(loadPrivateKey(g.privateKeyPem).publicKeyPem).toBe(g.publicKeyPem);
    expect(loadPrivateKey(g.privateKeyPem, '').publicKeyPem).toBe(g.publicKeyPem);
  });
});

describe.skipIf(skipUnless(['cosign'], 'keys: interop with the real cosign'))('interop with the real cosign (blob operations, offline)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stella-keys-'));
    writeFileSync(join(dir, 'blob.txt'), 'stella release blob\n');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a key from `cosign generate-key-pair` (with password) loads and matches cosign.pub', () => {
    const r = cosign(['generate-key-pair', '--output-key-prefix', 'withpw'], { COSIGN_PASSWORD: CANARY }, dir);
    expect(r.status, show(r)).toBe(0);
    const k = loadPrivateKey(readFileSync(join(dir, 'withpw.key')), CANARY, 'withpw.key');
    expect(k.publicKeyPem).toBe(readFileSync(join(dir, 'withpw.pub'), 'utf8'));
    const e = failure(() => loadPrivateKey(readFileSync(join(dir, 'withpw.key')), 'wrong', 'withpw.key'));
    expect(e.message).toMatch(/^withpw\.key: cannot decrypt .* wrong password/);
  });

  it('a key from `cosign generate-key-pair` with an empty password loads without one', () => {
    const r = cosign(['generate-key-pair', '--output-key-prefix', 'nopw'], { COSIGN_PASSWORD: '' }, dir);
    expect(r.status, show(r)).toBe(0);
    expect(loadPrivateKey(readFileSync(join(dir, 'nopw.key'))).publicKeyPem).toBe(readFileSync(join(dir, 'nopw.pub'), 'utf8'));
  });

  // `cosign import-key-pair` (2.5.0) fails on every PKCS#8/SEC1/PKCS#1 key here ("error validating … key:
  // unsupported public key type"), a cosign bug; the legacy-format test below covers the other direction.

  it('a key we generate signs with `cosign sign-blob --key`, and `cosign verify-blob` accepts it only with our public key', () => {
    const g = generateKeyPair(CANARY);
    writeFileSync(join(dir, 'ours.key'), g.privateKeyPem);
    writeFileSync(join(dir, 'ours.pub'), g.publicKeyPem);
    writeFileSync(join(dir, 'stranger.pub'), generateKeyPair().publicKeyPem);
    const s = cosign(['sign-blob', '--yes', '--key', 'ours.key', '--tlog-upload=false', '--output-signature', 'blob.sig', 'blob.txt'], { COSIGN_PASSWORD: CANARY }, dir);
    expect(s.status, show(s)).toBe(0);
    const v = cosign(['verify-blob', '--key', 'ours.pub', '--insecure-ignore-tlog', '--signature', 'blob.sig', 'blob.txt'], {}, dir);
    expect(v.status, show(v)).toBe(0);
    expect(v.stderr).toContain('Verified OK');
    const bad = cosign(['verify-blob', '--key', 'stranger.pub', '--insecure-ignore-tlog', '--signature', 'blob.sig', 'blob.txt'], {}, dir);
    expect(bad.status, show(bad)).not.toBe(0);
    // And the signature cosign made checks with the key as we loaded it.
    const ver = createVerify('sha256');
    ver.update(readFileSync(join(dir, 'blob.txt')));
    expect(ver.verify(loadPrivateKey(g.privateKeyPem, CANARY).publicKey, Buffer.from(readFileSync(join(dir, 'blob.sig'), 'utf8'), 'base64'))).toBe(true);
  });

  it('cosign also signs with a legacy ENCRYPTED COSIGN PRIVATE KEY as this test builds it (the fixture is faithful)', () => {
    writeFileSync(join(dir, 'legacy.key'), legacyCosignKey(ecPkcs8, CANARY));
    const s = cosign(['sign-blob', '--yes', '--key', 'legacy.key', '--tlog-upload=false', '--output-signature', 'legacy.sig', 'blob.txt'], { COSIGN_PASSWORD: CANARY }, dir);
    expect(s.status, show(s)).toBe(0);
    const ver = createVerify('sha256');
    ver.update(readFileSync(join(dir, 'blob.txt')));
    expect(ver.verify(createPrivateKey(ec.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string), Buffer.from(readFileSync(join(dir, 'legacy.sig'), 'utf8'), 'base64'))).toBe(true);
  });
});

describe('secrets', () => {
  it('the canary password appears in no error message, whichever key form and mistake (self-contained: provokes its own failures)', () => {
    const encrypted = generateKeyPair(CANARY).privateKeyPem;
    const legacy = legacyCosignKey(ecPkcs8, CANARY);
    const provoked = [
      failure(() => loadPrivateKey(encrypted, `${CANARY}-wrong`)),
      failure(() => loadPrivateKey(encrypted)),
      failure(() => loadPrivateKey(legacy, `${CANARY}x`)),
      failure(() => loadPrivateKey(`${encrypted.slice(0, 80)}${CANARY}${encrypted.slice(80)}`, CANARY)),
      failure(() => loadPrivateKey(CANARY, CANARY)),
    ];
    expect(provoked.map((e) => e.code)).toEqual(['KEY_INVALID', 'KEY_INVALID', 'KEY_INVALID', 'KEY_INVALID', 'INVALID_ARGUMENT']);
  });
});
