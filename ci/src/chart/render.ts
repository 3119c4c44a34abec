/**
 * The generated files of deploy/helm/stella/, from the chart model (./model.ts):
 *
 *   Chart.yaml               name, version and appVersion (the release's, or 0.0.0-dev), kubeVersion
 *   values.yaml              every value with its description, choices and bounds as comments
 *   values-prod.yaml         production overlay (TLS required, HA, PDB, HPA, digests required)
 *   values-airgap.yaml       air-gap overlay (registry relocation, offline, private egress only)
 *   values.schema.json       strict draft-07 schema (additionalProperties: false)
 *   README.md                the values reference
 *   templates/_catalog.tpl   the catalog facts the templates read (ports, health paths, key mapping)
 *   templates/<component>/…  one file per object kind and component, each one `include`
 *   files/stella-init.mjs    a copy of the Compose quickstart's init script (deploy/compose/init/),
 *                            which the bundled mode's bucket Job runs (committed files only)
 *
 * `chartFiles(pins)` renders them with a release's image pins (the `chart` function);
 * `chartGeneratedFiles()` without (the committed files, checked by `generate --check`).
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { catalog, configFor } from '../catalog/index.ts';
import { table } from '../generate/regions.ts';
import { BUNDLED, CHART_DIR, CHART_NAME, DEV_VERSION, GLOBAL, KUBE_VERSION, SUPPORT_VALUES_KEY, chartValues, componentFacts, keyWiring, supportFacts } from './model.ts';
import { defaults, schemaOf, walk, type Node, type Obj } from './values-model.ts';

const REPO_ROOT = resolve(import.meta.dirname, '../../..');

export const GENERATED_HEADER = 'Generated from ci/src/catalog and ci/src/chart (the chart model) by `npm run generate`; do not edit.';

/** An image pin: where the image is and its index digest (and the version its tag declares). */
export interface ImagePin {
  readonly registry: string;
  readonly repository: string;
  readonly digest: string;
  readonly tag: string;
}

export interface ChartPins {
  /** Chart version (SemVer, no v) and appVersion (the images' version). */
  readonly version: string;
  readonly appVersion: string;
  /** By values key: `api`, `taskRunner`, … */
  readonly components: Readonly<Record<string, ImagePin>>;
  /** By support values key: `postgresql`, `redis`, `objectStore`, `queue`. */
  readonly bundled: Readonly<Record<string, ImagePin>>;
}

// ─── YAML emitter (comments from the model) ──────────────────────────────────────────────────

const SIMPLE_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const yamlKey = (k: string) => (SIMPLE_KEY.test(k) ? k : JSON.stringify(k));

function scalar(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v === null || v === undefined) return 'null';
  return JSON.stringify(v);
}

function docLines(n: Node, pad: string): string[] {
  const lines = [n.doc];
  if (n.kind === 'leaf') {
    const extra: string[] = [];
    if (n.choices) extra.push(`one of: ${n.choices.join(', ')}`);
    if (n.minimum !== undefined || n.maximum !== undefined) extra.push(`range: ${n.minimum ?? ''}..${n.maximum ?? ''}`);
    extra.push(`default: ${scalar(n.default)}`);
    lines.push(`(${n.type}; ${extra.join('; ')})`);
  }
  return lines.map((l) => `${pad}# ${l}`);
}

function freeValue(v: unknown, pad: string): string[] {
  if (Array.isArray(v)) {
    if (!v.length) return [' []'];
    return ['', ...v.map((x) => `${pad}- ${scalar(x)}`)];
  }
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>);
    if (!entries.length) return [' {}'];
    return ['', ...entries.flatMap(([k, x]) => {
      const rest = freeValue(x, `${pad}  `);
      return [`${pad}${yamlKey(k)}:${rest[0]}`, ...rest.slice(1)];
    })];
  }
  return [` ${scalar(v)}`];
}

/** YAML of `value` (a full tree or a partial overlay) with the model's comments. */
function emit(n: Obj, value: Record<string, unknown>, pad = '', comments = true): string[] {
  const out: string[] = [];
  for (const [k, child] of Object.entries(n.props)) {
    if (!(k in value)) continue;
    const v = value[k];
    if (comments) out.push(...docLines(child, pad));
    if (child.kind === 'object') {
      out.push(`${pad}${yamlKey(k)}:`, ...emit(child, v as Record<string, unknown>, `${pad}  `, comments));
    } else {
      const rest = freeValue(v, `${pad}  `);
      out.push(`${pad}${yamlKey(k)}:${rest[0]}`, ...rest.slice(1));
    }
    if (comments && pad === '') out.push('');
  }
  return out;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let t = target;
  for (const p of path.slice(0, -1)) t = (t[p] ??= {}) as Record<string, unknown>;
  t[path[path.length - 1]!] = value;
}

/** The default values with a release's image pins applied. */
export function valuesWithPins(pins?: ChartPins): Record<string, unknown> {
  const v = defaults(chartValues()) as Record<string, unknown>;
  if (!pins) return v;
  for (const [key, p] of Object.entries(pins.components)) setPath(v, [key, 'image'], { ...(v[key] as { image: object }).image, ...p });
  for (const [key, p] of Object.entries(pins.bundled)) {
    const b = (v.bundled as Record<string, { image: object }>)[key]!;
    b.image = { ...b.image, ...p };
  }
  return v;
}

export function renderValuesYaml(pins?: ChartPins): string {
  const header = [
    `# ${GENERATED_HEADER}`,
    '#',
    '# StellaOps chart values. Every value is described here; the values reference is README.md and',
    '# docs/install/helm-prod.md; values.schema.json refuses unknown keys and wrong types.',
    pins ? `# Pinned for release ${pins.appVersion}: every image below carries its index digest.` : '# Unreleased: the images have no digest yet; the `chart` function of a release writes them.',
    '',
  ];
  return `${[...header, ...emit(chartValues(), valuesWithPins(pins))].join('\n').trimEnd()}\n`;
}

// ─── Overlays ────────────────────────────────────────────────────────────────────────────────

const HA = { replicaCount: 2, autoscaling: { enabled: true, minReplicas: 2, maxReplicas: 6 }, pdb: { enabled: true, minAvailable: 1 } };

/** Production: TLS on both Ingresses, HA replicas, PDBs, HPAs, every image pinned by digest. */
export function prodOverlay(): Record<string, unknown> {
  const o: Record<string, unknown> = {
    global: { requireDigests: true },
    ingress: {
      enabled: true,
      className: 'nginx',
      tlsRequired: true,
      console: { host: 'console.stella.example.com', tlsSecretName: 'stella-console-tls' },
      api: { host: 'api.stella.example.com', tlsSecretName: 'stella-api-tls' },
    },
  };
  for (const s of catalog.services) if (s.enabledByDefault) o[s.valuesKey] = HA;
  return o;
}

/** Air gap: every image from the local registry (digests kept), offline mode, egress to private ranges only. */
export function airgapOverlay(): Record<string, unknown> {
  const privateRanges = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'];
  return {
    global: { imageRegistry: 'registry.local:5000', requireDigests: true, offline: true },
    postgresql: { egressCidrs: privateRanges },
    redis: { egressCidrs: privateRanges },
    queue: { egressCidrs: privateRanges },
    objectStore: { endpoint: 'http://s3.stella.internal:9000', pathStyle: true, port: 9000, egressCidrs: privateRanges },
    otel: { egressCidrs: privateRanges },
    ai: { enabled: false },
  };
}

function renderOverlay(what: string, lines: string[], o: Record<string, unknown>): string {
  return `${[`# ${GENERATED_HEADER}`, `# (${what})`, '#', ...lines.map((l) => `# ${l}`), '', ...emit(chartValues(), o, '', false)].join('\n').trimEnd()}\n`;
}

// ─── Schema, reference, catalog facts, stubs ─────────────────────────────────────────────────

export function renderSchema(): string {
  const s = { $schema: 'http://json-schema.org/draft-07/schema#', title: 'StellaOps chart values', ...schemaOf(chartValues()) };
  return `${JSON.stringify(s, null, 2)}\n`;
}

/** The values reference: one row per value. */
export function valuesReferenceTable(): string {
  const rows = walk(chartValues()).map(({ path, node }) => {
    const type = node.kind === 'leaf' ? (node.choices ? `enum: ${node.choices.join(', ')}` : node.type) : node.kind === 'map' ? 'map' : 'list';
    const def = node.kind === 'leaf' ? '`' + scalar(node.default) + '`' : '`' + JSON.stringify(node.default) + '`';
    return [`\`${path}\``, type, def, node.doc];
  });
  return table(['value', 'type', 'default', 'description'], rows);
}

function renderReadme(): string {
  return [
    `<!-- ${GENERATED_HEADER} -->`,
    '# StellaOps Helm chart: values reference',
    '',
    'Install, upgrade, verification and operations: `docs/install/helm-prod.md`. Overlays:',
    '`values-prod.yaml` (TLS on both Ingresses, HA, PDBs, HPAs, digests required) and',
    '`values-airgap.yaml` (`global.imageRegistry`, offline mode, private egress only).',
    '`values.schema.json` refuses unknown keys and wrong types.',
    '',
    valuesReferenceTable(),
    '',
  ].join('\n');
}

export function renderCatalogTpl(): string {
  const facts = { components: componentFacts(), support: supportFacts() };
  return [
    `{{- /* ${GENERATED_HEADER} */ -}}`,
    '{{- /*',
    'stella.catalog: the catalog facts as JSON (fromJson (include "stella.catalog" .)):',
    '  components[]: name, valuesKey, role, port, liveness/readiness/metrics paths, dependsOn, keys (every',
    '    STELLA_* key the service reads), config/secrets (value name -> key), globals (values path -> key),',
    '    wired (keys the chart computes);',
    '  support[]: the bundled StatefulSets (uid, volume, ports).',
    '*/ -}}',
    '{{- define "stella.catalog" -}}',
    JSON.stringify(facts),
    '{{- end -}}',
    '',
    '{{- /* stella.globalValues: the value of each global key (one value for every service that reads it), as JSON. */ -}}',
    '{{- define "stella.globalValues" -}}',
    `{{- toJson (dict ${Object.entries(GLOBAL).map(([k, g]) => `"${k}" ${g.expr}`).join(' ')}) -}}`,
    '{{- end -}}',
    '',
  ].join('\n');
}

export const COMPONENT_KINDS = ['deployment', 'service', 'serviceaccount', 'hpa', 'pdb', 'networkpolicy', 'servicemonitor'] as const;
export const BUNDLED_KINDS = ['statefulset', 'service', 'networkpolicy'] as const;

function stub(helper: string, arg: string): string {
  return `{{- /* ${GENERATED_HEADER} */ -}}\n{{- include "${helper}" (dict "root" $ "name" "${arg}") }}\n`;
}

function chartYaml(version: string, appVersion: string): string {
  return [
    `# ${GENERATED_HEADER}`,
    'apiVersion: v2',
    `name: ${CHART_NAME}`,
    'description: StellaOps, the production chart (external dependencies by default, secure by default, every image pinned by digest in a release)',
    'type: application',
    `version: ${JSON.stringify(version)}`,
    `appVersion: ${JSON.stringify(appVersion)}`,
    `kubeVersion: ${JSON.stringify(KUBE_VERSION)}`,
    'home: https://github.com/stellaops/stellaops',
    'sources:',
    '  - https://github.com/stellaops/stellaops',
    'keywords: [stellaops, security, sbom, vex]',
    'annotations:',
    '  io.stellaops.chart/generated-from: ci/src/catalog',
    '',
  ].join('\n');
}

export interface GeneratedFile {
  readonly path: string;
  readonly content: string;
}

/** Every generated chart file, paths relative to the repository root. */
export function chartFiles(pins?: ChartPins): GeneratedFile[] {
  const d = CHART_DIR;
  const files: GeneratedFile[] = [
    { path: `${d}/Chart.yaml`, content: chartYaml(pins?.version ?? DEV_VERSION, pins?.appVersion ?? DEV_VERSION) },
    { path: `${d}/values.yaml`, content: renderValuesYaml(pins) },
    { path: `${d}/values-prod.yaml`, content: renderOverlay('prod', ['Production overlay: helm install stella <chart> -f values-prod.yaml (TLS required on both', 'Ingresses, HA replicas, PDBs, HPAs, every image pinned by digest). Edit the hosts and TLS Secrets.'], prodOverlay()) },
    { path: `${d}/values-airgap.yaml`, content: renderOverlay('airgap', ['Air-gap overlay: every image from registry.local:5000 (repositories and digests kept),', 'offline mode, NetworkPolicy egress to private ranges only, the AI assistant off.'], airgapOverlay()) },
    { path: `${d}/values.schema.json`, content: renderSchema() },
    { path: `${d}/README.md`, content: renderReadme() },
    { path: `${d}/templates/_catalog.tpl`, content: renderCatalogTpl() },
  ];
  for (const s of catalog.services) {
    for (const kind of COMPONENT_KINDS) files.push({ path: `${d}/templates/${s.name}/${s.name}-${kind}.yaml`, content: stub(`stella.component.${kind}`, s.name) });
  }
  for (const n of BUNDLED) {
    for (const kind of BUNDLED_KINDS) files.push({ path: `${d}/templates/bundled/${n}-${kind}.yaml`, content: stub(`stella.bundled.${kind}`, SUPPORT_VALUES_KEY[n]) });
  }
  return files;
}

/** The Compose quickstart's init script, which the chart's bucket Job runs too (templates/bundled/object-store-init.yaml). */
export const INIT_SCRIPT_SOURCE = 'deploy/compose/init/stella-init.mjs';
export const INIT_SCRIPT_CHART_PATH = `${CHART_DIR}/files/stella-init.mjs`;

/** For fileGenerators (ci/src/generate): the committed chart files, and the chart's copy of the quickstart's init script (kept identical). */
export function chartGeneratedFiles(): GeneratedFile[] {
  const script = readFileSync(join(REPO_ROOT, INIT_SCRIPT_SOURCE), 'utf8');
  return [...chartFiles(), { path: INIT_SCRIPT_CHART_PATH, content: script }];
}

// ─── Documentation regions (ci/src/generate/docs.ts) ─────────────────────────────────────────

/** docs/install/helm-prod.md: every value but the component blocks, then one component block (the same for each). */
export function helmProdValuesTable(): string {
  const root = chartValues();
  const componentKeys = new Set(catalog.services.map((s) => s.valuesKey));
  const rows: (string | number)[][] = [];
  const fmt = (path: string, node: Exclude<Node, Obj>) => {
    const type = node.kind === 'leaf' ? (node.choices ? `enum: ${node.choices.join(', ')}` : node.type) : node.kind;
    const def = node.kind === 'leaf' ? scalar(node.default) : JSON.stringify(node.default);
    return [`\`${path}\``, type, `\`${def}\``, node.doc];
  };
  for (const { path, node } of walk(root)) if (!componentKeys.has(path.split('.')[0]!)) rows.push(fmt(path, node));
  const api = (root.props.api as Obj).props;
  for (const [k, v] of Object.entries(api)) {
    if (k === 'config' || k === 'secretRefs' || k === 'enabled') continue;
    for (const { path, node } of walk(v, [`<component>`, k])) rows.push(fmt(path, node));
  }
  const components = catalog.services.map((s) => `\`${s.valuesKey}\` (${s.enabledByDefault ? 'on' : 'off'})`).join(', ');
  return [
    `Components (\`<component>\` below; \`<component>.enabled\` toggles each): ${components}. Each component's own settings, \`<component>.config.*\` and \`<component>.secretRefs.*\`, are listed per component in \`deploy/helm/stella/README.md\` and mapped to their keys in docs/install/configuration-reference.md.`,
    '',
    table(['value', 'type', 'default', 'description'], rows),
  ].join('\n');
}

/** docs/install/configuration-reference.md: how the chart sets each catalog key, per service. */
export function chartKeysTable(): string {
  const rows = new Map<string, { how: string; services: string[] }>();
  for (const s of catalog.services) {
    for (const k of configFor(s)) {
      const w = keyWiring(k);
      const how =
        w.kind === 'config' ? `\`${s.valuesKey}.config.${w.name}\``
        : w.kind === 'secret' ? `\`${s.valuesKey}.secretRefs.${w.name}\` (a Secret key, as \`${k.key}_FILE\`)`
        : w.kind === 'global' ? `\`${w.value}\``
        : w.kind === 'wired' ? `set by the chart: ${w.how}`
        : `not set (${w.why})`;
      const id = `${k.key}\u0000${how}`;
      const e = rows.get(id);
      if (e) e.services.push(s.name);
      else rows.set(id, { how, services: [s.name] });
    }
  }
  const all = catalog.services.length;
  return table(
    ['key', 'chart value', 'services'],
    [...rows.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([id, e]) => [`\`${id.split('\u0000')[0]}\``, e.how, e.services.length === all ? 'all' : e.services.join(', ')]),
  );
}

/** docs/operations/health-and-readiness.md: the chart's probe defaults and upgrade gates. */
export function chartProbesTable(): string {
  const api = chartValues().props.api as Obj;
  const probes = (api.props.probes as Obj).props;
  const rows = Object.entries(probes).map(([name, p]) => {
    const v = defaults(p) as Record<string, number>;
    const path = name === 'readiness' ? '/health/readiness' : '/health/liveness';
    return [name, `\`${path}\``, v.initialDelaySeconds!, v.periodSeconds!, v.timeoutSeconds!, v.failureThreshold!];
  });
  const g = defaults(chartValues().props.upgrade!) as { watermarkGate: { timeoutSeconds: number; intervalSeconds: number } };
  return [
    table(['probe', 'path', 'initialDelaySeconds', 'periodSeconds', 'timeoutSeconds', 'failureThreshold'], rows),
    '',
    `Each component's port is its catalog port; \`<component>.probes.*\` change these. The watermark gate polls every ${g.watermarkGate.intervalSeconds} s and fails the release after ${g.watermarkGate.timeoutSeconds} s (\`upgrade.watermarkGate.*\`).`,
  ].join('\n');
}
