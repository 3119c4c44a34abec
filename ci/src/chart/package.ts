/**
 * Packaging the chart deterministically: the same inputs give a byte-identical `.tgz`.
 *
 * The archive is written here rather than by `helm package` so that nothing of the host
 * leaks into it: entries `stella/<path>` in byte order of their paths, files only (as
 * `helm package` writes them), mode 0644, uid/gid 0 with empty owner names, every mtime the
 * release's SOURCE_DATE_EPOCH, ustar headers, gzip with no name and mtime 0. The files are
 * the chart directory on disk with the generated ones (Chart.yaml, values.yaml, …) rendered
 * with the release's pins (./render.ts): the packaged values carry every image digest.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { gzipSync } from 'node:zlib';
import { StellaError } from '../errors.ts';
import { sha256Digest } from '../oci/types.ts';
import { CHART_DIR, CHART_NAME } from './model.ts';
import { chartFiles, type ChartPins } from './render.ts';

export interface PackagedChart {
  /** `stella-<version>.tgz` */
  readonly fileName: string;
  readonly bytes: Uint8Array;
  readonly digest: string;
  /** Paths inside the archive, in order. */
  readonly entries: readonly string[];
  /** The packaged values.yaml and Chart.yaml (what the OCI config is made from). */
  readonly valuesYaml: string;
  readonly chartYaml: string;
}

/** Files `helm package` would leave out (.helmignore of the chart, plus editor leftovers). */
const IGNORED = [/(^|\/)\.git(\/|$)/, /\.orig$/, /\.tmp$/, /~$/, /^\.helmignore$/];

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walkDir = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walkDir(p);
      else if (e.isFile()) out.push(relative(dir, p).split(sep).join('/'));
      else throw new StellaError('UNSAFE_PATH', `chart: ${p} is neither a file nor a directory (symlinks are not packaged)`);
    }
  };
  walkDir(dir);
  return out;
}

/** The chart's files: on disk, with the generated ones rendered for `pins`. Keys relative to the chart directory. */
export function chartContent(source: string, pins?: ChartPins): Map<string, Uint8Array> {
  const dir = join(source, CHART_DIR);
  try {
    statSync(join(dir, 'templates'));
  } catch {
    throw new StellaError('NOT_FOUND', `chart: ${dir}/templates is missing (expected the checkout's ${CHART_DIR})`);
  }
  const files = new Map<string, Uint8Array>();
  for (const rel of listFiles(dir)) {
    if (IGNORED.some((r) => r.test(rel))) continue;
    files.set(rel, readFileSync(join(dir, rel)));
  }
  for (const f of chartFiles(pins)) files.set(f.path.slice(CHART_DIR.length + 1), new TextEncoder().encode(f.content));
  return files;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

/** One ustar header block for a regular file. */
function ustarHeader(path: string, size: number, mtime: number): Uint8Array {
  const h = new Uint8Array(512);
  const enc = new TextEncoder();
  let name = path;
  let prefix = '';
  if (enc.encode(name).byteLength > 100) {
    const cut = path.lastIndexOf('/', path.length - 1);
    prefix = path.slice(0, cut);
    name = path.slice(cut + 1);
    if (cut < 0 || enc.encode(name).byteLength > 100 || enc.encode(prefix).byteLength > 155) throw new StellaError('INVALID_ARGUMENT', `chart: path ${path} is too long for a ustar header`);
  }
  const put = (off: number, text: string) => h.set(enc.encode(text), off);
  put(0, name);
  put(100, octal(0o644, 8));
  put(108, octal(0, 8));
  put(116, octal(0, 8));
  put(124, octal(size, 12));
  put(136, octal(mtime, 12));
  put(148, '        ');
  put(156, '0');
  put(257, 'ustar\0');
  put(263, '00');
  put(345, prefix);
  let sum = 0;
  for (const b of h) sum += b;
  put(148, sum.toString(8).padStart(6, '0') + '\0 ');
  return h;
}

/** A deterministic tar of `files` under `<root>/`, in byte order of the paths. */
export function deterministicTar(root: string, files: ReadonlyMap<string, Uint8Array>, mtime: number): { tar: Uint8Array; entries: string[] } {
  const names = [...files.keys()].sort((a, b) => (Buffer.compare(Buffer.from(a), Buffer.from(b))));
  const parts: Uint8Array[] = [];
  const entries: string[] = [];
  for (const rel of names) {
    const data = files.get(rel)!;
    const path = `${root}/${rel}`;
    entries.push(path);
    parts.push(ustarHeader(path, data.byteLength, mtime), data);
    const pad = (512 - (data.byteLength % 512)) % 512;
    if (pad) parts.push(new Uint8Array(pad));
  }
  parts.push(new Uint8Array(1024));
  return { tar: Buffer.concat(parts), entries };
}

export interface PackageOptions {
  /** The repository checkout (its deploy/helm/stella/). */
  readonly source: string;
  readonly pins: ChartPins;
  /** Every entry's mtime: the release's SOURCE_DATE_EPOCH. */
  readonly sourceDateEpoch: number;
}

export function packageChart(o: PackageOptions): PackagedChart {
  if (!Number.isInteger(o.sourceDateEpoch) || o.sourceDateEpoch < 0) {
    throw new StellaError('INVALID_ARGUMENT', `chart: sourceDateEpoch ${o.sourceDateEpoch} is not whole seconds since 1970`);
  }
  const files = chartContent(o.source, o.pins);
  const { tar, entries } = deterministicTar(CHART_NAME, files, o.sourceDateEpoch);
  // gzip header: no file name, mtime 0, the same OS byte everywhere Node runs on Linux.
  const bytes = new Uint8Array(gzipSync(tar, { level: 9 }));
  const text = (p: string) => new TextDecoder().decode(files.get(p)!);
  return { fileName: `${CHART_NAME}-${o.pins.version}.tgz`, bytes, digest: sha256Digest(bytes), entries, valuesYaml: text('values.yaml'), chartYaml: text('Chart.yaml') };
}
