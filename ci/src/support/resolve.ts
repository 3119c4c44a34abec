/**
 * Resolve mode of `support-images`: the catalog's upstream references
 * (e.g. docker.io/library/postgres:15.20-bookworm) resolved to their
 * multi-arch index digests where a registry is reachable, through the
 * registry client (ci/src/registry). Each index must hold linux/amd64 and
 * linux/arm64; the lock records the index and platform digests.
 *
 * `mirrors` sends a registry's requests elsewhere (a pull-through mirror, or in
 * tests a local registry playing "upstream"); the lock keeps the upstream name:
 * digests are the same wherever the content is.
 */
import { StellaError } from '../errors.ts';
import { SUPPORT_NAMES } from '../catalog/types.ts';
import { SUPPORT_IMAGE_NAMES, type SupportImageName } from './recipes.ts';
import { MediaType, PLATFORMS, assertDigest, type ImageIndex, type PlatformName } from '../oci/types.ts';
import { RegistryClient, assertRegistryHost, assertRepository, assertReference, type RegistryClientOptions } from '../registry/index.ts';
import { SUPPORT_LOCK_FILE, SUPPORT_LOCK_GENERATED_BY, upstreamOf, writeSupportLock, type SupportLock, type SupportLockImage } from './index.ts';

export interface ImageReference {
  /** The registry as named (docker.io for Docker Hub). */
  readonly registry: string;
  /** The host the API is at (registry-1.docker.io for docker.io). */
  readonly apiHost: string;
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
}

/** `[registry/]repo[:tag][@sha256:…]`, with Docker Hub's defaults (docker.io, library/, latest). */
export function parseImageReference(ref: string): ImageReference {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = assertDigest(rest.slice(at + 1), `image reference "${ref}"`);
    rest = rest.slice(0, at);
  }
  const slash = rest.indexOf('/');
  let registry = 'docker.io';
  if (slash > 0 && /[.:]|^localhost$/.test(rest.slice(0, slash))) {
    registry = rest.slice(0, slash);
    rest = rest.slice(slash + 1);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  if (registry === 'docker.io' && !rest.includes('/')) rest = `library/${rest}`;
  assertRegistryHost(registry);
  assertRepository(rest, `image reference "${ref}"`);
  if (tag !== undefined) assertReference(tag, `image reference "${ref}" tag`);
  if (!tag && !digest) tag = 'latest';
  return { registry, apiHost: registry === 'docker.io' ? 'registry-1.docker.io' : registry, repository: rest, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

export interface ResolveSupportImagesOptions {
  readonly names?: readonly string[];
  /** registry (as named in the reference, e.g. docker.io) → host[:port] to ask instead. */
  readonly mirrors?: Readonly<Record<string, string>>;
  /** Upstream reference per service instead of the catalog's (e.g. to try a newer tag). */
  readonly references?: Partial<Record<SupportImageName, string>>;
  readonly lockFile?: string | false;
  readonly registryOptions?: Omit<RegistryClientOptions, 'registry'>;
  readonly progress?: (line: string) => void;
}

export async function resolveSupportImages(o: ResolveSupportImagesOptions = {}): Promise<{ lock: SupportLock; lockFile?: string }> {
  // Default: the catalog's five. nginx (the tls profile's sidecar) only when named: the upstream
  // nginx image runs as root and has no probe, so the quickstart's tls profile wants the built one.
  const names: SupportImageName[] = o.names === undefined ? [...SUPPORT_NAMES] : SUPPORT_IMAGE_NAMES.filter((n) => o.names!.includes(n));
  for (const n of o.names ?? []) if (!(SUPPORT_IMAGE_NAMES as readonly string[]).includes(n)) throw new StellaError('INVALID_ARGUMENT', `support-images: "${n}" is not a support image (expected one of ${SUPPORT_IMAGE_NAMES.join(', ')})`);
  const clients = new Map<string, RegistryClient>();
  const images: Partial<Record<SupportImageName, SupportLockImage>> = {};
  for (const name of names) {
    const upstream = o.references?.[name] ?? upstreamOf(name);
    const ref = parseImageReference(upstream);
    const host = o.mirrors?.[ref.registry] ?? ref.apiHost;
    let client = clients.get(host);
    if (!client) {
      client = new RegistryClient({ ...o.registryOptions, registry: host });
      clients.set(host, client);
    }
    const fetched = await client.getManifest(ref.repository, ref.digest ?? ref.tag!);
    const doc = JSON.parse(new TextDecoder().decode(fetched.bytes)) as ImageIndex & { mediaType?: string };
    if (fetched.mediaType !== MediaType.ociIndex && fetched.mediaType !== MediaType.dockerManifestList) {
      throw new StellaError('NOT_FOUND', `${upstream} (asked at ${host}) is a single-platform manifest (${fetched.mediaType}), not a multi-arch index: the support images need ${PLATFORMS.join(' and ')}`);
    }
    const platforms: Partial<Record<PlatformName, string>> = {};
    for (const p of PLATFORMS) {
      const [os, arch] = p.split('/');
      const m = doc.manifests.find((d) => d.platform?.os === os && d.platform.architecture === arch && (d.platform.variant === undefined || d.platform.variant === 'v8'));
      if (!m) throw new StellaError('NOT_FOUND', `${upstream}@${fetched.digest} has no ${p} image (it has ${doc.manifests.map((d) => (d.platform ? `${d.platform.os}/${d.platform.architecture}` : d.digest)).join(', ')})`);
      platforms[p] = assertDigest(m.digest, `${upstream} ${p}`);
    }
    const repository = `${ref.registry}/${ref.repository}`;
    images[name] = { upstream, repository, digest: fetched.digest, platforms, version: doc.annotations?.['org.opencontainers.image.version'] ?? ref.tag ?? fetched.digest, origin: 'resolved' };
    (o.progress ?? (() => {}))(`${name}: ${upstream} → ${repository}@${fetched.digest} (asked ${host})`);
  }
  const lock: SupportLock = { lockVersion: 1, generatedBy: SUPPORT_LOCK_GENERATED_BY, mode: 'resolved', platforms: [...PLATFORMS], images };
  const lockFile = o.lockFile === false ? undefined : (o.lockFile ?? SUPPORT_LOCK_FILE);
  if (lockFile) await writeSupportLock(lock, lockFile);
  return { lock, ...(lockFile ? { lockFile } : {}) };
}
