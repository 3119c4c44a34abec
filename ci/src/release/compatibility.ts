/**
 * The release's compatibility matrix (seed §9, "maintain compatibility matrix per chart
 * version"): one row per chart version — the image digests it pins, the Kubernetes versions it
 * supports (the chart's `kubeVersion`) and the Docker and Compose versions the quickstart needs
 * (`quickstart.sh`'s pre-flight minimums), with the smoke tests that passed for those digests.
 *
 *   <out>/compatibility.json   this release's row (on the release page, in checksums.txt)
 *   image-catalog.md           the same row as a table (./catalog-doc.ts)
 *
 * Every value is read from the file that enforces it, so the matrix cannot claim what the
 * chart or the quickstart would refuse: Helm refuses a cluster outside `kubeVersion`, and
 * quickstart.sh refuses an engine below its minimums. Rows of several releases are the
 * `compatibility.json` files of their release pages, side by side (`compatibilityTable`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { StellaError } from '../errors.ts';
import { table } from '../generate/regions.ts';

export const COMPATIBILITY_FILE = 'compatibility.json';
const CHART_YAML = 'deploy/helm/stella/Chart.yaml';
const QUICKSTART = 'deploy/compose/quickstart.sh';

export interface CompatibilityRow {
  readonly release: string;
  /** The chart version and its OCI digest; absent when the release published no chart. */
  readonly chart?: { readonly version: string; readonly digest: string };
  /** service → index digest (what the chart and the compose file pin). */
  readonly images: Readonly<Record<string, string>>;
  /** support image name → index digest. */
  readonly supportImages: Readonly<Record<string, string>>;
  /** The chart's kubeVersion constraint (Helm refuses clusters outside it); absent without a chart in the checkout. */
  readonly kubernetes?: string;
  /** quickstart.sh's pre-flight minimums (it refuses older engines); absent without the quickstart. */
  readonly docker?: string;
  readonly compose?: string;
  /** Smoke tests that passed for exactly these digests. */
  readonly smokeTested: readonly string[];
}

/**
 * What the chart and the quickstart of this checkout support. A checkout without the chart (or
 * the quickstart) states nothing for it; one whose file lacks the constraint is an error.
 */
export function supportedVersions(source: string): { kubernetes?: string; docker?: string; compose?: string } {
  const out: { kubernetes?: string; docker?: string; compose?: string } = {};
  if (existsSync(join(source, CHART_YAML))) {
    const chart = parse(readFileSync(join(source, CHART_YAML), 'utf8')) as { kubeVersion?: unknown };
    if (typeof chart?.kubeVersion !== 'string' || !chart.kubeVersion.trim()) throw new StellaError('INVALID_ARGUMENT', `${CHART_YAML}: no kubeVersion (the compatibility matrix states the Kubernetes versions the chart supports)`);
    out.kubernetes = chart.kubeVersion.trim();
  }
  if (existsSync(join(source, QUICKSTART))) {
    const qs = readFileSync(join(source, QUICKSTART), 'utf8');
    const min = (name: string) => {
      const m = new RegExp(`^${name}=([0-9][0-9.]*)$`, 'm').exec(qs);
      if (!m) throw new StellaError('INVALID_ARGUMENT', `${QUICKSTART}: no ${name}=<version> (the compatibility matrix states the quickstart's minimum)`);
      return `>=${m[1]}`;
    };
    out.docker = min('MIN_DOCKER');
    out.compose = min('MIN_COMPOSE');
  }
  return out;
}

export function compatibilityRow(
  source: string,
  r: {
    readonly version: string;
    readonly chart?: { readonly version: string; readonly digest: string };
    readonly images: readonly { readonly service: string; readonly digest: string }[];
    readonly supportImages?: readonly { readonly name: string; readonly digest: string }[];
    readonly smoke?: readonly { readonly smoke: string; readonly passed: boolean; readonly images: readonly { readonly service: string; readonly digest: string }[] }[];
  },
): CompatibilityRow {
  const images = Object.fromEntries(r.images.map((i) => [i.service, i.digest]));
  const forThese = (s: NonNullable<typeof r.smoke>[number]) => s.passed && s.images.length === r.images.length && s.images.every((i) => images[i.service] === i.digest);
  return {
    release: r.version,
    ...(r.chart ? { chart: { version: r.chart.version, digest: r.chart.digest } } : {}),
    images,
    supportImages: Object.fromEntries((r.supportImages ?? []).map((i) => [i.name, i.digest])),
    ...supportedVersions(source),
    smokeTested: (r.smoke ?? []).filter(forThese).map((s) => s.smoke),
  };
}

const short = (d: string) => `\`${d.slice(0, 19)}…\``;
const code = (v: string | undefined) => (v ? `\`${v}\`` : '(not in this checkout)');

/** Rows (one per chart version, newest first as given) as a Markdown table. */
export function compatibilityTable(rows: readonly CompatibilityRow[]): string {
  return table(
    ['chart', 'release', 'Kubernetes', 'Docker', 'Compose', 'images (index digests)', 'smoke-tested'],
    rows.map((x) => [
      x.chart ? `${x.chart.version} (${short(x.chart.digest)})` : '(no chart)',
      x.release,
      code(x.kubernetes),
      code(x.docker),
      code(x.compose),
      [...Object.entries(x.images), ...Object.entries(x.supportImages)].map(([n, d]) => `${n} ${short(d)}`).join('<br>'),
      x.smokeTested.length ? x.smokeTested.join(', ') : 'none recorded',
    ]),
  );
}
