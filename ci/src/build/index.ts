/**
 * The `build` step: the 11 services as reproducible multi-arch OCI image
 * indexes, without emulation.
 *
 *   const doc = await build({
 *     source: '.', version: 'v1.4.0', gitCommit: '0123abc…', sourceDateEpoch: 1700000000,
 *     base: 'oci:out/base',                       // or '127.0.0.1:5000/stellaops/base@sha256:…'
 *     push: { registry: '127.0.0.1:5000', namespace: 'stellaops' },
 *     ociLayout: 'out/images',
 *   });
 *   // doc.images: [{ service, repository, digest (the index), platforms: { 'linux/amd64': 'sha256:…', … } }]
 *
 * Steps, in order:
 *  1. validate the options (contradictions rejected before any work);
 *  2. read every selected Dockerfile (docker/stella-<service>.Dockerfile) and check it against the supported subset;
 *  3. run the JavaScript build once, natively (services/build.ts): the bundles are architecture-independent;
 *  4. read the base index and, per platform, its manifest and config;
 *  5. per service: interpret the Dockerfile against each platform's base config, make the app layer
 *     (identical bytes on every platform), the config, the manifest; then the index of exactly the
 *     requested platforms, in order;
 *  6. write everything to the OCI layout and/or push it BY DIGEST (no tags: tagging is a publish step).
 *
 * With `cache` (./cache.ts, what `release` uses), step 3 runs only for the services whose
 * JavaScript inputs changed, and steps 4–6 only for the images whose inputs changed or that
 * the registry lost; `buildReport` says which images the cache gave.
 *
 * Bit-reproducible: timestamps come from sourceDateEpoch, layers and JSON are
 * deterministic, and nothing host-dependent (user names, absolute paths, now())
 * enters a blob. The same commit and base give the same digests.
 */
import { existsSync, mkdtempSync, rmSync, statSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { StellaError } from '../errors.ts';
import { selectServices, type ServiceSpec } from '../catalog/index.ts';
import {
  MediaType,
  PLATFORMS,
  assertDigest,
  descriptorOf,
  jsonBytes,
  parsePlatform,
  platformName,
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  type Platform,
} from '../oci/types.ts';
import { createLayer, type Layer } from '../oci/layer.ts';
import { OciLayout } from '../oci/layout.ts';
import { assertRegistryHost, assertRepository } from '../registry/names.ts';
import { dockerfilePath, APP_DIST_DIR } from './dockerfiles.ts';
import { copyLayerOptions, finishConfig, interpretDockerfile, parseDockerfile, resolveFrom, rfc3339, type DockerfileProgram, type ImageConfig } from './dockerfile.ts';
import { CachingSource, LayoutSink, LayoutSource, type ImageSink, type ImageSource } from './stores.ts';
import { RegistryClient } from '../registry/client.ts';
import { RegistrySink, RegistrySource, type BlobLocations, type BuildRegistryOptions } from './registry.ts';
import { BuildCache, FileHashes, builderDigest, contextDigest, imageKey, jsKey } from './cache.ts';

export { BuildCache, type BuildCacheEntry } from './cache.ts';
export { writeBuildDocument, readBuildDocument, validateBuildDocument, type BuildDocument, type BuiltImage } from './document.ts';
import type { BuildDocument, BuiltImage } from './document.ts';

export interface BuildOptions {
  /** The repository checkout: holds docker/*.Dockerfile and services/. */
  readonly source: string;
  /** Services to build (catalog names); default all 11, in catalog order. */
  readonly services?: readonly string[];
  /** Version baked into the images (label, /version). */
  readonly version: string;
  /** Git commit of the build (label org.opencontainers.image.revision, /version). */
  readonly gitCommit: string;
  /** Seconds since 1970: every timestamp in the images (config, history, layer mtimes, BUILD_DATE). */
  readonly sourceDateEpoch: number;
  /** Base image: `host[:port]/repo@sha256:…` or `oci:<layout dir>[@sha256:…]`; a multi-arch index or a single manifest. */
  readonly base: string;
  /** Push every image by digest to `<registry>/<namespace>/stella-<service>`. */
  readonly push?: { readonly registry: string; readonly namespace: string };
  /** Write every image into this OCI layout (index.json entry per service, ref name `stella-<service>`). */
  readonly ociLayout?: string;
  /** Platforms of each index, in order; default linux/amd64, linux/arm64. */
  readonly platforms?: readonly string[];
  /** Where the JavaScript build writes `dist/app/<service>/` (the build context); default a temp dir removed afterwards. */
  readonly contextDir?: string;
  /** Credentials, retry policy… for the registry clients (base and push). */
  readonly registryOptions?: BuildRegistryOptions;
  readonly progress?: (line: string) => void;
  /**
   * The input cache (./cache.ts): an image whose inputs are those recorded in `file`, and
   * whose digests the push registry still holds, is neither rebuilt nor pushed; its JavaScript
   * bundle is not rebuilt either when its inputs and the bundle on disk are the recorded ones.
   * `read: false` bypasses it (everything is built) and records the results anew. Needs `push`
   * and no `ociLayout` (a cached image is written nowhere).
   */
  readonly cache?: { readonly file: string; readonly read?: boolean };
}

/** What services/build.ts exports (owned by the services engineers). */
interface ServicesBuildModule {
  buildServices(o: { outDir: string; version: string; gitCommit: string; buildDate: string; services?: readonly string[] }): Promise<readonly { service: string; dir: string; files?: readonly unknown[]; npmPackages?: readonly unknown[] }[]>;
}

const VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
const COMMIT_RE = /^[0-9a-f]{40}$/;

interface BaseRef {
  readonly kind: 'oci' | 'registry';
  /** Layout dir, or `host[:port]`. */
  readonly where: string;
  /** Registry repository (kind registry). */
  readonly repository?: string;
  readonly digest?: string;
}

export function parseBaseRef(ref: string): BaseRef {
  if (ref.startsWith('oci:')) {
    const rest = ref.slice(4);
    const at = rest.lastIndexOf('@');
    const dir = at >= 0 && rest.slice(at + 1).startsWith('sha256:') ? rest.slice(0, at) : rest;
    const digest = dir === rest ? undefined : assertDigest(rest.slice(at + 1), `base "${ref}"`);
    if (!dir) throw new StellaError('INVALID_ARGUMENT', `base "${ref}": no layout directory (expected oci:<dir>[@sha256:…])`);
    return digest ? { kind: 'oci', where: dir, digest } : { kind: 'oci', where: dir };
  }
  const m = /^([^/]+)\/([^@]+)@(.+)$/.exec(ref);
  if (!m) {
    throw new StellaError('INVALID_ARGUMENT', `base "${ref}" is neither host[:port]/repo@sha256:<64 hex> nor oci:<dir>[@sha256:…]; a registry base is pinned by digest, never a tag`);
  }
  return { kind: 'registry', where: assertRegistryHost(m[1]), repository: assertRepository(m[2], `base "${ref}" repository`), digest: assertDigest(m[3], `base "${ref}"`) };
}

interface Resolved {
  readonly services: ServiceSpec[];
  readonly platforms: Platform[];
  readonly base: BaseRef;
}

/** Step 1: every check that needs no work; throws INVALID_ARGUMENT naming the option. */
export function validateBuildOptions(o: BuildOptions): Resolved {
  const bad = (m: string): never => {
    throw new StellaError('INVALID_ARGUMENT', `build: ${m}`);
  };
  if (typeof o.source !== 'string' || !existsSync(join(o.source, 'docker'))) bad(`source "${o.source}" has no docker/ directory (expected the repository checkout)`);
  if (typeof o.version !== 'string' || !VERSION_RE.test(o.version)) bad(`version "${o.version}" is not a version string (expected e.g. v1.4.0, v1.4.0-rc.1, edge)`);
  if (typeof o.gitCommit !== 'string' || !COMMIT_RE.test(o.gitCommit)) bad(`gitCommit "${o.gitCommit}" is not a git commit (expected the full 40-hex-digit commit id, git rev-parse HEAD)`);
  if (!Number.isInteger(o.sourceDateEpoch) || o.sourceDateEpoch < 0 || o.sourceDateEpoch > 253402300799) {
    bad(`sourceDateEpoch ${String(o.sourceDateEpoch)} is not whole seconds since 1970 (expected e.g. the commit time, git log -1 --format=%ct)`);
  }
  if (!o.push && !o.ociLayout) bad('nothing to write: give push (registry and namespace) and/or ociLayout');
  if (o.push) {
    assertRegistryHost(o.push.registry);
    assertRepository(o.push.namespace, 'build push.namespace');
  }
  if (o.ociLayout !== undefined && (typeof o.ociLayout !== 'string' || o.ociLayout.length === 0)) bad('ociLayout is empty (expected a directory)');
  if (o.cache && (!o.push || o.ociLayout !== undefined)) bad('the input cache needs push and no ociLayout (a cached image is pushed nowhere and written to no layout)');
  const services = o.services === undefined ? selectServices(undefined) : (() => {
    if (o.services.length === 0) bad('services is empty (omit it to build all 11)');
    const seen = new Set<string>();
    for (const s of o.services) {
      if (seen.has(s)) bad(`service "${s}" is listed twice`);
      seen.add(s);
    }
    return selectServices(o.services);
  })();
  const names = o.platforms ?? PLATFORMS;
  if (names.length === 0) bad('platforms is empty (expected e.g. linux/amd64,linux/arm64)');
  if (new Set(names).size !== names.length) bad(`platforms ${names.join(',')} lists a platform twice`);
  const platforms = names.map((p) => {
    const pl = parsePlatform(p);
    if (pl.os !== 'linux') bad(`platform ${p}: only linux images are built`);
    return pl;
  });
  const base = parseBaseRef(o.base);
  if (base.kind === 'oci' && !existsSync(join(base.where, 'oci-layout'))) bad(`base "${o.base}": ${base.where} is not an OCI layout (no oci-layout file)`);
  if (o.contextDir !== undefined && existsSync(o.contextDir) && !statSync(o.contextDir).isDirectory()) bad(`contextDir ${o.contextDir} is not a directory`);
  return { services, platforms, base };
}

function isIndexMediaType(mt: string | undefined): boolean {
  return mt === MediaType.ociIndex || mt === MediaType.dockerManifestList;
}

function parseJson<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as T;
  } catch (e) {
    throw new StellaError('INVALID_ARGUMENT', `${what} is not JSON: ${(e as Error).message}`);
  }
}

function samePlatform(want: Platform, got: Platform | undefined): boolean {
  if (!got) return false;
  if (want.os !== got.os || want.architecture !== got.architecture) return false;
  if (want.variant === undefined) return got.variant === undefined || (got.architecture === 'arm64' && got.variant === 'v8');
  return want.variant === got.variant;
}

interface BasePlatform {
  readonly platform: Platform;
  readonly manifestDigest: string;
  readonly manifest: ImageManifest;
  readonly config: ImageConfig;
}

/** Step 4: the base manifest and config of each requested platform. */
async function readBase(src: ImageSource, ref: BaseRef, platforms: readonly Platform[]): Promise<BasePlatform[]> {
  let rootDigest = ref.digest;
  if (!rootDigest) {
    const layout = new OciLayout(ref.where);
    const entries = (await layout.readIndexJson()).manifests;
    if (entries.length !== 1) {
      throw new StellaError('INVALID_ARGUMENT', `base ${src.name}: index.json has ${entries.length} entries (expected exactly one, or name one with oci:<dir>@sha256:…)`);
    }
    rootDigest = assertDigest(entries[0]!.digest, `base ${src.name} index.json entry`);
  }
  const rootBytes = await src.manifest(rootDigest);
  const root = parseJson<{ mediaType?: string; manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] }>(rootBytes, `base ${src.name}@${rootDigest}`);
  const candidates: { digest: string; platform?: Platform }[] = [];
  if (isIndexMediaType(root.mediaType) || Array.isArray(root.manifests)) {
    for (const d of root.manifests ?? []) candidates.push(d.platform ? { digest: d.digest, platform: d.platform } : { digest: d.digest });
  } else {
    candidates.push({ digest: rootDigest });
  }
  const out: BasePlatform[] = [];
  for (const p of platforms) {
    let found: BasePlatform | undefined;
    for (const c of candidates) {
      if (c.platform && !samePlatform(p, c.platform)) continue;
      const mBytes = c.digest === rootDigest ? rootBytes : await src.manifest(assertDigest(c.digest, `base ${src.name} index entry`));
      const manifest = parseJson<ImageManifest>(mBytes, `base manifest ${c.digest}`);
      if (!manifest.config || !Array.isArray(manifest.layers)) continue;
      const config = parseJson<ImageConfig>(await src.blob(assertDigest(manifest.config.digest, `base ${c.digest} config`), manifest.config.size), `base config ${manifest.config.digest}`);
      if (!samePlatform(p, { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) })) continue;
      if (!config.rootfs || config.rootfs.diff_ids?.length !== manifest.layers.length) {
        throw new StellaError('INVALID_ARGUMENT', `base ${src.name} manifest ${c.digest}: config has ${config.rootfs?.diff_ids?.length ?? 0} diff_ids for ${manifest.layers.length} layers`);
      }
      found = { platform: p, manifestDigest: c.digest, manifest, config };
      break;
    }
    if (!found) {
      const have = candidates.map((c) => (c.platform ? platformName(c.platform) : c.digest)).join(', ');
      throw new StellaError('NOT_FOUND', `base ${src.name}@${rootDigest} has no ${platformName(p)} image (it has: ${have}); every requested platform must come from the base`);
    }
    out.push(found);
  }
  return out;
}

function layerMediaType(mt: string): string {
  // Same bytes; the OCI name (an OCI manifest should not carry Docker media types).
  if (mt === MediaType.dockerLayerGzip) return MediaType.ociLayerGzip;
  return mt;
}

function elapsed(t0: number): string {
  return `${((performance.now() - t0) / 1000).toFixed(2)}s`;
}

async function runJavaScriptBuild(o: BuildOptions, context: string, services: readonly ServiceSpec[], progress: (l: string) => void): Promise<void> {
  const modPath = join(resolve(o.source), 'services', 'build.ts');
  if (!existsSync(modPath)) throw new StellaError('BUILD_FAILED', `build: ${modPath} is missing (expected the services' JavaScript build, buildServices)`);
  const mod = (await import(modPath)) as Partial<ServicesBuildModule>;
  if (typeof mod.buildServices !== 'function') throw new StellaError('BUILD_FAILED', `build: ${modPath} does not export buildServices`);
  const outDir = join(context, APP_DIST_DIR);
  const t0 = performance.now();
  const built = await mod.buildServices({ outDir, version: o.version, gitCommit: o.gitCommit, buildDate: rfc3339(o.sourceDateEpoch), services: services.map((s) => s.name) });
  for (const s of services) {
    const b = built.find((x) => x.service === s.name);
    if (!b) throw new StellaError('BUILD_FAILED', `build: the JavaScript build returned no bundle for ${s.name}`);
    if (resolve(b.dir) !== resolve(outDir, s.name)) {
      throw new StellaError('BUILD_FAILED', `build: the JavaScript build wrote ${s.name} to ${b.dir} (expected ${join(outDir, s.name)}, where ${dockerfilePath(s.name)} copies from)`);
    }
  }
  progress(`javascript: ${services.length} service bundle(s) in ${elapsed(t0)} (built once, natively; architecture-independent)`);
}

/** How one image of a build came about. */
export interface ImageOutcome {
  readonly service: string;
  /** The input cache gave the image: its recorded digests, present in the registry; nothing assembled or pushed. */
  readonly cached: boolean;
  /** Its JavaScript bundle was the recorded one (the JavaScript build did not run for it). */
  readonly jsCached: boolean;
}

export interface BuildReport {
  readonly document: BuildDocument;
  /** One per image, in the document's order. */
  readonly images: readonly ImageOutcome[];
}

/** Runs the build (steps 1–6 above) and returns the build document. */
export async function build(o: BuildOptions): Promise<BuildDocument> {
  return (await buildReport(o)).document;
}

/** `build`, also saying which images the input cache (BuildOptions.cache) gave. */
export async function buildReport(o: BuildOptions): Promise<BuildReport> {
  const progress = o.progress ?? (() => {});
  const resolved = validateBuildOptions(o);
  const programs = readDockerfiles(o.source, resolved.services);
  const ownContext = o.contextDir === undefined;
  const context = ownContext ? mkdtempSync(join(tmpdir(), 'stella-build-')) : resolve(o.contextDir!);
  try {
    await mkdir(context, { recursive: true });
    const cached = o.cache ? await openCache(o, resolved, programs, context, true) : undefined;
    // 3. JavaScript, once, for every bundle the cache does not hold.
    const js = resolved.services.filter((s) => !cached?.keys.get(s.name)?.jsHit);
    if (js.length) await runJavaScriptBuild(o, context, js, progress);
    if (js.length < resolved.services.length) {
      progress(`javascript: ${resolved.services.length - js.length} bundle(s) unchanged (same inputs, bundle as recorded in ${cached!.cache.file}): not rebuilt`);
    }
    return await assemble({ ...o, contextDir: context }, resolved, programs, progress, cached);
  } finally {
    if (ownContext) rmSync(context, { recursive: true, force: true });
  }
}

/**
 * Steps 1, 2 and 4–6 on a build context that already holds
 * `dist/app/<service>/` (the JavaScript build's output): the image assembly
 * alone, as BuildKit would do it from the same context. For the benchmark and
 * for callers that ran the JavaScript build themselves.
 */
export async function buildImages(o: BuildOptions & { readonly contextDir: string }): Promise<BuildDocument> {
  const progress = o.progress ?? (() => {});
  const resolved = validateBuildOptions(o);
  const programs = readDockerfiles(o.source, resolved.services);
  for (const s of resolved.services) {
    if (!existsSync(join(o.contextDir, APP_DIST_DIR, s.name))) {
      throw new StellaError('BUILD_FAILED', `build: ${join(o.contextDir, APP_DIST_DIR, s.name)} is missing (expected the JavaScript build's output for ${s.name})`);
    }
  }
  const cached = o.cache ? await openCache(o, resolved, programs, o.contextDir, false) : undefined;
  return (await assemble(o, resolved, programs, progress, cached)).document;
}

/** Step 2: parse every Dockerfile before any work, so an unsupported one fails fast. */
function readDockerfiles(source: string, services: readonly ServiceSpec[]): Map<string, DockerfileProgram> {
  const programs = new Map<string, DockerfileProgram>();
  for (const s of services) {
    const rel = dockerfilePath(s.name);
    const abs = join(source, rel);
    if (!existsSync(abs)) throw new StellaError('BUILD_FAILED', `build: ${rel} is missing (regenerate with node ci/src/build/dockerfiles.ts)`);
    programs.set(s.name, parseDockerfile(rel, readFileSync(abs, 'utf8')));
  }
  return programs;
}

function buildArgsOf(o: BuildOptions): Record<string, string> {
  return { VERSION: o.version, GIT_COMMIT: o.gitCommit, BUILD_DATE: rfc3339(o.sourceDateEpoch), BASE_IMAGE: o.base };
}

/** Per service: the key of its JavaScript inputs, the context paths its COPY reads, and whether its bundle is the recorded one. */
interface ServiceKeys {
  readonly js: string;
  /** COPY sources, relative to the context; undefined when they cannot be known without the base (then no cache). */
  readonly sources?: readonly string[];
  readonly jsHit: boolean;
}

interface OpenedCache {
  readonly cache: BuildCache;
  readonly hashes: FileHashes;
  readonly keys: ReadonlyMap<string, ServiceKeys>;
}

async function openCache(o: BuildOptions, resolved: Resolved, programs: ReadonlyMap<string, DockerfileProgram>, context: string, withJs: boolean): Promise<OpenedCache> {
  const cache = await BuildCache.open(o.cache!.file, { read: o.cache!.read !== false });
  const hashes = new FileHashes();
  const keys = new Map<string, ServiceKeys>();
  for (const s of resolved.services) {
    let sources: string[] | undefined;
    try {
      sources = interpretDockerfile(programs.get(s.name)!, { buildArgs: buildArgsOf(o), platform: resolved.platforms[0] }).copies.flatMap((c) => c.sources);
    } catch {
      sources = undefined; // COPY sources depend on the base's environment: built every time
    }
    const js = withJs ? jsKey(hashes, { source: o.source, service: s.name, version: o.version, gitCommit: o.gitCommit, buildDate: rfc3339(o.sourceDateEpoch) }) : '';
    const e = cache.get(s.name);
    const jsHit = withJs && sources !== undefined && e !== undefined && e.js === js && contextDigest(context, sources) === e.context;
    keys.set(s.name, { js, sources, jsHit });
  }
  return { cache, hashes, keys };
}

/** The base as a content address for the cache key: its reference with the digest (a layout's single index.json entry when not given). */
async function baseKeyOf(o: BuildOptions, base: BaseRef): Promise<string | undefined> {
  if (base.digest) return o.base;
  const entries = (await new OciLayout(base.where).readIndexJson()).manifests;
  return entries.length === 1 ? `oci:${resolve(base.where)}@${entries[0]!.digest}` : undefined;
}

/** Runs `f` over `items`, at most `limit` at a time, keeping the order of results. */
async function mapLimit<T, R>(items: readonly T[], limit: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) out[i] = await f(items[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

async function assemble(
  o: BuildOptions & { readonly contextDir: string },
  resolved: Resolved,
  programs: ReadonlyMap<string, DockerfileProgram>,
  progress: (l: string) => void,
  cached?: OpenedCache,
): Promise<BuildReport> {
  const { services, platforms, base } = resolved;
  const context = o.contextDir;
  const tStart = performance.now();
  const pushClient = o.push ? new RegistryClient({ ...o.registryOptions, registry: o.push.registry }) : undefined;
  const buildArgsBase = buildArgsOf(o);
  const repositoryOf = (s: ServiceSpec) => (o.push ? `${o.push.registry}/${o.push.namespace}/${s.image}` : s.image);

  // The input cache: an image whose key matches its entry, and whose digests the registry still holds, is the result.
  const reused = new Map<string, BuiltImage>();
  const imageKeys = new Map<string, { context: string; image: string }>();
  if (cached && pushClient) {
    const builder = builderDigest(cached.hashes);
    const baseKey = await baseKeyOf(o, base);
    const candidates = services.flatMap((s) => {
      const k = cached.keys.get(s.name)!;
      if (!k.sources || !baseKey) return [];
      const e = cached.cache.get(s.name);
      const ctx = k.jsHit ? e!.context : contextDigest(context, k.sources);
      const image = imageKey({ context: ctx, dockerfile: readFileSync(join(o.source, dockerfilePath(s.name)), 'utf8'), base: baseKey, platforms: platforms.map(platformName), buildArgs: buildArgsBase, builder, repository: repositoryOf(s) });
      imageKeys.set(s.name, { context: ctx, image });
      return e && e.image === image && e.repository === repositoryOf(s) ? [{ s, e }] : [];
    });
    const present = await mapLimit(candidates, 8, async ({ s, e }) => {
      const repo = `${o.push!.namespace}/${s.image}`;
      for (const d of [e.digest, ...Object.values(e.platforms)]) if (!(await pushClient.hasManifest(repo, d))) return false;
      return true;
    });
    candidates.forEach(({ s, e }, i) => {
      if (present[i]) reused.set(s.name, { service: s.name, repository: e.repository, digest: e.digest, platforms: { ...e.platforms } });
      else progress(`stella-${s.name}: recorded index ${e.digest} is not in ${e.repository} any more: building it again`);
    });
  }
  const toBuild = services.filter((s) => !reused.has(s.name));

  // 4. Base: the index, and per platform its manifest and config (only when an image is built).
  const baseClient = base.kind === 'registry' ? (pushClient && o.push!.registry === base.where ? pushClient : new RegistryClient({ ...o.registryOptions, registry: base.where })) : undefined;
  const src = new CachingSource(baseClient ? new RegistrySource(baseClient, base.repository!) : new LayoutSource(new OciLayout(base.where)));
  const basePlatforms = toBuild.length ? await readBase(src, base, platforms) : [];
  for (const b of basePlatforms) progress(`base ${platformName(b.platform)}: ${b.manifestDigest} (${b.manifest.layers.length} layer(s))`);

  const layout = o.ociLayout !== undefined ? await OciLayout.init(o.ociLayout) : undefined;
  const layoutSink = layout ? new LayoutSink(layout) : undefined;
  // Blobs already on the push registry (mounted rather than uploaded again).
  const locations: BlobLocations = new Map();
  if (baseClient && baseClient === pushClient) for (const b of basePlatforms) for (const l of b.manifest.layers) locations.set(l.digest, base.repository!);
  const images: BuiltImage[] = [];

  // 5–6. Per service: per platform app layer + config + manifest, then the index; written/pushed by digest.
  for (const s of services) {
    const repoName = `stella-${s.name}`;
    const repository = repositoryOf(s);
    const hit = reused.get(s.name);
    if (hit) {
      progress(`${repoName}: index ${hit.digest} unchanged (same inputs as recorded in ${cached!.cache.file}; present in ${repository} by digest): not rebuilt or pushed`);
      images.push(hit);
      continue;
    }
    const program = programs.get(s.name)!;
    const sinks: ImageSink[] = [];
    if (layoutSink) sinks.push(layoutSink);
    if (pushClient) sinks.push(new RegistrySink(pushClient, `${o.push!.namespace}/${s.image}`, locations));

    const layers = new Map<string, Layer>();
    const platformDigests: Record<string, string> = {};
    const indexEntries: Descriptor[] = [];
    for (const bp of basePlatforms) {
      const t0 = performance.now();
      const pname = platformName(bp.platform);
      const buildArgs = { ...buildArgsBase };
      const from = resolveFrom(program, { buildArgs, platform: bp.platform });
      if (from !== o.base) throw new StellaError('BUILD_FAILED', `${program.file}: FROM resolves to "${from}" (expected the base "${o.base}" through ARG BASE_IMAGE)`);
      const step = interpretDockerfile(program, { buildArgs, platform: bp.platform, baseConfig: bp.config });

      // App layers: one per COPY, identical bytes on every platform (cached by their inputs).
      const appLayers: Layer[] = [];
      for (const op of step.copies) {
        const lo = await copyLayerOptions(context, op, o.sourceDateEpoch, program.file);
        const key = JSON.stringify(lo);
        let layer = layers.get(key);
        if (!layer) {
          layer = await createLayer(lo);
          layers.set(key, layer);
        }
        appLayers.push(layer);
      }
      const config = finishConfig(step, appLayers.map((l) => l.diffId), o.sourceDateEpoch);
      const configBytes = jsonBytes(config);
      const configDesc = descriptorOf(MediaType.ociConfig, configBytes);
      const manifest: ImageManifest = {
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config: configDesc,
        layers: [
          ...bp.manifest.layers.map((l) => ({ mediaType: layerMediaType(l.mediaType), digest: l.digest, size: l.size })),
          ...appLayers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
        ],
        annotations: { 'org.opencontainers.image.base.digest': bp.manifestDigest },
      };
      const manifestBytes = jsonBytes(manifest);

      // Blobs first, then the manifest: a sink never holds a manifest whose content is missing.
      for (const sink of sinks) {
        for (const l of bp.manifest.layers) await sink.putBlob(l.digest, l.size, () => src.blob(l.digest, l.size));
        for (const l of appLayers) await sink.putBlob(l.digest, l.size, async () => l.blob);
        await sink.putBlob(configDesc.digest, configDesc.size, async () => configBytes);
        await sink.putManifest(manifestBytes, MediaType.ociManifest);
      }
      const mDesc = descriptorOf(MediaType.ociManifest, manifestBytes);
      platformDigests[pname] = mDesc.digest;
      const pl = bp.platform.variant ? { architecture: bp.platform.architecture, os: bp.platform.os, variant: bp.platform.variant } : { architecture: bp.platform.architecture, os: bp.platform.os };
      indexEntries.push({ ...mDesc, platform: pl });
      const appSize = appLayers.reduce((n, l) => n + l.size, 0);
      progress(`${repoName} ${pname}: ${mDesc.digest} (app layer ${appLayers.map((l) => l.digest).join(', ')}, ${appSize} bytes) in ${elapsed(t0)}`);
    }

    const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: indexEntries };
    const indexBytes = jsonBytes(index);
    const indexDesc = descriptorOf(MediaType.ociIndex, indexBytes);
    for (const sink of sinks) await sink.putManifest(indexBytes, MediaType.ociIndex);
    if (layout) await layout.setIndexEntry(indexDesc, repoName);
    progress(`${repoName}: index ${indexDesc.digest} [${platforms.map(platformName).join(', ')}]${o.push ? ` pushed to ${repository}@${indexDesc.digest}` : ''}${layout ? ` written to oci:${layout.root}` : ''}`);
    const built: BuiltImage = { service: s.name, repository, digest: indexDesc.digest, platforms: platformDigests };
    images.push(built);
    const k = imageKeys.get(s.name);
    if (cached && k) cached.cache.set(s.name, { js: cached.keys.get(s.name)!.js, context: k.context, image: k.image, repository, digest: built.digest, platforms: { ...platformDigests } });
  }
  if (cached) await cached.cache.save();
  const n = toBuild.length;
  progress(`built ${n} image(s) × ${platforms.length} platform(s) in ${elapsed(tStart)}${reused.size ? `; ${reused.size} unchanged (input cache)` : ''}`);
  return { document: { images }, images: images.map((i) => ({ service: i.service, cached: reused.has(i.service), jsCached: cached?.keys.get(i.service)?.jsHit === true })) };
}
