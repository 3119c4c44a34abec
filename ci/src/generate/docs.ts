/**
 * Documentation tables generated from the catalog. Each entry names a file
 * and a region in it; `generate` rewrites the regions, `generate --check`
 * (and a test) fails when a committed file differs.
 */
import { catalog, configFor, type Catalog, type ConfigKey } from '../catalog/index.ts';
import { PLATFORMS } from '../oci/types.ts';
import { table } from './regions.ts';

export interface RegionTarget {
  readonly file: string;
  readonly region: string;
  render(c: Catalog): string;
}

function portsTable(c: Catalog): string {
  const rows: (string | number)[][] = [];
  for (const s of c.services) {
    rows.push([`stella-${s.name}`, s.title, `${s.http.port}/tcp`, s.publishedPort ? `127.0.0.1:${s.publishedPort}` : '—', s.role === 'http' ? 'API/UI, health, metrics' : 'health, metrics']);
  }
  for (const s of c.support) {
    rows.push([s.name, s.title, s.ports.map((p) => `${p.port}/tcp (${p.name})`).join(', '), s.publishedPort ? `127.0.0.1:${s.publishedPort}` : '—', s.description]);
  }
  return table(['component', 'what', 'container ports', 'quickstart host port', 'serves'], rows);
}

/** The image catalog without digests; a release fills them (see `imageCatalogWithDigests`). */
function imageTable(c: Catalog): string {
  return table(
    ['image', 'service', 'role', 'port', 'architectures', 'enabled by default'],
    c.services.map((s) => [s.image, s.title, s.role, s.http.port, PLATFORMS.join(', '), s.enabledByDefault ? 'yes' : 'no (opt-in)']),
  );
}

function fmtDefault(k: ConfigKey): string {
  if (k.secret) return '(secret, no default)';
  if (k.default === undefined) return '(unset)';
  if (k.default === '') return '(empty)';
  return `\`${String(k.default)}\``;
}

function fmtType(k: ConfigKey): string {
  if (k.type === 'enum') return `enum: ${k.choices?.join(', ')}`;
  if (k.type === 'integer' && (k.min !== undefined || k.max !== undefined)) return `integer ${k.min ?? ''}–${k.max ?? ''}`;
  return k.type;
}

/** The configuration matrix (seed §3.5): one row per key, with the services that read it. */
function configTable(c: Catalog): string {
  const byKey = new Map<string, { key: ConfigKey; services: string[] }>();
  for (const s of c.services) {
    for (const k of configFor(s, c)) {
      const e = byKey.get(k.key);
      if (e) e.services.push(s.name);
      else byKey.set(k.key, { key: k, services: [s.name] });
    }
  }
  const all = c.services.length;
  const rows = [...byKey.values()]
    .sort((a, b) => a.key.group.localeCompare(b.key.group) || a.key.key.localeCompare(b.key.key))
    .map(({ key: k, services }) => [
      k.group,
      `\`${k.key}\``,
      fmtType(k),
      k.key === 'STELLA_HTTP_PORT' ? 'the service port' : fmtDefault(k),
      k.secret ? 'yes' : 'no',
      services.length === all ? 'all' : services.join(', '),
      k.description + (k.locked ? ' **Locked.**' : ''),
    ]);
  return table(['group', 'key', 'type', 'default', 'secret', 'services', 'description'], rows);
}

export const docTargets: readonly RegionTarget[] = [
  { file: 'docs/install/overview.md', region: 'ports', render: portsTable },
  { file: 'docs/release/image-catalog.md', region: 'images', render: imageTable },
  { file: 'docs/install/configuration-reference.md', region: 'config', render: configTable },
];

export { catalog };
