/**
 * The release's attestation cache: per image, the referrers it had once its SBOMs, signatures
 * and provenance were attached and verified, recorded under a key over everything they are
 * made from and the trust they were verified under.
 *
 *   <out>/app/.stella-cache/attested.json   { "version": 1, "images": { "<service>": AttestedEntry } }
 *
 * (beside the build's input cache, <out>/app/.stella-cache/build.json: ci/src/build/cache.ts).
 * Both live under <out>/app (the build context, never on a release page). `--no-cache`
 * bypasses both; deleting the folder empties them.
 *
 * On a re-run, an image is *confirmed* — and sbom, sign, provenance and verify skip it — when
 *   - its entry has the same image digest and the same key (the SPDX inputs: repository,
 *     source date, tool version, Node pin; the provenance without its run metadata; the signing
 *     kind and trust; the code that makes and checks these documents), and
 *   - the registry still lists every recorded referrer of the index and of each platform
 *     manifest, by digest (one referrers request per subject), and the legacy `.sig` tag still
 *     resolves to the recorded manifest (one HEAD), and
 *   - the SBOM and provenance files the release page carries (<out>/sbom/<service>/,
 *     <out>/provenance/<service>/) are the recorded bytes.
 * A referrer digest names its manifest, whose layers name the signed bundle by digest: the same
 * digests are the same documents, which verified under this trust when recorded. So the digest
 * check is the verification, and nothing is re-signed, re-uploaded or re-verified.
 *
 * Anything else (a new key or identity, another version or commit, changed code, a referrer or
 * file gone) is a miss: the steps run for that image as on a first run (they are idempotent:
 * an attestation that already verifies with the same content is not pushed again), verify
 * checks it fully, and the entry is recorded anew. Entries are written only after verify.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readServiceEntries, writeServiceEntries } from '../build/cache.ts';
import { isDigest } from '../oci/types.ts';
import { legacySignatureTag, type BundleTrust } from '../sign/index.ts';
import type { BuiltImage, Registries } from './context.ts';

export const ATTESTATION_CACHE_VERSION = 1;
/** The release's caches, relative to <out>. */
export const RELEASE_CACHE_DIR = 'app/.stella-cache';
export const BUILD_CACHE_FILE = `${RELEASE_CACHE_DIR}/build.json`;
export const ATTESTED_CACHE_FILE = `${RELEASE_CACHE_DIR}/attested.json`;
/** The OS packages read out of each base layer, by layer digest (./sbom.ts `layerCache`). */
export const LAYERS_CACHE_FILE = `${RELEASE_CACHE_DIR}/layers.json`;

export interface AttestedEntry {
  /** The image index the referrers belong to. */
  readonly digest: string;
  readonly key: string;
  /** Subject digest (the index, each platform manifest) → the referrer digests it had, sorted. */
  readonly referrers: Readonly<Record<string, readonly string[]>>;
  /** The digest of the legacy `sha256-<hex>.sig` manifest (key signing). */
  readonly legacy?: string;
  /** Release-page files of this image (relative to <out>) → sha256 hex. */
  readonly files: Readonly<Record<string, string>>;
}

const sha256 = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');

/** The code whose output or checks the entries stand for: a change there re-attests and re-verifies. */
const CODE_DIRS = ['sbom', 'sign', 'provenance'];
const CODE_FILES = ['release/attach.ts', 'release/sbom.ts', 'release/signatures.ts', 'release/provenance.ts', 'release/verify.ts', 'release/cache.ts', 'registry/referrers.ts'];
let codeDigestMemo: string | undefined;
function codeDigest(): string {
  if (codeDigestMemo) return codeDigestMemo;
  const ci = join(import.meta.dirname, '..');
  const files = [...CODE_DIRS.flatMap((d) => readdirSync(join(ci, d)).filter((f) => f.endsWith('.ts')).map((f) => `${d}/${f}`)), ...CODE_FILES].sort();
  const h = createHash('sha256');
  for (const f of files) h.update(`${f}\0${existsSync(join(ci, f)) ? sha256(readFileSync(join(ci, f))) : 'absent'}\n`);
  return (codeDigestMemo = h.digest('hex'));
}

export interface AttestationInputs {
  readonly image: BuiltImage;
  /** Whom verification trusts (the public key, or the keyless identity and trusted root). */
  readonly trust: BundleTrust | undefined;
  readonly signer: 'key' | 'keyless';
  /** The legacy `.sig` signature is written and required (key signing). */
  readonly legacy: boolean;
  /** What the SPDX documents are made from besides the image: the source date, the tool version, the Node pin. */
  readonly sbom: Readonly<Record<string, unknown>>;
  /** The provenance statement without its run metadata (what makes two runs' provenance the same). */
  readonly provenance: unknown;
}

/** The key of an image's attestations (see the header). */
export function attestationKey(i: AttestationInputs): string {
  return sha256(JSON.stringify({ v: ATTESTATION_CACHE_VERSION, code: codeDigest(), image: i.image, trust: sha256(JSON.stringify(i.trust ?? null)), signer: i.signer, legacy: i.legacy, sbom: i.sbom, provenance: i.provenance }));
}

/** The files the release page carries for a service: its SBOMs and its provenance. */
function serviceFiles(out: string, service: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const dir of [`sbom/${service}`, `provenance/${service}`]) {
    const abs = join(out, dir);
    if (!existsSync(abs)) continue;
    for (const f of readdirSync(abs).sort()) if (statSync(join(abs, f)).isFile()) files[`${dir}/${f}`] = sha256(readFileSync(join(abs, f)));
  }
  return files;
}

async function referrerDigests(registries: Registries, image: BuiltImage): Promise<Record<string, string[]>> {
  const { client, repo } = registries.forRepository(image.repository);
  const subjects = [image.digest, ...Object.values(image.platforms)];
  const lists = await Promise.all(subjects.map((d) => client.referrers(repo, d)));
  return Object.fromEntries(subjects.map((d, i) => [d, lists[i]!.map((r) => r.digest).sort()]));
}

function validEntry(e: unknown): e is AttestedEntry {
  if (typeof e !== 'object' || e === null) return false;
  const o = e as Record<string, unknown>;
  return isDigest(o.digest) && typeof o.key === 'string' && typeof o.referrers === 'object' && o.referrers !== null && typeof o.files === 'object' && o.files !== null && (o.legacy === undefined || isDigest(o.legacy));
}

/** `confirm`'s answer for an image no earlier run recorded (a first release: nothing to say about it). */
export const NOT_RECORDED = 'not attested by an earlier run';

export class AttestationCache {
  readonly file: string;
  /** False with `--no-cache`: nothing is confirmed from the file (everything is attested and verified), entries are recorded anew. */
  readonly reading: boolean;
  readonly #entries: Map<string, AttestedEntry>;

  private constructor(file: string, reading: boolean, entries: Map<string, AttestedEntry>) {
    this.file = file;
    this.reading = reading;
    this.#entries = entries;
  }

  static async open(file: string, o: { read?: boolean } = {}): Promise<AttestationCache> {
    return new AttestationCache(file, o.read !== false, await readServiceEntries(file, ATTESTATION_CACHE_VERSION, validEntry));
  }

  /**
   * Undefined when the image is confirmed (same key, its recorded referrers and files still
   * there); else why not, in a few words.
   */
  async confirm(image: BuiltImage, key: string, o: { registries: Registries; out: string; legacy: boolean }): Promise<string | undefined> {
    if (!this.reading) return 'cache bypassed (--no-cache)';
    const e = this.#entries.get(image.service);
    if (!e) return NOT_RECORDED;
    if (e.digest !== image.digest) return 'a new image digest';
    if (e.key !== key) return 'other attestation inputs (version, commit, key or identity, or code)';
    for (const [f, h] of Object.entries(e.files)) {
      const abs = join(o.out, f);
      if (!existsSync(abs) || sha256(readFileSync(abs)) !== h) return `${f} changed or missing`;
    }
    const subjects = [image.digest, ...Object.values(image.platforms)];
    if (subjects.some((d) => !e.referrers[d])) return 'no referrers recorded for a platform';
    const now = await referrerDigests(o.registries, image);
    for (const d of subjects) {
      const listed = new Set(now[d]);
      const lost = e.referrers[d]!.filter((r) => !listed.has(r));
      if (lost.length) return `${lost.length} referrer(s) of ${d.slice(0, 19)} missing from the registry`;
    }
    if (o.legacy) {
      if (!e.legacy) return 'no legacy signature recorded';
      const { client, repo } = o.registries.forRepository(image.repository);
      if ((await client.resolve(repo, legacySignatureTag(image.digest))) !== e.legacy) return 'the legacy .sig signature changed';
    }
    return undefined;
  }

  /** Records what a verified image has now: its referrers, its legacy signature and its release-page files. */
  async record(image: BuiltImage, key: string, o: { registries: Registries; out: string; legacy: boolean }): Promise<void> {
    const referrers = await referrerDigests(o.registries, image);
    let legacy: string | undefined;
    if (o.legacy) {
      const { client, repo } = o.registries.forRepository(image.repository);
      legacy = await client.resolve(repo, legacySignatureTag(image.digest));
    }
    this.#entries.set(image.service, { digest: image.digest, key, referrers, ...(legacy ? { legacy } : {}), files: serviceFiles(o.out, image.service) });
  }

  /** The referrers recorded for an image (subject digest → referrer digests, sorted), once it verified; else undefined. */
  referrersOf(image: Pick<BuiltImage, 'service' | 'digest'>): Readonly<Record<string, readonly string[]>> | undefined {
    const e = this.#entries.get(image.service);
    return e && e.digest === image.digest ? e.referrers : undefined;
  }

  save(): Promise<void> {
    return writeServiceEntries(this.file, ATTESTATION_CACHE_VERSION, this.#entries);
  }
}
