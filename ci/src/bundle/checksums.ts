/**
 * checksums.txt: one `sha256sum` line per file (`<64 hex>  <path>`), sorted by path, so that
 * an operator can also check it with `sha256sum -c checksums.txt`.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { StellaError } from '../errors.ts';
import { unsafePath } from './archive.ts';

export interface Checksum {
  readonly path: string;
  /** 64 hex digits. */
  readonly sha256: string;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export function formatChecksums(sums: readonly Checksum[]): string {
  return [...sums]
    .sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)))
    .map((s) => `${s.sha256}  ${s.path}\n`)
    .join('');
}

/** Parses checksums.txt strictly: every line `<64 hex>  <safe path>`, each path once. */
export function parseChecksums(text: string, where = 'checksums.txt'): Checksum[] {
  if (text.length > 0 && !text.endsWith('\n')) throw new StellaError('BUNDLE_INVALID', `${where}: does not end with a newline (truncated?)`);
  const out: Checksum[] = [];
  const seen = new Set<string>();
  text.split('\n').slice(0, -1).forEach((line, i) => {
    const m = /^([0-9a-f]{64}) {2}(.+)$/.exec(line);
    if (!m) throw new StellaError('BUNDLE_INVALID', `${where}:${i + 1}: not "<sha256>  <path>": ${JSON.stringify(line.slice(0, 120))}`);
    const path = m[2]!;
    const why = unsafePath(path);
    if (why) throw new StellaError('BUNDLE_INVALID', `${where}:${i + 1}: ${JSON.stringify(path)}: ${why}`);
    if (seen.has(path)) throw new StellaError('BUNDLE_INVALID', `${where}:${i + 1}: ${path} is listed twice`);
    seen.add(path);
    out.push({ path, sha256: m[1]! });
  });
  return out;
}
