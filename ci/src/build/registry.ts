/**
 * The build's registry side, over RegistryClient (ci/src/registry): the base
 * read by digest, and images pushed by digest (blobs, manifests, index; never a
 * tag). A blob already pushed to another repository of the same registry in
 * this build (or the base repository) is mounted instead of uploaded.
 */
import { RegistryClient, type RegistryClientOptions } from '../registry/client.ts';
import { sha256Digest } from '../oci/types.ts';
import type { ImageSink, ImageSource } from './stores.ts';

/** Options for the clients the build creates (credentials, retry policy…); `registry` is set per use. */
export type BuildRegistryOptions = Omit<RegistryClientOptions, 'registry'>;

export class RegistrySource implements ImageSource {
  readonly name: string;
  readonly #client: RegistryClient;
  readonly #repo: string;

  constructor(client: RegistryClient, repo: string) {
    this.#client = client;
    this.#repo = repo;
    this.name = `${client.registry}/${repo}`;
  }

  async manifest(digest: string): Promise<Uint8Array> {
    return (await this.#client.getManifest(this.#repo, digest)).bytes;
  }

  async blob(digest: string): Promise<Uint8Array> {
    return this.#client.getBlob(this.#repo, digest);
  }
}

/** Where blobs already are on the push registry: digest → repository. Shared by every sink of one build. */
export type BlobLocations = Map<string, string>;

export class RegistrySink implements ImageSink {
  readonly name: string;
  readonly #client: RegistryClient;
  readonly #repo: string;
  readonly #locations: BlobLocations;

  constructor(client: RegistryClient, repo: string, locations: BlobLocations) {
    this.#client = client;
    this.#repo = repo;
    this.#locations = locations;
    this.name = `${client.registry}/${repo}`;
  }

  hasBlob(digest: string): Promise<boolean> {
    return this.#client.hasBlob(this.#repo, digest);
  }

  async putBlob(digest: string, size: number, load: () => Promise<Uint8Array>): Promise<void> {
    const from = this.#locations.get(digest);
    const source = {
      size,
      open(): AsyncIterable<Uint8Array> {
        return (async function* () {
          yield await load();
        })();
      },
    };
    await this.#client.pushBlob(this.#repo, source, digest, from !== undefined && from !== this.#repo ? { mountFrom: from } : {});
    if (!this.#locations.has(digest)) this.#locations.set(digest, this.#repo);
  }

  async putManifest(bytes: Uint8Array, mediaType: string): Promise<string> {
    const digest = sha256Digest(bytes);
    // Content-addressed: when the registry holds it, a re-run writes nothing.
    if (await this.#client.hasManifest(this.#repo, digest)) return digest;
    return this.#client.putManifest(this.#repo, digest, bytes, mediaType);
  }
}
