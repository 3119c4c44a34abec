/**
 * Signing an in-toto statement into a Sigstore bundle v0.3 whose content is a
 * DSSE envelope — the form cosign v3 writes for image signatures and
 * `--new-bundle-format` attestations, and that cosign 2.5
 * `verify-attestation --new-bundle-format` reads.
 *
 * Two signers:
 *   key       a loaded private key; no witnesses, fully offline. The bundle's
 *             verificationMaterial carries the key hint (base64 sha256 of the SPKI).
 *   keyless   an OIDC token: FulcioSigner (short-lived certificate for an
 *             ephemeral key) + RekorWitness (dsse entry in the transparency log),
 *             with configurable Fulcio and Rekor URLs.
 *
 * The DSSE signature carries no `keyid`: @sigstore/sign copies the key hint
 * there, and cosign then skips the signature ("Found: 0, Expected 1").
 * `keyid` is not part of the signed bytes (DSSE PAE covers type and payload only).
 */
import { createSign } from 'node:crypto';
import { bundleToJSON, type Bundle, type SerializedBundle } from '@sigstore/bundle';
import { DSSEBundleBuilder, FulcioSigner, RekorWitness, DEFAULT_FULCIO_URL, DEFAULT_REKOR_URL, type Signer, type Witness } from '@sigstore/sign';
import { StellaError } from '../errors.ts';
import { MediaType } from '../oci/types.ts';
import type { SigningKey } from './keys.ts';
import { assertStatement, IN_TOTO_PAYLOAD_TYPE, type InTotoStatement } from './statement.ts';

/** A Sigstore bundle in its JSON form (`application/vnd.dev.sigstore.bundle.v0.3+json`). */
export type SigstoreBundle = SerializedBundle;

export interface KeySignerOptions {
  readonly kind: 'key';
  readonly key: SigningKey;
}

export interface KeylessSignerOptions {
  readonly kind: 'keyless';
  /** The OIDC identity token (a JWT) Fulcio binds into the certificate. Never printed. */
  readonly identityToken: string;
  /** Fulcio base URL; default https://fulcio.sigstore.dev */
  readonly fulcioURL?: string;
  /** Rekor base URL; default https://rekor.sigstore.dev */
  readonly rekorURL?: string;
  /** Per-request timeout in ms; default 30 000. */
  readonly timeoutMs?: number;
  /** Retries per request (with backoff) on 5xx/connection errors; default 2. */
  readonly retries?: number;
}

export type StatementSigner = KeySignerOptions | KeylessSignerOptions;

/** A @sigstore/sign Signer over a loaded key: ECDSA P-256 (DER signature) or RSA PKCS#1 v1.5, SHA-256. */
export function keySigner(key: SigningKey): Signer {
  return {
    async sign(data: Buffer) {
      const s = createSign('sha256');
      s.update(data);
      const signature = s.sign(key.privateKey);
      return { signature, key: { $case: 'publicKey', publicKey: key.publicKeyPem, hint: key.hint } };
    },
  };
}

/**
 * Signs `statement` as a DSSE envelope (payloadType application/vnd.in-toto+json)
 * in a Sigstore bundle v0.3. `what` names the statement in errors (e.g. the image).
 */
export async function signStatement(statement: InTotoStatement, signer: StatementSigner, what = 'statement'): Promise<SigstoreBundle> {
  assertStatement(statement, what);
  const payload = Buffer.from(JSON.stringify(statement), 'utf8');
  let bundle: Bundle;
  switch (signer.kind) {
    case 'key': {
      const builder = new DSSEBundleBuilder({ signer: keySigner(signer.key), witnesses: [] });
      bundle = await builder.create({ data: payload, type: IN_TOTO_PAYLOAD_TYPE });
      break;
    }
    case 'keyless':
      bundle = await signKeyless(payload, signer, what);
      break;
  }
  const json = bundleToJSON(withoutKeyId(bundle));
  if (json.mediaType !== MediaType.sigstoreBundle) {
    throw new StellaError('SIGNING_FAILED', `${what}: @sigstore/sign produced a ${json.mediaType} bundle; expected ${MediaType.sigstoreBundle}`);
  }
  return json;
}

/** Clears the DSSE signatures' keyid (serialized without it), keeping the key hint in verificationMaterial. */
function withoutKeyId(bundle: Bundle): Bundle {
  if (bundle.content.$case !== 'dsseEnvelope') return bundle;
  const env = bundle.content.dsseEnvelope;
  return {
    ...bundle,
    content: { $case: 'dsseEnvelope', dsseEnvelope: { ...env, signatures: env.signatures.map((s) => ({ ...s, keyid: '' })) } },
  } as Bundle;
}

async function signKeyless(payload: Buffer, opts: KeylessSignerOptions, what: string): Promise<Bundle> {
  const token = opts.identityToken;
  checkIdentityToken(token, what);
  const fulcioURL = opts.fulcioURL ?? DEFAULT_FULCIO_URL;
  const rekorURL = opts.rekorURL ?? DEFAULT_REKOR_URL;
  const fetchOpts = { timeout: opts.timeoutMs ?? 30_000, retry: opts.retries ?? 2 };
  const signer = new FulcioSigner({ identityProvider: { getToken: async () => token }, fulcioBaseURL: fulcioURL, ...fetchOpts });
  const witness: Witness = new RekorWitness({ rekorBaseURL: rekorURL, entryType: 'dsse', fetchOnConflict: true, ...fetchOpts });
  const builder = new DSSEBundleBuilder({ signer, witnesses: [witness], certificateChain: false });
  try {
    return await builder.create({ data: payload, type: IN_TOTO_PAYLOAD_TYPE });
  } catch (err) {
    const e = err as { code?: string; message?: string; cause?: { message?: string } };
    const service = e.code?.startsWith('CA_') || e.code?.startsWith('IDENTITY_') ? `Fulcio at ${fulcioURL}` : e.code?.startsWith('TLOG_') ? `Rekor at ${rekorURL}` : `Fulcio (${fulcioURL}) or Rekor (${rekorURL})`;
    const detail = [e.message, e.cause?.message].filter(Boolean).join(': ');
    // No `cause`: @sigstore/sign quotes the identity token in some of its messages.
    throw new StellaError('SIGNING_FAILED', `${what}: keyless signing failed at ${service}: ${redact(detail, token)}`);
  }
}

function redact(text: string, secret: string): string {
  return secret ? text.split(secret).join('[identity token]') : text;
}

/** Fails early, without echoing the token, when it is not a JWT with a subject Fulcio can bind. */
function checkIdentityToken(token: string, what: string): void {
  const parts = typeof token === 'string' ? token.split('.') : [];
  let claims: { sub?: unknown; email?: unknown; email_verified?: unknown; iss?: unknown } | undefined;
  try {
    claims = parts.length === 3 ? JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) : undefined;
  } catch {
    claims = undefined;
  }
  if (!claims || typeof claims !== 'object') {
    throw new StellaError('INVALID_ARGUMENT', `${what}: the OIDC identity token is not a JWT (expected header.payload.signature with a JSON payload)`);
  }
  if (typeof claims.iss !== 'string') {
    throw new StellaError('INVALID_ARGUMENT', `${what}: the OIDC identity token has no "iss" claim`);
  }
  if (claims.email !== undefined && claims.email_verified !== true) {
    throw new StellaError('INVALID_ARGUMENT', `${what}: the OIDC identity token's email is not verified (email_verified is not true); Fulcio refuses it`);
  }
  if (typeof claims.email !== 'string' && typeof claims.sub !== 'string') {
    throw new StellaError('INVALID_ARGUMENT', `${what}: the OIDC identity token has neither "email" nor "sub"`);
  }
}
