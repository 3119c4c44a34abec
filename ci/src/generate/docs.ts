/**
 * Documentation tables generated from the catalog. Each entry names a file
 * and a region in it; `generate` rewrites the regions, `generate --check`
 * (and a test) fails when a committed file differs.
 */
import { catalog, configFor, type Catalog, type ConfigKey, type ServiceName } from '../catalog/index.ts';
import { PLATFORMS } from '../oci/types.ts';
import { APP_DIR, HEALTHCHECK, NODE_BIN } from '../build/dockerfiles.ts';
import { table } from './regions.ts';
import { chartKeysTable, chartProbesTable, helmProdValuesTable } from '../chart/render.ts';

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

/**
 * Keys without which a service refuses to start: each service's `validate`
 * (services/src/<service>/main.ts, services/src/shared/aggregator.ts). They are
 * declared here once so the matrix can mark them; test/docs/required-keys.test.ts
 * starts every service without them and fails when this list and the services differ.
 */
export interface StartupRequirement {
  readonly key: string;
  readonly services: readonly ServiceName[];
  /** Only required when these keys have these values (e.g. STELLA_QUICKSTART_MODE=true). */
  readonly when?: Readonly<Record<string, string>>;
  /** The start-up error line the service logs when the key is missing (after `config: `). */
  readonly message: string;
}

export const startupRequirements: readonly StartupRequirement[] = [
  {
    key: 'STELLA_DATABASE_URL',
    services: ['api', 'orchestrator', 'conseiller', 'excitator', 'policy', 'ledger', 'export'],
    message: 'STELLA_DATABASE_URL is required by <service> but is not set',
  },
  {
    key: 'STELLA_ADMIN_PASSWORD',
    services: ['api'],
    when: { STELLA_QUICKSTART_MODE: 'true' },
    message: 'STELLA_ADMIN_PASSWORD is required when STELLA_QUICKSTART_MODE=true',
  },
  {
    key: 'STELLA_AI_MODEL_ENDPOINT',
    services: ['ai'],
    when: { STELLA_AI_ENABLED: 'true' },
    message: 'STELLA_AI_MODEL_ENDPOINT is required when STELLA_AI_ENABLED=true',
  },
];

/** Exit code of a service whose configuration is missing or invalid (services/src/runtime/service.ts). */
export const CONFIG_EXIT_CODE = 2;

function whenText(r: StartupRequirement): string {
  return Object.entries(r.when ?? {}).map(([k, v]) => `${k}=${v}`).join(' and ');
}

function requiredCell(key: string): string {
  const rs = startupRequirements.filter((r) => r.key === key);
  if (!rs.length) return 'no';
  return rs.map((r) => `**yes**${r.when ? ` when ${whenText(r)}` : ''} (${r.services.join(', ')})`).join('; ');
}

/** The required keys and what happens without each. */
function requiredTable(): string {
  return table(
    ['key', 'required by', 'when', 'if it is missing'],
    startupRequirements.map((r) => [
      `\`${r.key}\``,
      r.services.join(', '),
      r.when ? whenText(r) : 'always',
      `start-up stops, exit code ${CONFIG_EXIT_CODE}, one error log line \`config: ${r.message.replace('<service>', r.services.length === 1 ? r.services[0]! : '<service>')} …\``,
    ]),
  );
}

/** The HEALTHCHECK every image declares, as the Dockerfile generator writes it. */
function healthcheckBlock(): string {
  return [
    '```dockerfile',
    `HEALTHCHECK --interval=${HEALTHCHECK.interval} --timeout=${HEALTHCHECK.timeout} --start-period=${HEALTHCHECK.startPeriod} --retries=${HEALTHCHECK.retries} CMD ["${NODE_BIN}", "${APP_DIR}/healthcheck.js"]`,
    '```',
  ].join('\n');
}

/** One sentence: every service's port, and the host ports the quickstart is to publish. */
function servicePortsSentence(c: Catalog): string {
  const ports = [...c.services].sort((a, b) => a.http.port - b.http.port).map((s) => `${s.name} ${s.http.port}`);
  const published = [
    ...c.services.filter((s) => s.publishedPort).map((s) => `${s.name} (${s.publishedPort})`),
    ...c.support.filter((s) => s.publishedPort).map((s) => `${s.name} (${s.publishedPort})`),
  ];
  return [
    `Ports are the catalog's (\`ci/src/catalog/catalog.ts\`): ${ports.join(', ')} (\`STELLA_HTTP_PORT\` changes it).`,
    `The host ports the catalog assigns to the Compose quickstart (on 127.0.0.1; on every address with \`EXPOSE_PUBLIC=1\`) are ${published.join(', ')}; every other port stays inside the stack.`,
  ].join('\n');
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
      requiredCell(k.key),
      services.length === all ? 'all' : services.join(', '),
      k.description + (k.locked ? ' **Locked.**' : ''),
    ]);
  return table(['group', 'key', 'type', 'default', 'secret', 'required', 'services', 'description'], rows);
}

export const docTargets: readonly RegionTarget[] = [
  { file: 'docs/install/overview.md', region: 'ports', render: portsTable },
  { file: 'docs/release/image-catalog.md', region: 'images', render: imageTable },
  { file: 'docs/install/configuration-reference.md', region: 'config', render: configTable },
  { file: 'docs/install/configuration-reference.md', region: 'required', render: requiredTable },
  { file: 'docs/operations/health-and-readiness.md', region: 'service-ports', render: servicePortsSentence },
  { file: 'docs/operations/health-and-readiness.md', region: 'healthcheck', render: healthcheckBlock },
  { file: 'docs/install/helm-prod.md', region: 'chart-values', render: () => helmProdValuesTable() },
  { file: 'docs/install/configuration-reference.md', region: 'chart-keys', render: () => chartKeysTable() },
  { file: 'docs/operations/health-and-readiness.md', region: 'chart-probes', render: () => chartProbesTable() },
];

export { catalog };
