/**
 * The `support-images` step: the support services of the catalog (PostgreSQL,
 * Redis, the S3-compatible object store, NATS with JetStream, the
 * OpenTelemetry collector), plus nginx for the Compose quickstart's tls
 * profile, as images the product can pin by digest. NATS, SeaweedFS, the
 * collector and nginx carry /usr/bin/stella-probe (tools/probe) for their
 * health checks (they have no shell or HTTP client).
 *
 * Two modes, one output, `deploy/support-images.lock.json` (generated):
 *
 *   // build: equivalent images built here, reproducibly, both platforms, pushed by digest
 *   const lock = await buildSupportImages({ source: '.', push: { registry: '127.0.0.1:5000', namespace: 'stellaops' } });
 *   // resolve: the catalog's upstream references resolved to digests where a registry is reachable
 *   const lock = await resolveSupportImages({ source: '.' });
 *
 * Build mode, per image: the locked inputs (ci/src/support/inputs.lock.json:
 * Debian .debs per platform; Go binaries cross-compiled with CGO_ENABLED=0,
 * -trimpath, cached by module and flags), one deterministic layer, a non-root
 * config (fixed uid, one volume, exec-form entrypoint, OCI labels), the index of
 * linux/amd64 + linux/arm64, SPDX 2.3 per platform and per index, written to an
 * OCI layout and pushed by digest (no tags). Same inputs and epoch → same digests.
 */
import { mkdir, rename, writeFile, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StellaError } from '../errors.ts';
import { catalog } from '../catalog/index.ts';
import { OciLayout } from '../oci/layout.ts';
import { MediaType, PLATFORMS, type ImageIndex, type PlatformName } from '../oci/types.ts';
import { RegistryClient, assertRegistryHost, assertRepository, pushLayout, type RegistryClientOptions } from '../registry/index.ts';
import { serializeSpdx, spdxDigest } from '../sbom/spdx.ts';
import { validateSpdx } from '../sbom/validate.ts';
import type { SpdxDocument } from '../sbom/types.ts';
import { buildGoBinary, goSumDigest, GO_TOOLCHAIN, type BuiltGoBinary } from './go.ts';
import { assemblePlatformImage, type PlatformImage } from './image.ts';
import { COMMITTED_INPUTS_LOCK, INPUTS_LOCK_COMMENT, defaultSupportCacheDir, fetchSupportDebs, readInputsLock, writeInputsLock, type InputsLock, type LockedGo } from './inputs.ts';
import { RECIPES, SUPPORT_IMAGE_NAMES, goBinariesOf, type SupportImageName, type SupportRecipe } from './recipes.ts';
import { supportImageSbom, supportIndexSbom } from './sbom.ts';

export { RECIPES, SUPPORT_IMAGE_NAMES, PROBE, PROBE_HEALTHCHECKS, goBinariesOf, type SupportRecipe, type SupportImageName } from './recipes.ts';
export { parseGoVersionM, readGoBuildInfo } from './go.ts';
export { readInputsLock, COMMITTED_INPUTS_LOCK } from './inputs.ts';

/** The generated lock in the repository. */
export const SUPPORT_LOCK_FILE = fileURLToPath(new URL('../../../deploy/support-images.lock.json', import.meta.url));
export const SUPPORT_LOCK_GENERATED_BY = 'stella-release support-images (ci/src/support: buildSupportImages / resolveSupportImages); generated, do not edit by hand';

export interface SupportLockImage {
  /** The upstream image the product defaults to (catalog upstreamImage). */
  readonly upstream: string;
  /** Where the pinned index lives: `host[:port]/namespace/support-<name>` (built) or the upstream repository (resolved). */
  readonly repository: string;
  /** The multi-arch index digest: use `<repository>@<digest>`. */
  readonly digest: string;
  readonly platforms: Partial<Record<PlatformName, string>>;
  /** The software version (Debian package version, or the release of the Go module). */
  readonly version: string;
  /** `built` here from pinned inputs, or `resolved` from the upstream registry. */
  readonly origin: 'built' | 'resolved';
  /** Built images: the SBOM digests (sha256 of the canonical SPDX JSON), per platform and for the index. */
  readonly sbom?: { readonly index: string; readonly platforms: Partial<Record<PlatformName, string>> };
  /** Built images: uid:gid, volume, and the inputs. */
  readonly user?: string;
  readonly volume?: string;
  readonly inputs?: string;
}

export interface SupportLock {
  readonly lockVersion: 1;
  readonly generatedBy: string;
  readonly mode: 'built' | 'resolved';
  readonly sourceDateEpoch?: number;
  readonly platforms: readonly PlatformName[];
  readonly images: Partial<Record<SupportImageName, SupportLockImage>>;
}

export interface BuildSupportImagesOptions {
  /** The repository checkout (tools/ holds the Go wrapper modules). Default: this checkout. */
  readonly source?: string;
  /** Support images; default all (the catalog's five, in catalog order, then nginx). */
  readonly names?: readonly string[];
  /** Push every index by digest to `<registry>/<namespace>/support-<name>`. */
  readonly push?: { readonly registry: string; readonly namespace: string };
  /** OCI layout to write every image into (ref name support-<name>); default <cacheDir>/layout. */
  readonly ociLayout?: string;
  /** Where SBOMs go: <sbomDir>/<name>/{index,linux-amd64,linux-arm64}.spdx.json. */
  readonly sbomDir?: string;
  /** The lock to write; default deploy/support-images.lock.json. `false`: write none. */
  readonly lockFile?: string | false;
  /** Inputs lock; default ci/src/support/inputs.lock.json. */
  readonly inputsLock?: string;
  /** Resolve the Debian closures and Go binary digests anew and rewrite the inputs lock. */
  readonly updateLock?: boolean;
  /** Seconds since 1970 for every timestamp; default $SOURCE_DATE_EPOCH, else 0 (support images do not depend on the commit). */
  readonly sourceDateEpoch?: number;
  readonly cacheDir?: string;
  readonly sourcesFile?: string;
  readonly registryOptions?: Omit<RegistryClientOptions, 'registry'>;
  readonly progress?: (line: string) => void;
}

export interface BuiltSupportImage {
  readonly name: SupportImageName;
  readonly repository: string;
  readonly digest: string;
  readonly platforms: Partial<Record<PlatformName, string>>;
  readonly version: string;
  readonly sboms: { readonly index: SpdxDocument; readonly platforms: Partial<Record<PlatformName, SpdxDocument>> };
  readonly images: readonly PlatformImage[];
  /** Go binaries compiled by this call (empty on a warm run). */
  readonly compiled: readonly string[];
}

export interface BuildSupportImagesResult {
  readonly lock: SupportLock;
  readonly lockFile?: string;
  readonly layout: string;
  readonly images: readonly BuiltSupportImage[];
}

function selectNames(names: readonly string[] | undefined): SupportImageName[] {
  if (names === undefined) return [...SUPPORT_IMAGE_NAMES];
  if (names.length === 0) throw new StellaError('INVALID_ARGUMENT', 'support-images: names is empty (omit it for all of them)');
  for (const n of names) {
    if (!(SUPPORT_IMAGE_NAMES as readonly string[]).includes(n)) throw new StellaError('INVALID_ARGUMENT', `support-images: "${n}" is not a support image (expected one of ${SUPPORT_IMAGE_NAMES.join(', ')})`);
  }
  return SUPPORT_IMAGE_NAMES.filter((n) => names.includes(n));
}

/** The upstream image a support image stands in for: the catalog's, or the recipe's (nginx). */
export function upstreamOf(name: SupportImageName): string {
  const s = catalog.support.find((x) => x.name === name);
  if (s) return s.upstreamImage;
  const r = RECIPES[name]?.upstream;
  if (!r) throw new StellaError('CATALOG_INVALID', `catalog has no support service ${name} and its recipe names no upstream image`);
  return r;
}

function defaultEpoch(given: number | undefined): number {
  const env = process.env.SOURCE_DATE_EPOCH;
  const epoch = given ?? (env !== undefined && env !== '' ? Number(env) : 0);
  if (!Number.isInteger(epoch) || epoch < 0) throw new StellaError('INVALID_ARGUMENT', `support-images: sourceDateEpoch ${String(epoch)} is not whole seconds since 1970`);
  return epoch;
}

export async function writeSupportLock(lock: SupportLock, file: string): Promise<void> {
  await mkdir(resolve(file, '..'), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(lock, null, 2)}\n`);
  await rename(tmp, file);
}

export async function readSupportLock(file = SUPPORT_LOCK_FILE): Promise<SupportLock> {
  const lock = JSON.parse(await readFile(file, 'utf8')) as SupportLock;
  if (lock.lockVersion !== 1 || typeof lock.images !== 'object') throw new StellaError('LOCK_MISMATCH', `${file}: not a support images lock (lockVersion 1)`);
  return lock;
}

/** Build mode (see the module comment). */
export async function buildSupportImages(o: BuildSupportImagesOptions = {}): Promise<BuildSupportImagesResult> {
  const progress = o.progress ?? (() => {});
  const source = resolve(o.source ?? fileURLToPath(new URL('../../..', import.meta.url)));
  const names = selectNames(o.names);
  const epoch = defaultEpoch(o.sourceDateEpoch);
  const cacheDir = o.cacheDir ?? defaultSupportCacheDir();
  if (o.push) {
    assertRegistryHost(o.push.registry);
    assertRepository(o.push.namespace, 'support-images push.namespace');
  }
  const inputsFile = o.inputsLock ?? COMMITTED_INPUTS_LOCK;
  const update = o.updateLock ?? false;
  const inputs = await readInputsLock(inputsFile);
  if (!inputs && !update) throw new StellaError('LOCK_MISMATCH', `support inputs lock ${inputsFile} is missing: create it deliberately with updateLock (--update-lock)`);
  const newDebs: Record<string, Record<string, unknown>> = JSON.parse(JSON.stringify(inputs?.debs ?? {}));
  const newGo: Record<string, LockedGo> = JSON.parse(JSON.stringify(inputs?.go ?? {}));

  const layoutDir = o.ociLayout ?? join(cacheDir, 'layout');
  const layout = await OciLayout.init(layoutDir);
  const client = o.push ? new RegistryClient({ ...o.registryOptions, registry: o.push.registry }) : undefined;
  const images: BuiltSupportImage[] = [];
  const lockImages: Partial<Record<SupportImageName, SupportLockImage>> = {};

  for (const name of names) {
    const recipe = RECIPES[name];
    const upstream = upstreamOf(name);
    const t0 = performance.now();
    const compiled: string[] = [];
    const built: PlatformImage[] = [];
    const goBins: Partial<Record<PlatformName, { binary: NonNullable<SupportRecipe['go']>; built: BuiltGoBinary }[]>> = {};
    let version = '';
    for (const platform of PLATFORMS) {
      const debs = await fetchSupportDebs(name, platform, { cacheDir, lock: inputs, updateLock: update, ...(o.sourcesFile ? { sourcesFile: o.sourcesFile } : {}), log: progress });
      newDebs[name] = { ...(newDebs[name] ?? {}), [platform]: debs.locked };
      const gos: { binary: NonNullable<SupportRecipe['go']>; built: BuiltGoBinary }[] = [];
      for (const binary of goBinariesOf(recipe)) {
        const go = await buildGoBinary(source, binary, platform, cacheDir, progress);
        if (go.compiled) compiled.push(`${binary.id} ${platform}`);
        const goSum = await goSumDigest(source, binary);
        const lockedGo = inputs?.go[binary.id];
        const want = lockedGo?.binaries[platform];
        if (!update) {
          if (!lockedGo || !want) throw new StellaError('LOCK_MISMATCH', `support inputs lock has no ${binary.id} ${platform} binary: add it deliberately with updateLock (--update-lock)`);
          if (lockedGo.goSum !== goSum) throw new StellaError('LOCK_MISMATCH', `${binary.moduleDir}/go.sum changed (sha256 ${goSum}, the lock says ${lockedGo.goSum}): refresh the lock with --update-lock`);
          if (want.sha256 !== go.sha256) {
            throw new StellaError('LOCK_MISMATCH', `${binary.id} ${platform}: the build is not the locked binary (sha256 ${go.sha256}, expected ${want.sha256}); the Go build is not reproducible here (toolchain ${go.info.goVersion}, expected ${lockedGo.goVersion}?), or ${binary.moduleDir} changed: refresh the lock with --update-lock`);
          }
        }
        const prev = newGo[binary.id];
        newGo[binary.id] = { goSum, goVersion: go.info.goVersion, binaries: { ...(update && prev?.goSum !== goSum ? {} : (prev?.binaries ?? {})), [platform]: { sha256: go.sha256, size: go.size } } };
        gos.push({ binary, built: go });
      }
      goBins[platform] = gos;
      if ('deb' in recipe.versionFrom) {
        const pkg = recipe.versionFrom.deb;
        const d = debs.locked.find((x) => x.package === pkg);
        if (!d) throw new StellaError('BUILD_FAILED', `${name}: ${pkg} is not among its packages`);
        version = d.version;
      } else version = recipe.go!.version;
      built.push(
        await assemblePlatformImage({
          recipe,
          platform,
          debs: debs.locked.map((l, i) => ({ locked: l, path: debs.paths[i]! })),
          go: gos,
          version,
          upstream,
          sourceDateEpoch: epoch,
          layout,
        }),
      );
    }
    const index: ImageIndex = {
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: built.map((b) => b.manifest),
      annotations: { 'org.opencontainers.image.version': version, 'org.opencontainers.image.title': recipe.image, 'dev.stellaops.support.equivalent-of': upstream },
    };
    const indexDesc = await layout.writeIndex(index);
    await layout.setIndexEntry(indexDesc, recipe.image);
    const repository = o.push ? `${o.push.registry}/${o.push.namespace}/${recipe.image}` : recipe.image;

    // SBOMs: per platform, then the index.
    const platformSboms: Partial<Record<PlatformName, SpdxDocument>> = {};
    for (const b of built) {
      const gos = goBins[b.platform] ?? [];
      const doc = supportImageSbom({
        image: recipe.image,
        title: recipe.title,
        repository,
        platform: b.platform,
        manifestDigest: b.manifest.digest,
        osPackages: b.osPackages,
        go: gos.map((g) => ({ binary: g.binary, info: g.built.info, sha256: g.built.sha256 })),
        created: epoch,
      });
      validateSpdx(doc, { what: `SBOM of ${recipe.image} ${b.platform}` });
      platformSboms[b.platform] = doc;
    }
    const indexSbomDoc = supportIndexSbom({ image: recipe.image, title: recipe.title, repository, indexDigest: indexDesc.digest, platforms: built.map((b) => ({ platform: b.platform, manifestDigest: b.manifest.digest, sbom: platformSboms[b.platform]! })), created: epoch });
    if (o.sbomDir) {
      const dir = join(o.sbomDir, name);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'index.spdx.json'), serializeSpdx(indexSbomDoc));
      for (const b of built) await writeFile(join(dir, `${b.platform.replace('/', '-')}.spdx.json`), serializeSpdx(platformSboms[b.platform]!));
    }

    if (client) {
      const report = await pushLayout(client, layoutDir, `${o.push!.namespace}/${recipe.image}`, indexDesc.digest);
      progress(`${recipe.image}: pushed ${repository}@${indexDesc.digest} (${JSON.stringify(report).slice(0, 200)})`);
    }
    const platforms = Object.fromEntries(built.map((b) => [b.platform, b.manifest.digest])) as Partial<Record<PlatformName, string>>;
    progress(`${recipe.image}: index ${indexDesc.digest} [${built.map((b) => `${b.platform} ${b.manifest.digest} layer ${b.layer.size} bytes`).join('; ')}] in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
    const goDesc = goBinariesOf(recipe).map((g) => `${g.upstreamModule}@${g.upstreamVersion} (${g.moduleDir}, ${GO_TOOLCHAIN}, CGO_ENABLED=0 -trimpath)`).join(' + ');
    const inputsDesc = recipe.go
      ? `${goDesc} + debian bookworm base-files netbase tzdata ca-certificates`
      : `debian bookworm ${recipe.debs.join(' ')} (closure in ci/src/support/inputs.lock.json)${goDesc ? ` + ${goDesc}` : ''}`;
    lockImages[name] = {
      upstream,
      repository,
      digest: indexDesc.digest,
      platforms,
      version,
      origin: 'built',
      sbom: { index: spdxDigest(indexSbomDoc), platforms: Object.fromEntries(built.map((b) => [b.platform, spdxDigest(platformSboms[b.platform]!)])) },
      user: `${recipe.user.uid}:${recipe.user.uid}`,
      volume: recipe.volume,
      inputs: inputsDesc,
    };
    images.push({ name, repository, digest: indexDesc.digest, platforms, version, sboms: { index: indexSbomDoc, platforms: platformSboms }, images: built, compiled });
  }

  if (update) {
    const lock: InputsLock = { lockVersion: 1, comment: INPUTS_LOCK_COMMENT, debian: inputs?.debian ?? { sources: ['http://deb.debian.org/debian bookworm bookworm-updates main', 'http://deb.debian.org/debian-security bookworm-security main'] }, debs: newDebs as InputsLock['debs'], go: newGo };
    await writeInputsLock(lock, inputsFile);
  }
  // The lock keeps the entries of services not built by this call.
  const lockFile = o.lockFile === false ? undefined : (o.lockFile ?? SUPPORT_LOCK_FILE);
  let previous: SupportLock | undefined;
  if (lockFile && names.length < SUPPORT_IMAGE_NAMES.length) previous = await readSupportLock(lockFile).catch(() => undefined);
  const merged: Partial<Record<SupportImageName, SupportLockImage>> = {};
  for (const n of SUPPORT_IMAGE_NAMES) {
    const e = lockImages[n] ?? previous?.images[n];
    if (e) merged[n] = e;
  }
  const lock: SupportLock = { lockVersion: 1, generatedBy: SUPPORT_LOCK_GENERATED_BY, mode: 'built', sourceDateEpoch: epoch, platforms: [...PLATFORMS], images: merged };
  if (lockFile) await writeSupportLock(lock, lockFile);
  return { lock, ...(lockFile ? { lockFile } : {}), layout: layoutDir, images };
}

export { resolveSupportImages, parseImageReference, type ResolveSupportImagesOptions } from './resolve.ts';
