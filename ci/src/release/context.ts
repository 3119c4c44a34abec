/**
 * What every publishing step shares: registry access (one client per registry
 * host), the images of a build (by digest), and the signer/trust settings.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { StellaError } from '../errors.ts';
import { RegistryClient, type Credentials, type RegistryEvent, type RetryPolicy } from '../registry/index.ts';
import type { BuildDocument, BuiltImage } from '../build/document.ts';
import type { SigningKey, StatementSigner, BundleTrust } from '../sign/index.ts';

export interface RegistryAccess {
  readonly credentials?: Credentials;
  readonly dockerConfig?: string;
  readonly insecure?: boolean;
  readonly retry?: RetryPolicy;
  readonly onEvent?: (e: RegistryEvent) => void;
}

/**
 * The Docker config file to read registry credentials from: the one given (which
 * must exist), else $DOCKER_CONFIG/config.json or ~/.docker/config.json when present.
 */
export function dockerConfigPath(given?: string): string | undefined {
  if (given) {
    if (!existsSync(given)) throw new StellaError('INVALID_ARGUMENT', `--docker-config ${given}: no such file`);
    return given;
  }
  const candidate = process.env.DOCKER_CONFIG ? join(process.env.DOCKER_CONFIG, 'config.json') : join(homedir(), '.docker', 'config.json');
  return existsSync(candidate) ? candidate : undefined;
}

/** `host[:port]/path/name` → registry host and repository path. */
export function splitRepository(repository: string): { registry: string; repo: string } {
  const slash = repository.indexOf('/');
  const host = slash > 0 ? repository.slice(0, slash) : '';
  if (!host || !(host.includes('.') || host.includes(':') || host === 'localhost')) {
    throw new StellaError('INVALID_ARGUMENT', `repository "${repository}" does not start with a registry host (expected e.g. 127.0.0.1:5000/stellaops/stella-api)`);
  }
  return { registry: host, repo: repository.slice(slash + 1) };
}

/** One RegistryClient per registry host, created on first use. */
export class Registries {
  readonly #access: RegistryAccess;
  readonly #clients = new Map<string, RegistryClient>();

  constructor(access: RegistryAccess = {}) {
    this.#access = access;
  }

  client(registry: string): RegistryClient {
    let c = this.#clients.get(registry);
    if (!c) {
      c = new RegistryClient({ registry, ...this.#access });
      this.#clients.set(registry, c);
    }
    return c;
  }

  /** The client and repository path of an image repository `host/path`. */
  forRepository(repository: string): { client: RegistryClient; repo: string; registry: string } {
    const { registry, repo } = splitRepository(repository);
    return { client: this.client(registry), repo, registry };
  }
}

export interface Signing {
  readonly signer: StatementSigner;
  /** What verification trusts: the key's public half, or the keyless identity and trusted root. */
  readonly trust?: BundleTrust;
  /** Present for key signing: legacy (cosign v2) `.sig` signatures need a key. */
  readonly key?: SigningKey;
}

export interface KeylessOptions {
  readonly identityToken: string;
  readonly fulcioUrl?: string;
  readonly rekorUrl?: string;
}

export function signingKeyless(o: KeylessOptions, trust?: BundleTrust): Signing {
  return { signer: { kind: 'keyless', identityToken: o.identityToken, fulcioURL: o.fulcioUrl, rekorURL: o.rekorUrl }, trust };
}

export interface IdentityOptions {
  readonly certificateIdentity?: string;
  readonly certificateOidcIssuer?: string;
  /** Trusted root JSON (application/vnd.dev.sigstore.trustedroot+json). */
  readonly trustedRoot?: string;
  /** Accept certificates without a signed certificate timestamp (private Fulcio without a CT log). */
  readonly insecureIgnoreSct?: boolean;
}

/** Keyless trust from the identity options; undefined when none is given, an error when they are incomplete. */
export function identityTrust(o: IdentityOptions): BundleTrust | undefined {
  const given = [o.certificateIdentity, o.certificateOidcIssuer, o.trustedRoot].filter((x) => x !== undefined).length;
  if (given === 0) return undefined;
  if (given < 3) {
    throw new StellaError('INVALID_ARGUMENT', 'keyless verification needs all of --certificate-identity, --certificate-oidc-issuer and --trusted-root');
  }
  let root: unknown;
  try {
    root = JSON.parse(o.trustedRoot!);
  } catch (e) {
    throw new StellaError('INVALID_ARGUMENT', `--trusted-root is not JSON: ${(e as Error).message}`);
  }
  return {
    certificateIdentity: { issuer: o.certificateOidcIssuer!, subjectAlternativeName: o.certificateIdentity! },
    trustedRoot: root,
    ...(o.insecureIgnoreSct ? { thresholds: { ctlog: 0 } } : {}),
  };
}

export function signingWithKey(key: SigningKey): Signing & { readonly trust: BundleTrust } {
  return { signer: { kind: 'key', key }, trust: { publicKeyPem: key.publicKeyPem }, key };
}

export type { BuildDocument, BuiltImage };

/** `repository@digest`, the only way steps name an image. */
export function imageRef(image: Pick<BuiltImage, 'repository' | 'digest'>): string {
  return `${image.repository}@${image.digest}`;
}

export interface StepIo {
  progress(line: string): void;
  /** A machine-readable line (a JSON event, `--json`), written as is: no prefix (the CLI writes it to stderr). */
  emit?(line: string): void;
}
