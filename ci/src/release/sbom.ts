/**
 * The sbom step: for each image (by digest), an SPDX 2.3 document per platform
 * and one for the index, generated from what the registry holds — the OS
 * packages recorded in the base layers (/var/lib/dpkg/status.d), the Node.js
 * runtime, and the application SBOM the image carries at /app/sbom.spdx.json —
 * then attached twice: as a signed attestation (SPDX predicate, as cosign
 * verifies it) and as a plain `application/spdx+json` referrer.
 *
 * Each blob is fetched once per run: images share their base layers, so blob
 * reads go through a cache by digest kept on disk (a temp dir removed when the
 * step ends), and what is read out of a layer (OS packages, the app SBOM) is
 * kept per digest. With `layerCache`, the OS packages of the base layers are
 * also kept across runs, so a release that rebuilt one image does not fetch and
 * unpack the base again to make its SBOMs.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { StellaError } from '../errors.ts';
import { MediaType, digestHex, platformName, type ImageIndex, type ImageManifest } from '../oci/types.ts';
import { readLayerFile } from '../oci/layer.ts';
import { readNodePin } from '../base/pin.ts';
import { IN_TOTO_STATEMENT_V1, type InTotoStatement } from '../sign/index.ts';
import {
  imageSbom,
  indexSbom,
  readOsPackagesFromLayer,
  serializeSpdx,
  spdxDigest,
  SPDX_PREDICATE_TYPE,
  type OsPackage,
  type SpdxDocument,
} from '../sbom/index.ts';
import { attachArtifact, attest, subjectOf, type Subject } from './attach.ts';
import type { RegistryClient } from '../registry/index.ts';
import type { BuildDocument, Registries, Signing, StepIo } from './context.ts';

export const APP_SBOM_PATH = 'app/sbom.spdx.json';

export interface SbomStepOptions {
  readonly images: BuildDocument;
  readonly registries: Registries;
  readonly signing: Signing;
  /** SOURCE_DATE_EPOCH (seconds): the documents' creation time, so they are reproducible. */
  readonly sourceDateEpoch: number;
  readonly toolVersion: string;
  /** Strings that must appear in no document (registry password, key password). */
  readonly secrets?: readonly string[];
  /** Also write every document to `<outDir>/<service>/…spdx.json`. */
  readonly outDir?: string;
  /**
   * A file keeping, across runs, the OS packages read out of each base layer (by layer digest:
   * content-addressed, so always the same answer; the entries also name the reader's code),
   * so that a run reads each base layer once, ever, rather than once per run. `release` keeps
   * it in <out>/app/.stella-cache/layers.json.
   */
  readonly layerCache?: string;
}

export interface SbomResult {
  readonly service: string;
  readonly index: { readonly digest: string; readonly sbomDigest: string };
  readonly platforms: Record<string, { readonly digest: string; readonly sbomDigest: string; readonly packages: number }>;
}

/** Statement over one subject carrying an SPDX document. */
export function spdxStatement(repository: string, digest: string, doc: SpdxDocument): InTotoStatement {
  return { _type: IN_TOTO_STATEMENT_V1, subject: [{ name: repository, digest: { sha256: digestHex(digest) } }], predicateType: SPDX_PREDICATE_TYPE, predicate: doc };
}

function json<T>(bytes: Uint8Array): T {
  return JSON.parse(new TextDecoder().decode(bytes)) as T;
}

interface ImageConfig {
  readonly config?: { readonly Env?: readonly string[]; readonly Labels?: Readonly<Record<string, string>> };
}

async function nodeVersionOf(config: ImageConfig, source: string): Promise<string> {
  const env = config.config?.Env?.find((e) => e.startsWith('NODE_VERSION='));
  if (env) return env.slice('NODE_VERSION='.length).replace(/^v/, '');
  const label = config.config?.Labels?.['dev.stellaops.base.node'];
  if (label) return label.slice(label.lastIndexOf('@') + 1).replace(/^v/, '');
  // An upstream base that does not say: the version this repository pins for it.
  return readNodePin(join(source, 'package.json'));
}

/**
 * Blob reads by digest for one run, each fetched once: the bytes go to a temp
 * dir (bounded by disk, not memory) and are read back from there. Content is
 * addressed by digest and verified by the client on fetch, so a blob fetched
 * from one repository serves every repository that references it.
 */
class BlobCache {
  readonly #dir: Promise<string>;
  readonly #pending = new Map<string, Promise<string>>();

  constructor() {
    this.#dir = mkdtemp(join(tmpdir(), 'stella-sbom-blobs-'));
  }

  async get(client: RegistryClient, repo: string, digest: string): Promise<Uint8Array> {
    let path = this.#pending.get(digest);
    if (!path) {
      path = (async () => {
        const file = join(await this.#dir, digestHex(digest));
        const bytes = await client.getBlob(repo, digest);
        await writeFile(`${file}.part`, bytes);
        await rename(`${file}.part`, file);
        return file;
      })();
      this.#pending.set(digest, path);
      path.catch(() => this.#pending.delete(digest));
    }
    return new Uint8Array(await readFile(await path));
  }

  async dispose(): Promise<void> {
    await rm(await this.#dir, { recursive: true, force: true });
  }
}

export async function sbomStep(o: SbomStepOptions, io: StepIo & { readonly source: string }): Promise<SbomResult[]> {
  const blobs = new BlobCache();
  try {
    return await sbomSteps(o, io, blobs);
  } finally {
    await blobs.dispose();
  }
}

/** The reader's version for layers.json: the code that turns a layer into OS packages. */
function readerDigest(): string {
  const dir = join(import.meta.dirname, '..', 'sbom');
  const h = createHash('sha256');
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.ts')).sort()) h.update(`${f}\0`).update(readFileSync(join(dir, f)));
  h.update(readFileSync(join(import.meta.dirname, '..', 'oci', 'tar.ts')));
  return h.digest('hex');
}

type LayerFacts = { pkgs: OsPackage[]; app: Uint8Array | undefined };

/** The persisted facts of layers without an application SBOM (the base layers every image shares). */
async function loadLayerFacts(file: string | undefined, reader: string): Promise<Map<string, LayerFacts>> {
  const m = new Map<string, LayerFacts>();
  if (!file) return m;
  try {
    const doc = JSON.parse(await readFile(file, 'utf8')) as { reader?: string; layers?: Record<string, OsPackage[]> };
    if (doc.reader === reader && doc.layers) for (const [d, pkgs] of Object.entries(doc.layers)) if (Array.isArray(pkgs)) m.set(d, { pkgs, app: undefined });
  } catch {
    // none yet: every layer is read
  }
  return m;
}

async function saveLayerFacts(file: string, reader: string, facts: ReadonlyMap<string, LayerFacts>): Promise<void> {
  const layers = Object.fromEntries([...facts].filter(([, f]) => f.app === undefined).sort(([a], [b]) => (a < b ? -1 : 1)).map(([d, f]) => [d, f.pkgs]));
  await mkdir(dirname(file), { recursive: true });
  await writeFile(`${file}.tmp`, `${JSON.stringify({ reader, layers })}\n`);
  await rename(`${file}.tmp`, file);
}

async function sbomSteps(o: SbomStepOptions, io: StepIo & { readonly source: string }, blobs: BlobCache): Promise<SbomResult[]> {
  /** What each layer holds, by digest: its OS packages and, if any, the app SBOM. */
  const reader = o.layerCache ? readerDigest() : '';
  const layerCache = await loadLayerFacts(o.layerCache, reader);
  const known = layerCache.size;
  const results: SbomResult[] = [];
  for (const image of o.images.images) {
    const { client, repo } = o.registries.forRepository(image.repository);
    const index = await subjectOf(client, repo, image.digest, `${image.repository}@${image.digest}`);
    const indexManifest = json<ImageIndex>((await client.getManifest(repo, image.digest)).bytes);
    const platforms: SbomResult['platforms'] = {};
    const perPlatform: { platform: string; manifestDigest: string; sbom: SpdxDocument }[] = [];
    for (const d of indexManifest.manifests) {
      if (!d.platform) continue;
      const platform = platformName(d.platform);
      const manifest = json<ImageManifest>((await client.getManifest(repo, d.digest)).bytes);
      const config = json<ImageConfig>(await blobs.get(client, repo, manifest.config.digest));
      const osPackages: OsPackage[] = [];
      let app: SpdxDocument | undefined;
      for (const layer of manifest.layers) {
        let read = layerCache.get(layer.digest);
        if (!read) {
          const blob = await blobs.get(client, repo, layer.digest);
          read = { pkgs: await readOsPackagesFromLayer(blob, `layer ${layer.digest} of ${image.repository}`), app: await readLayerFile(blob, APP_SBOM_PATH) };
          layerCache.set(layer.digest, read);
        }
        osPackages.push(...read.pkgs);
        // The last layer carrying the file wins, as in the image's filesystem.
        if (read.app) app = json<SpdxDocument>(read.app);
      }
      if (!app) {
        throw new StellaError('SBOM_INVALID', `${image.repository}@${d.digest} (${platform}): the image carries no /${APP_SBOM_PATH}; expected the application SBOM baked in by the build`);
      }
      const doc = imageSbom({
        service: image.service,
        repository: image.repository,
        platform,
        manifestDigest: d.digest,
        osPackages,
        node: { version: await nodeVersionOf(config, io.source) },
        appSbom: app,
        created: o.sourceDateEpoch,
        toolVersion: o.toolVersion,
        secrets: o.secrets,
      });
      const subject: Subject = { client, repo, name: `${image.repository}@${d.digest}`, descriptor: { mediaType: d.mediaType, digest: d.digest, size: d.size } };
      await attachSbom(subject, image.repository, doc, o.signing);
      perPlatform.push({ platform, manifestDigest: d.digest, sbom: doc });
      platforms[platform] = { digest: d.digest, sbomDigest: spdxDigest(doc), packages: doc.packages.length };
      await writeOut(o.outDir, image.service, `${image.service}-${platform.replace('/', '-')}.spdx.json`, doc);
      io.progress(`${image.service} ${platform}: SBOM with ${doc.packages.length} packages attached to ${d.digest.slice(0, 19)}`);
    }
    const idxDoc = indexSbom({ service: image.service, repository: image.repository, indexDigest: image.digest, platforms: perPlatform, created: o.sourceDateEpoch, toolVersion: o.toolVersion, secrets: o.secrets });
    await attachSbom(index, image.repository, idxDoc, o.signing);
    await writeOut(o.outDir, image.service, `${image.service}-index.spdx.json`, idxDoc);
    io.progress(`${image.service}: index SBOM attached to ${image.digest.slice(0, 19)}`);
    results.push({ service: image.service, index: { digest: image.digest, sbomDigest: spdxDigest(idxDoc) }, platforms });
  }
  if (o.layerCache && [...layerCache.values()].filter((f) => f.app === undefined).length !== known) await saveLayerFacts(o.layerCache, reader, layerCache);
  return results;
}

async function attachSbom(s: Subject, repository: string, doc: SpdxDocument, signing: Signing): Promise<void> {
  await attest(s, spdxStatement(repository, s.descriptor.digest, doc), signing);
  await attachArtifact(s, MediaType.spdxJson, { bytes: serializeSpdx(doc), mediaType: MediaType.spdxJson, title: 'sbom.spdx.json' });
}

async function writeOut(outDir: string | undefined, service: string, file: string, doc: SpdxDocument): Promise<void> {
  if (!outDir) return;
  await mkdir(join(outDir, service), { recursive: true });
  await writeFile(join(outDir, service, file), serializeSpdx(doc));
}
