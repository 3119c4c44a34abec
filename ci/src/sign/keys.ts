/**
 * Signing keys: loading the PEM forms cosign reads, and generating pairs in
 * cosign's own encrypted format so `cosign sign --key` accepts what we make.
 *
 * Accepted private-key PEM blocks:
 *   PRIVATE KEY                      PKCS#8
 *   ENCRYPTED PRIVATE KEY            PKCS#8 encrypted with a password (PBES2)
 *   EC PRIVATE KEY                   SEC1
 *   RSA PRIVATE KEY                  PKCS#1
 *   ENCRYPTED SIGSTORE PRIVATE KEY   cosign ≥ 2.2 (go-securesystemslib `encrypted`:
 *   ENCRYPTED COSIGN PRIVATE KEY     JSON envelope, scrypt KDF, NaCl secretbox, PKCS#8 inside)
 *
 * Supported key types: ECDSA P-256 (cosign's default) and RSA 2048–4096, both
 * signing with SHA-256 (ECDSA DER signatures; RSA PKCS#1 v1.5). Other curves and
 * Ed25519 are refused: @sigstore/verify verifies only with the key's default
 * digest (SHA-256), and cosign signs Ed25519 as Ed25519ph, so neither would
 * interoperate.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, scryptSync, type KeyObject } from 'node:crypto';
import nacl from 'tweetnacl';
import { StellaError } from '../errors.ts';

export type KeyAlgorithm = 'ecdsa-p256' | 'rsa';

/** Sigstore's name for the key, as used in trusted roots and `publicKey.keyDetails`. */
export type KeyDetails = 'PKIX_ECDSA_P256_SHA_256' | 'PKIX_RSA_PKCS1V15_2048_SHA256' | 'PKIX_RSA_PKCS1V15_3072_SHA256' | 'PKIX_RSA_PKCS1V15_4096_SHA256';

export interface SigningKey {
  readonly algorithm: KeyAlgorithm;
  readonly keyDetails: KeyDetails;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** SPKI PEM (`-----BEGIN PUBLIC KEY-----`), what `cosign verify --key` reads. */
  readonly publicKeyPem: string;
  /** SPKI DER bytes. */
  readonly spkiDer: Uint8Array;
  /** base64(sha256(SPKI DER)): the key hint written into bundles. */
  readonly hint: string;
}

export interface GeneratedKeyPair {
  /** `ENCRYPTED SIGSTORE PRIVATE KEY` PEM (scrypt N=2^16, r=8, p=1, as cosign ≥ 2.2 writes). */
  readonly privateKeyPem: string;
  /** SPKI PEM. */
  readonly publicKeyPem: string;
}

export const SIGSTORE_KEY_PEM = 'ENCRYPTED SIGSTORE PRIVATE KEY';
export const COSIGN_KEY_PEM = 'ENCRYPTED COSIGN PRIVATE KEY';

/** The scrypt parameters go-securesystemslib accepts (legacy, standard, OWASP); anything else is refused as cosign does. */
const SCRYPT_PARAMS = [
  { N: 32768, r: 8, p: 1 },
  { N: 65536, r: 8, p: 1 },
  { N: 131072, r: 8, p: 1 },
] as const;
const SCRYPT_STANDARD = SCRYPT_PARAMS[1];

interface PemBlock {
  readonly type: string;
  readonly der: Buffer;
  /** The whole block, BEGIN to END. */
  readonly text: string;
}

function parsePem(text: string, what: string): PemBlock {
  const m = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/.exec(text);
  if (!m) {
    throw new StellaError('INVALID_ARGUMENT', `${what}: not a PEM block (expected "-----BEGIN … PRIVATE KEY-----")`);
  }
  // `der` is only read for cosign's blocks, which have no headers.
  const body = m[2]!.replace(/\s+/g, '');
  return { type: m[1]!, der: Buffer.from(body, 'base64'), text: m[0] };
}

function toText(pem: string | Uint8Array): string {
  return typeof pem === 'string' ? pem : Buffer.from(pem).toString('utf8');
}

/**
 * Loads a private key from PEM. `password` is needed for the encrypted forms;
 * a wrong or missing password gives KEY_INVALID without the password in it.
 * `what` names the key in messages (e.g. the file it came from).
 */
export function loadPrivateKey(pem: string | Uint8Array, password?: string, what = 'signing key'): SigningKey {
  const block = parsePem(toText(pem), what);
  let key: KeyObject;
  switch (block.type) {
    case SIGSTORE_KEY_PEM:
    case COSIGN_KEY_PEM: {
      const pkcs8 = decryptCosignEnvelope(block.der, password ?? '', what, block.type);
      key = importKey(() => createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }), what, block.type);
      break;
    }
    case 'ENCRYPTED PRIVATE KEY':
    case 'PRIVATE KEY':
    case 'EC PRIVATE KEY':
    case 'RSA PRIVATE KEY': {
      // Node reads these, including PKCS#8 encryption and OpenSSL's legacy Proc-Type/DEK-Info encryption.
      const encrypted = block.type === 'ENCRYPTED PRIVATE KEY' || /Proc-Type:\s*4,ENCRYPTED/.test(block.text);
      if (encrypted && password === undefined) {
        throw new StellaError('KEY_INVALID', `${what}: the ${block.type} is encrypted and no password was given`);
      }
      key = importKey(
        () => createPrivateKey({ key: block.text, format: 'pem', ...(encrypted ? { passphrase: password } : {}) }),
        what,
        block.type,
        encrypted ? 'wrong password, or not a valid key' : 'the DER inside is not a valid key of that form',
      );
      break;
    }
    default:
      throw new StellaError(
        'KEY_INVALID',
        `${what}: unsupported PEM block "${block.type}"; expected one of PRIVATE KEY, ENCRYPTED PRIVATE KEY, EC PRIVATE KEY, RSA PRIVATE KEY, ${SIGSTORE_KEY_PEM}, ${COSIGN_KEY_PEM}`,
      );
  }
  return toSigningKey(key, what);
}

function importKey(load: () => KeyObject, what: string, type: string, hint = 'the DER inside is not a valid key of that form'): KeyObject {
  try {
    return load();
  } catch {
    // The cause can quote key material; keep it out of the error.
    throw new StellaError('KEY_INVALID', `${what}: cannot read the ${type} PEM block: ${hint}`);
  }
}

/** Describes the key type, and refuses the ones that would not interoperate. */
function toSigningKey(privateKey: KeyObject, what: string): SigningKey {
  const publicKey = createPublicKey(privateKey);
  const details = privateKey.asymmetricKeyDetails ?? {};
  let algorithm: KeyAlgorithm;
  let keyDetails: KeyDetails;
  if (privateKey.asymmetricKeyType === 'ec' && details.namedCurve === 'prime256v1') {
    algorithm = 'ecdsa-p256';
    keyDetails = 'PKIX_ECDSA_P256_SHA_256';
  } else if (privateKey.asymmetricKeyType === 'rsa' && (details.modulusLength === 2048 || details.modulusLength === 3072 || details.modulusLength === 4096)) {
    algorithm = 'rsa';
    keyDetails = `PKIX_RSA_PKCS1V15_${details.modulusLength}_SHA256`;
  } else {
    const got =
      privateKey.asymmetricKeyType === 'ec'
        ? `ECDSA ${details.namedCurve}`
        : privateKey.asymmetricKeyType === 'rsa'
          ? `RSA ${details.modulusLength}`
          : String(privateKey.asymmetricKeyType);
    throw new StellaError('KEY_INVALID', `${what}: unsupported key type ${got}; expected ECDSA P-256 (cosign's default) or RSA 2048/3072/4096`);
  }
  const spkiDer = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }));
  return {
    algorithm,
    keyDetails,
    privateKey,
    publicKey,
    publicKeyPem: String(publicKey.export({ format: 'pem', type: 'spki' })),
    spkiDer,
    hint: createHash('sha256').update(spkiDer).digest('base64'),
  };
}

interface CosignEnvelope {
  kdf?: { name?: unknown; params?: { N?: unknown; r?: unknown; p?: unknown }; salt?: unknown };
  cipher?: { name?: unknown; nonce?: unknown };
  ciphertext?: unknown;
}

function decryptCosignEnvelope(json: Buffer, password: string, what: string, type: string): Buffer {
  let env: CosignEnvelope;
  try {
    env = JSON.parse(json.toString('utf8')) as CosignEnvelope;
  } catch {
    throw new StellaError('KEY_INVALID', `${what}: the encrypted cosign key is not a JSON envelope (expected {"kdf":…,"cipher":…,"ciphertext":…})`);
  }
  const { kdf, cipher, ciphertext } = env;
  if (kdf?.name !== 'scrypt') {
    throw new StellaError('KEY_INVALID', `${what}: unsupported key derivation ${JSON.stringify(kdf?.name)}; expected "scrypt"`);
  }
  if (cipher?.name !== 'nacl/secretbox') {
    throw new StellaError('KEY_INVALID', `${what}: unsupported cipher ${JSON.stringify(cipher?.name)}; expected "nacl/secretbox"`);
  }
  const params = kdf.params ?? {};
  const known = SCRYPT_PARAMS.find((s) => s.N === params.N && s.r === params.r && s.p === params.p);
  if (!known) {
    // Unbounded parameters would let a tampered key file exhaust memory or time.
    throw new StellaError(
      'KEY_INVALID',
      `${what}: scrypt parameters N=${String(params.N)} r=${String(params.r)} p=${String(params.p)} are not among the accepted ones (N=2^15|2^16|2^17, r=8, p=1)`,
    );
  }
  if (typeof kdf.salt !== 'string' || typeof cipher.nonce !== 'string' || typeof ciphertext !== 'string') {
    throw new StellaError('KEY_INVALID', `${what}: the encrypted cosign key lacks salt, nonce or ciphertext`);
  }
  const salt = Buffer.from(kdf.salt, 'base64');
  const nonce = Buffer.from(cipher.nonce, 'base64');
  if (nonce.length !== nacl.secretbox.nonceLength) {
    throw new StellaError('KEY_INVALID', `${what}: secretbox nonce is ${nonce.length} bytes; expected ${nacl.secretbox.nonceLength}`);
  }
  const boxKey = scryptKey(password, salt, known);
  const opened = nacl.secretbox.open(Buffer.from(ciphertext, 'base64'), nonce, boxKey);
  boxKey.fill(0);
  if (!opened) {
    throw new StellaError('KEY_INVALID', `${what}: cannot decrypt the ${type}: wrong password (or the file was altered)`);
  }
  return Buffer.from(opened);
}

function scryptKey(password: string, salt: Uint8Array, p: { N: number; r: number; p: number }): Uint8Array {
  return new Uint8Array(scryptSync(Buffer.from(password, 'utf8'), salt, nacl.secretbox.keyLength, { N: p.N, r: p.r, p: p.p, maxmem: 256 * p.N * p.r + 16 * 1024 * 1024 }));
}

/**
 * Wraps a PKCS#8 DER private key in cosign's encrypted PEM, exactly as
 * `cosign generate-key-pair` / `import-key-pair` write it (ENCRYPTED SIGSTORE PRIVATE KEY,
 * standard scrypt parameters, 32-byte salt, 24-byte nonce; JSON bytes base64 as Go's encoding/json).
 */
export function encryptCosignKey(pkcs8Der: Uint8Array, password: string): string {
  const salt = randomBytes(32);
  const nonce = randomBytes(nacl.secretbox.nonceLength);
  const boxKey = scryptKey(password, salt, SCRYPT_STANDARD);
  const sealed = nacl.secretbox(pkcs8Der, nonce, boxKey);
  boxKey.fill(0);
  const json = JSON.stringify({
    kdf: { name: 'scrypt', params: { N: SCRYPT_STANDARD.N, r: SCRYPT_STANDARD.r, p: SCRYPT_STANDARD.p }, salt: salt.toString('base64') },
    cipher: { name: 'nacl/secretbox', nonce: nonce.toString('base64') },
    ciphertext: Buffer.from(sealed).toString('base64'),
  });
  return toPem(SIGSTORE_KEY_PEM, Buffer.from(json, 'utf8'));
}

function toPem(type: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${type}-----\n${lines.join('\n')}\n-----END ${type}-----\n`;
}

/**
 * A new ECDSA P-256 key pair. The private key is in cosign's encrypted format
 * (an empty password when none is given, as `cosign generate-key-pair` does with COSIGN_PASSWORD="").
 */
export function generateKeyPair(password = ''): GeneratedKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  return {
    privateKeyPem: encryptCosignKey(pkcs8, password),
    publicKeyPem: String(publicKey.export({ format: 'pem', type: 'spki' })),
  };
}

/** Reads an SPKI PEM public key (what `cosign generate-key-pair` writes as cosign.pub). */
export function loadPublicKey(pem: string | Uint8Array, what = 'public key'): { key: KeyObject; spkiDer: Uint8Array; keyDetails: KeyDetails; hint: string } {
  let key: KeyObject;
  try {
    key = createPublicKey(toText(pem));
  } catch {
    throw new StellaError('KEY_INVALID', `${what}: not a PEM public key (expected "-----BEGIN PUBLIC KEY-----")`);
  }
  const d = key.asymmetricKeyDetails ?? {};
  let keyDetails: KeyDetails;
  if (key.asymmetricKeyType === 'ec' && d.namedCurve === 'prime256v1') keyDetails = 'PKIX_ECDSA_P256_SHA_256';
  else if (key.asymmetricKeyType === 'rsa' && (d.modulusLength === 2048 || d.modulusLength === 3072 || d.modulusLength === 4096))
    keyDetails = `PKIX_RSA_PKCS1V15_${d.modulusLength}_SHA256`;
  else throw new StellaError('KEY_INVALID', `${what}: unsupported key type ${String(key.asymmetricKeyType)} ${d.namedCurve ?? d.modulusLength ?? ''}; expected ECDSA P-256 or RSA 2048/3072/4096`);
  const spkiDer = new Uint8Array(key.export({ format: 'der', type: 'spki' }));
  return { key, spkiDer, keyDetails, hint: createHash('sha256').update(spkiDer).digest('base64') };
}

/** SHA-256 fingerprint of the SPKI DER, hex, for messages ("key sha256:ab12…"). */
export function keyFingerprint(spkiDer: Uint8Array): string {
  return `sha256:${createHash('sha256').update(spkiDer).digest('hex')}`;
}
