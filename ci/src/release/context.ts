/**
 * What every publishing step shares: registry access (one client per registry
 * host), the images of a build (by digest), and the signer/trust settings.
 */
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
  /** What verification trusts; for key signing, the key's public half. */
  readonly trust: BundleTrust;
  /** Present for key signing: legacy (cosign v2) `.sig` signatures need a key. */
  readonly key?: SigningKey;
}

export function signingWithKey(key: SigningKey): Signing {
  return { signer: { kind: 'key', key }, trust: { publicKeyPem: key.publicKeyPem }, key };
}

export type { BuildDocument, BuiltImage };

/** `repository@digest`, the only way steps name an image. */
export function imageRef(image: Pick<BuiltImage, 'repository' | 'digest'>): string {
  return `${image.repository}@${image.digest}`;
}

export interface StepIo {
  progress(line: string): void;
}
