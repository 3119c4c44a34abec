/**
 * The release's summary files in dist/, for release pages and GitHub attestations:
 *
 *   digests.txt                  GoReleaser's docker digests file: one `<hex> <image>` line per
 *                                published image index (and the chart, and the support images),
 *                                sorted by name; the digest without its `sha256:` prefix, as
 *                                GitHub's attest actions (`subject-checksums`) expect it
 *   checksums.txt                `<sha256 hex>  <path>` (sha256sum's format, `sha256sum -c`
 *                                checks it) of every file a release page carries, sorted by path
 *   checksums.txt.sigstore.json  a Sigstore bundle (message signature) over checksums.txt, made
 *                                as `cosign sign-blob --bundle` makes it; with a key, the same
 *                                file signed twice gives the same bundle
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { signBlob, verifyBlob, type BundleTrust, type StatementSigner } from '../sign/index.ts';

export const DIGESTS_FILE = 'digests.txt';
export const CHECKSUMS_FILE = 'checksums.txt';
export const CHECKSUMS_BUNDLE = 'checksums.txt.sigstore.json';
/** The latest run's own steps and tag actions (release.json keeps those of the run that made the release); not on the release page. */
export const LAST_RUN_FILE = 'last-run.json';

export interface DigestEntry {
  /** `registry/namespace/name`, without tag. */
  readonly name: string;
  /** `sha256:<64 hex>`. */
  readonly digest: string;
}

/** GoReleaser's digests.txt: `<hex> <name>\n`, sorted by name. */
export function formatDigests(entries: readonly DigestEntry[]): string {
  return [...entries]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((e) => `${e.digest.slice(e.digest.indexOf(':') + 1)} ${e.name}\n`)
    .join('');
}

/**
 * What a release page carries, relative to <out>: the records at the top (release.json,
 * build.json, digests.txt, plan and catalog docs), SBOMs, provenance, the chart package, the
 * bundle archive, and the public half of the key with the trusted root. Never the private key,
 * build contexts (app/), the base layout, last-run.json, or checksums.txt and its own bundle.
 */
export function releaseFiles(out: string): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const rel = relative(out, p).split(sep).join('/');
      if (statSync(p).isDirectory()) {
        if (['app', 'base-layout', 'keys', 'smoke-work'].includes(rel)) continue;
        walk(p);
      } else if (rel !== CHECKSUMS_FILE && rel !== CHECKSUMS_BUNDLE && rel !== LAST_RUN_FILE && !rel.endsWith('.key')) {
        files.push(rel);
      }
    }
  };
  if (existsSync(out)) walk(out);
  for (const k of ['keys/cosign.pub', 'keys/trusted_root.json']) if (existsSync(join(out, k))) files.push(k);
  return files.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

export async function sha256Hex(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

export async function formatChecksums(out: string, files: readonly string[]): Promise<string> {
  const lines: string[] = [];
  for (const f of files) lines.push(`${await sha256Hex(join(out, f))}  ${f}\n`);
  return lines.join('');
}

export interface WrittenOutputs {
  readonly digests: string;
  readonly checksums: string;
  readonly bundle: string;
  readonly files: number;
  /** False when checksums.txt was unchanged and its existing bundle verified (nothing re-signed). */
  readonly resigned: boolean;
}

/** Writes digests.txt, then checksums.txt over every release file, then its signed bundle (verified before returning). */
export async function writeReleaseOutputs(o: { out: string; digests: readonly DigestEntry[]; signer: StatementSigner; trust: BundleTrust }): Promise<WrittenOutputs> {
  const digests = join(o.out, DIGESTS_FILE);
  await writeFile(digests, formatDigests(o.digests));
  const files = releaseFiles(o.out);
  const text = await formatChecksums(o.out, files);
  const checksums = join(o.out, CHECKSUMS_FILE);
  const bundlePath = join(o.out, CHECKSUMS_BUNDLE);
  const data = Buffer.from(text);
  // A re-run with nothing changed keeps the signed bundle it has (keyless: no new Rekor entry).
  if (existsSync(checksums) && existsSync(bundlePath) && (await readFile(checksums, 'utf8')) === text) {
    try {
      verifyBlob(await readFile(bundlePath, 'utf8'), data, o.trust, CHECKSUMS_FILE);
      return { digests, checksums, bundle: bundlePath, files: files.length, resigned: false };
    } catch {
      // not verifiable under this release's trust: sign anew
    }
  }
  await writeFile(checksums, text);
  const bundle = await signBlob(data, o.signer, CHECKSUMS_FILE);
  const bundleText = `${JSON.stringify(bundle)}\n`;
  verifyBlob(bundleText, data, o.trust, CHECKSUMS_FILE);
  await writeFile(bundlePath, bundleText);
  return { digests, checksums, bundle: bundlePath, files: files.length, resigned: true };
}
