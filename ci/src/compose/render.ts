/**
 * Renders deploy/compose/: docker-compose.yml, .env.example and the collector's configuration,
 * from the catalog (ci/src/catalog), the support image lock and, optionally, a build document.
 * `npm run generate` writes them; `generate --check` and test/unit/generated.test.ts fail on drift.
 */
import { catalog } from '../catalog/index.ts';
import type { ServiceSpec, SupportName } from '../catalog/types.ts';
import { PROBE_HEALTHCHECKS } from '../support/recipes.ts';
import type { BuildDocument } from '../build/document.ts';
import { PLACEHOLDER_DIGEST, SUPPORT_LOCK_PATH, composeImages, type ComposeImages, type SupportLockImages } from './images.ts';
import { SECRETS_DIR, SUPPORT_SERVICE, settings, wiring } from './settings.ts';

export const COMPOSE_DIR = 'deploy/compose';
export const COMPOSE_FILE = `${COMPOSE_DIR}/docker-compose.yml`;
export const ENV_EXAMPLE_FILE = `${COMPOSE_DIR}/.env.example`;
export const OTEL_CONFIG_FILE = `${COMPOSE_DIR}/otel-collector.yaml`;
/** The Compose project name (volumes, network and containers are prefixed with it). */
export const PROJECT = 'stellaops';

/** Host ports the quickstart publishes: variable, default (the catalog's published port), container port. */
export interface PublishedPort {
  readonly service: string;
  readonly variable: string;
  readonly port: number;
  readonly containerPort: number;
}

export function publishedPorts(): PublishedPort[] {
  const out: PublishedPort[] = [];
  for (const s of catalog.services) if (s.publishedPort) out.push({ service: s.name, variable: `STELLA_${s.name.toUpperCase()}_PORT`, port: s.publishedPort, containerPort: s.http.port });
  for (const s of catalog.support) {
    if (!s.publishedPort) continue;
    const name = SUPPORT_SERVICE[s.name]!;
    out.push({ service: name, variable: `STELLA_${name.toUpperCase().replaceAll('-', '_')}_PORT`, port: s.publishedPort, containerPort: s.publishedPort });
  }
  return out;
}

/** The TLS profile's ports (nginx terminating TLS for the console and the API). */
export const TLS_PORTS: readonly PublishedPort[] = [
  { service: 'tls-proxy', variable: 'STELLA_TLS_CONSOLE_PORT', port: 8443, containerPort: 8443 },
  { service: 'tls-proxy', variable: 'STELLA_TLS_API_PORT', port: 8444, containerPort: 8444 },
];

/** The image variable of a service: STELLA_API_IMAGE, STELLA_TASK_RUNNER_IMAGE, STELLA_NATS_IMAGE, … */
export function imageVariable(composeService: string): string {
  return `STELLA_${composeService.toUpperCase().replaceAll('-', '_')}_IMAGE`;
}

/** The image variable of an entry of the support image lock (its `queue` is STELLA_NATS_IMAGE, `nginx` STELLA_NGINX_IMAGE). */
export function supportImageVariable(lockName: string): string {
  return imageVariable(SUPPORT_SERVICE[lockName] ?? lockName);
}

/**
 * The console's and the API's plain-HTTP ports bind to STELLA_HTTP_PUBLISH_ADDRESS, then
 * STELLA_PUBLISH_ADDRESS: with the tls profile quickstart.sh keeps them on 127.0.0.1 even with
 * EXPOSE_PUBLIC=1 (the public way in is nginx's TLS ports).
 */
export const HTTP_PUBLISH_SERVICES: readonly string[] = ['console', 'api'];

const q = (v: string) => JSON.stringify(v);
const image = (service: string, ref: string) => `    image: \${${imageVariable(service)}:-${ref}}`;
const port = (p: PublishedPort) => {
  const address = HTTP_PUBLISH_SERVICES.includes(p.service) ? '${STELLA_HTTP_PUBLISH_ADDRESS:-${STELLA_PUBLISH_ADDRESS:-127.0.0.1}}' : '${STELLA_PUBLISH_ADDRESS:-127.0.0.1}';
  return `      - ${q(`${address}:\${${p.variable}:-${p.port}}:${p.containerPort}`)}`;
};

/** The one-shot init services run the API image (node is all they need) unless STELLA_INIT_IMAGE says otherwise. */
const initImage = (images: ComposeImages) => `    image: \${${imageVariable('init')}:-\${${imageVariable('api')}:-${images.stella.api!}}}`;

/** Compose service name of a catalog dependency. */
const dependencyService = (d: string) => SUPPORT_SERVICE[d] ?? d;

/**
 * The support services' exec-form health checks: PostgreSQL's and Redis's own clients; NATS,
 * SeaweedFS and the collector through /usr/bin/stella-probe (tools/probe, in their images) on
 * their own health endpoints (ci/src/support/recipes.ts PROBE_HEALTHCHECKS).
 */
export const SUPPORT_HEALTH: Readonly<Record<SupportName, readonly string[]>> = {
  postgres: ['CMD', 'pg_isready', '-h', '127.0.0.1', '-p', '5432', '-q'],
  redis: ['CMD', '/usr/bin/redis-cli', 'ping'],
  queue: PROBE_HEALTHCHECKS.queue,
  'object-store': PROBE_HEALTHCHECKS['object-store'],
  'otel-collector': PROBE_HEALTHCHECKS['otel-collector'],
};

function dependsOn(entries: readonly [string, string][]): string[] {
  if (!entries.length) return [];
  return ['    depends_on:', ...entries.flatMap(([s, c]) => [`      ${s}:`, `        condition: ${c}`])];
}

function conditionOf(dep: string): string {
  const support = catalog.support.find((x) => x.name === dep);
  if (!support) return 'service_healthy';
  return SUPPORT_HEALTH[support.name].length ? 'service_healthy' : 'service_started';
}

function stellaService(s: ServiceSpec, images: ComposeImages): string[] {
  const env: string[] = [];
  for (const w of wiring(s)) {
    switch (w.kind) {
      case 'image':
        break;
      case 'fixed':
        env.push(`      ${w.key.key}: ${q(w.value)}`);
        break;
      case 'secret-file':
        env.push(`      ${w.key.key}_FILE: ${q(`${SECRETS_DIR}/${w.file}`)}`);
        break;
      case 'setting':
        env.push(`      ${w.env}: ${q(`\${${w.variable}:-${w.default}}`)}`);
        break;
    }
  }
  const deps: [string, string][] = [['init', 'service_completed_successfully']];
  for (const d of s.dependsOn) deps.push([dependencyService(d), conditionOf(d)]);
  if (s.dependsOn.includes('object-store')) deps.push(['object-store-init', 'service_completed_successfully']);
  const ports = publishedPorts().filter((p) => p.service === s.name);
  return [
    `  ${s.name}:`,
    '    <<: *stella-service',
    image(s.name, images.stella[s.name]!),
    ...dependsOn(deps),
    ...(ports.length ? ['    ports:', ...ports.map(port)] : []),
    '    environment:',
    ...env,
  ];
}

export interface RenderOptions {
  /** A release's build document: the stella images' defaults become its digests. */
  readonly build?: BuildDocument;
  readonly supportLock?: SupportLockImages;
}

export function renderCompose(o: RenderOptions = {}): string {
  const images = composeImages(o.build, o.supportLock);
  const sup = images.support;
  const pubs = publishedPorts();
  const pinned = o.build ? 'the build document given at generation' : `no build document (placeholder digest ${PLACEHOLDER_DIGEST.slice(0, 15)}…: quickstart.sh --images build.json pins them in .env)`;
  const supportPinned = o.supportLock && Object.keys(o.supportLock).length ? SUPPORT_LOCK_PATH : `no ${SUPPORT_LOCK_PATH} yet (placeholder digests)`;
  const lines = [
    '# GENERATED by ci/src/compose/render.ts from the service catalog (ci/src/catalog) and',
    `# ${SUPPORT_LOCK_PATH}. Do not edit: change the catalog and run \`npm run generate\`;`,
    '# `stella-release generate --check` and test/unit/generated.test.ts fail when it drifts.',
    '#',
    '# The StellaOps Compose quickstart: run ./quickstart.sh (docs/install/compose-quickstart.md).',
    '# Every image is a variable whose default is pinned by digest; set it in .env to relocate.',
    `# StellaOps images: ${pinned}.`,
    `# Support images: ${supportPinned}.`,
    '# Ports bind to 127.0.0.1 unless STELLA_PUBLISH_ADDRESS=0.0.0.0 (quickstart.sh sets it for EXPOSE_PUBLIC=1;',
    '# with the tls profile the console\'s and the API\'s plain HTTP stay on 127.0.0.1: STELLA_HTTP_PUBLISH_ADDRESS).',
    `name: ${PROJECT}`,
    '',
    '# Readiness of a StellaOps service (exec form: the images have no shell): GET /health/readiness.',
    'x-stella-healthcheck: &stella-healthcheck',
    `  test: ${JSON.stringify(['CMD', '/nodejs/bin/node', '/app/healthcheck.js', '--readiness'])}`,
    '  interval: 5s',
    '  timeout: 4s',
    '  retries: 6',
    '  start_period: 180s',
    '',
    '# Timing of the support services\' health checks.',
    'x-support-healthcheck: &support-healthcheck',
    '  interval: 3s',
    '  timeout: 3s',
    '  retries: 10',
    '  start_period: 60s',
    '',
    '# The hardening of every long-running container we start ourselves (the StellaOps services and',
    '# the tls profile\'s nginx): restarted, read-only root, no capabilities, no privilege gain.',
    'x-hardened: &hardened',
    '  restart: unless-stopped',
    '  read_only: true',
    '  cap_drop: [ALL]',
    '  security_opt: ["no-new-privileges:true"]',
    '  tmpfs: ["/tmp"]',
    '  networks: [stella-net]',
    '',
    '# What every StellaOps container shares: the hardening above, non-root (the image\'s 65532), the',
    '# secrets the init service wrote (stella-state, read-only).',
    'x-stella-service: &stella-service',
    '  <<: *hardened',
    '  healthcheck: *stella-healthcheck',
    '  volumes:',
    '    - stella-state:/run/stella:ro',
    '',
    'services:',
    '  # One-shot, as root: copies .secrets/ into the stella-state volume, owned by each consumer\'s',
    '  # user with mode 0400 (a 0600 file of the host user is unreadable for the non-root images).',
    '  init:',
    initImage(images),
    '    user: "0:0"',
    '    network_mode: none',
    '    read_only: true',
    '    restart: "no"',
    '    entrypoint: ["/nodejs/bin/node", "/init/stella-init.mjs"]',
    '    command: ["secrets"]',
    '    volumes:',
    '      - ./.secrets:/in:ro',
    '      - ./init:/init:ro',
    '      - stella-state:/state',
    '',
    '  postgres:',
    image('postgres', sup.postgres),
    '    restart: unless-stopped',
    '    read_only: true',
    '    tmpfs: ["/tmp", "/run/postgresql"]',
    '    networks: [stella-net]',
    ...dependsOn([['init', 'service_completed_successfully']]),
    '    environment:',
    '      POSTGRES_USER: "stella"',
    '      POSTGRES_DB: "stella"',
    `      POSTGRES_PASSWORD_FILE: ${q(`${SECRETS_DIR}/postgres-password`)}`,
    '    volumes:',
    '      - pgdata:/var/lib/postgresql/data',
    '      - stella-state:/run/stella:ro',
    '    healthcheck:',
    '      <<: *support-healthcheck',
    `      test: ${JSON.stringify(SUPPORT_HEALTH.postgres)}`,
    '',
    '  redis:',
    image('redis', sup.redis),
    '    restart: unless-stopped',
    '    read_only: true',
    '    networks: [stella-net]',
    ...dependsOn([['init', 'service_completed_successfully']]),
    '    # stella-redis.conf (written by init): includes the image\'s configuration, adds requirepass.',
    `    entrypoint: ["/usr/bin/redis-server", ${q(`${SECRETS_DIR}/redis.conf`)}]`,
    '    volumes:',
    '      - redis-data:/data',
    '      - stella-state:/run/stella:ro',
    '    healthcheck:',
    '      <<: *support-healthcheck',
    `      test: ${JSON.stringify(SUPPORT_HEALTH.redis)}`,
    '',
    '  # SeaweedFS\'s S3 gateway on 9000; the access keys come from the s3.json identities file init writes;',
    '  # no telemetry (-master.telemetry=false: nothing leaves the host), no Iceberg/Lance ports.',
    '  # Health: stella-probe (in the image) on the S3 gateway\'s and the filer\'s /healthz.',
    '  object-store:',
    image('object-store', sup['object-store']),
    '    restart: unless-stopped',
    '    read_only: true',
    '    tmpfs: ["/tmp"]',
    '    networks: [stella-net]',
    ...dependsOn([['init', 'service_completed_successfully']]),
    '    command: ["server", "-dir=/data", "-ip=127.0.0.1", "-ip.bind=0.0.0.0", "-master.volumeSizeLimitMB=1024", "-volume.max=0", "-filer", "-s3", "-s3.port=9000", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false", ' + q(`-s3.config=${SECRETS_DIR}/s3.json`) + ']',
    '    ports:',
    ...pubs.filter((p) => p.service === 'object-store').map(port),
    '    volumes:',
    '      - objectstore-data:/data',
    '      - stella-state:/run/stella:ro',
    '    healthcheck:',
    '      <<: *support-healthcheck',
    `      test: ${JSON.stringify(SUPPORT_HEALTH['object-store'])}`,
    '',
    '  # One-shot: creates the bucket (signed S3 request; an existing bucket is fine).',
    '  object-store-init:',
    initImage(images),
    '    read_only: true',
    '    restart: "no"',
    '    networks: [stella-net]',
    ...dependsOn([['object-store', 'service_healthy']]),
    '    entrypoint: ["/nodejs/bin/node", "/init/stella-init.mjs"]',
    '    command: ["bucket"]',
    '    environment:',
    '      ENDPOINT: "http://object-store:9000"',
    '      BUCKET: "${STELLA_OBJECT_STORE_BUCKET:-stella}"',
    '    volumes:',
    '      - ./init:/init:ro',
    '      - stella-state:/run/stella:ro',
    '',
    '  # NATS with JetStream (-js), storing under /data. Health: stella-probe on the monitoring port\'s /healthz.',
    '  nats:',
    image('nats', sup.queue),
    '    restart: unless-stopped',
    '    read_only: true',
    '    networks: [stella-net]',
    '    # Debian\'s nats-server package installs /usr/sbin/nats-server.',
    '    entrypoint: ["/usr/sbin/nats-server"]',
    '    command: ["-js", "-sd", "/data", "-p", "4222", "-m", "8222"]',
    '    ports:',
    ...pubs.filter((p) => p.service === 'nats').map(port),
    '    volumes:',
    '      - nats-data:/data',
    '    healthcheck:',
    '      <<: *support-healthcheck',
    `      test: ${JSON.stringify(SUPPORT_HEALTH.queue)}`,
    '',
    '  # Receives OTLP traces and scrapes every service\'s /metrics (otel-collector.yaml, generated).',
    '  # Health: stella-probe on the health_check extension (13133).',
    '  otel-collector:',
    image('otel-collector', sup['otel-collector']),
    '    restart: unless-stopped',
    '    read_only: true',
    '    networks: [stella-net]',
    '    command: ["--config", "/etc/otelcol/compose.yaml"]',
    '    volumes:',
    '      - ./otel-collector.yaml:/etc/otelcol/compose.yaml:ro',
    '    healthcheck:',
    '      <<: *support-healthcheck',
    `      test: ${JSON.stringify(SUPPORT_HEALTH['otel-collector'])}`,
    '',
    ...catalog.services.flatMap((s) => [...stellaService(s, images), '']),
    '  # The tls profile (quickstart.sh --tls, or COMPOSE_PROFILES=tls): nginx (support-nginx, built from',
    '  # Debian\'s nginx) terminating TLS for the console and the API with .secrets/tls-cert.pem and',
    '  # .secrets/tls-key.pem (given with --tls-cert/--tls-key, or a CA and certificate quickstart.sh',
    '  # generates), which init copies into stella-state for nginx\'s user (101, mode 0400).',
    '  tls-proxy:',
    '    profiles: [tls]',
    image('nginx', sup.nginx),
    '    <<: *hardened',
    ...dependsOn([['init', 'service_completed_successfully'], ['console', 'service_healthy'], ['api', 'service_healthy']]),
    '    ports:',
    ...TLS_PORTS.map(port),
    '    volumes:',
    '      - ./tls/nginx.conf:/etc/nginx/nginx.conf:ro',
    '      - stella-state:/run/stella:ro',
    '    healthcheck:',
    '      <<: *support-healthcheck',
    `      test: ${JSON.stringify(PROBE_HEALTHCHECKS.nginx)}`,
    '',
    'networks:',
    '  stella-net:',
    '    driver: bridge',
    '',
    '# objectstore-data, not minio-data: the object store is SeaweedFS\'s S3 gateway (built here from Go',
    '# modules), not MinIO; the name says what holds the data.',
    'volumes:',
    ...['pgdata', 'objectstore-data', 'redis-data', 'nats-data', 'stella-state'].map((v) => `  ${v}: {}`),
    '',
  ];
  return lines.join('\n');
}

/** The OpenTelemetry Collector configuration: OTLP in, every service's /metrics scraped, JSON lines out. */
export function renderOtelConfig(): string {
  const targets = catalog.services.map((s) => `${s.name}:${s.http.port}`);
  return [
    '# GENERATED by ci/src/compose/render.ts from the service catalog (ci/src/catalog). Do not edit:',
    '# run `npm run generate`. The collector of the Compose quickstart: OTLP traces in (the services\'',
    '# STELLA_OTEL_EXPORTER_ENDPOINT), every service\'s /metrics scraped, both written as JSON lines',
    '# under /var/lib/otelcol and to the debug exporter (docker compose logs otel-collector).',
    'extensions:',
    '  health_check:',
    '    endpoint: 0.0.0.0:13133',
    'receivers:',
    '  otlp:',
    '    protocols:',
    '      grpc:',
    '        endpoint: 0.0.0.0:4317',
    '      http:',
    '        endpoint: 0.0.0.0:4318',
    '  prometheus:',
    '    config:',
    '      scrape_configs:',
    '        - job_name: stellaops',
    '          scrape_interval: 15s',
    '          metrics_path: /metrics',
    '          static_configs:',
    `            - targets: [${targets.map((t) => `'${t}'`).join(', ')}]`,
    'processors:',
    '  batch:',
    '    timeout: 1s',
    'exporters:',
    '  debug:',
    '    verbosity: basic',
    '  file/traces:',
    '    path: /var/lib/otelcol/traces.jsonl',
    '  file/metrics:',
    '    path: /var/lib/otelcol/metrics.jsonl',
    'service:',
    '  extensions: [health_check]',
    '  pipelines:',
    '    traces:',
    '      receivers: [otlp]',
    '      processors: [batch]',
    '      exporters: [debug, file/traces]',
    '    metrics:',
    '      receivers: [otlp, prometheus]',
    '      processors: [batch]',
    '      exporters: [debug, file/metrics]',
    '',
  ].join('\n');
}

/** A comment block: wrapped at ~96 columns, each line starting with `# `. */
function comment(text: string, width = 94): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      out.push(`# ${line}`);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(`# ${line}`);
  return out;
}

/** .env.example; the support images' lines show the lock's pins (what the compose file defaults to). */
export function renderEnvExample(supportLock?: SupportLockImages): string {
  const images = composeImages(undefined, supportLock);
  const lines = [
    '# GENERATED by ci/src/compose/render.ts from the service catalog (ci/src/catalog). Do not edit:',
    '# run `npm run generate`. quickstart.sh copies this file to .env once (never overwrites it);',
    '# edit .env, then re-run ./quickstart.sh (or `docker compose up -d`). Every line is commented:',
    '# an unset or empty value keeps the default shown. Secrets are never here: quickstart.sh writes',
    '# them to .secrets/ (mode 0600) on the first run.',
    '',
    '## Exposure',
    ...comment('Set EXPOSE_PUBLIC=1 to publish the ports on every address (quickstart.sh then sets STELLA_PUBLISH_ADDRESS=0.0.0.0); by default they bind to 127.0.0.1 only.'),
    'EXPOSE_PUBLIC=0',
    ...comment('The address the ports bind to, when you run `docker compose` yourself (quickstart.sh derives it from EXPOSE_PUBLIC).'),
    '# STELLA_PUBLISH_ADDRESS=127.0.0.1',
    ...comment('The address of the console\'s and the API\'s plain-HTTP ports; default STELLA_PUBLISH_ADDRESS. quickstart.sh sets 127.0.0.1 with the tls profile, so that with EXPOSE_PUBLIC=1 only nginx\'s TLS ports face the network.'),
    '# STELLA_HTTP_PUBLISH_ADDRESS=',
    '',
    '## TLS',
    ...comment('STELLA_TLS=1 starts the tls profile: nginx terminating TLS for the console and the API (quickstart.sh --tls writes it here; set 0 and run `docker compose --profile tls rm -sf tls-proxy` to stop). The certificate and key are .secrets/tls-cert.pem and .secrets/tls-key.pem: yours (quickstart.sh --tls-cert FILE --tls-key FILE copies them), or generated on the first --tls run with a private CA whose certificate is .secrets/tls-ca.pem (trust it in your browser or curl --cacert). STELLA_TLS_NAMES adds DNS names or IP addresses to the generated certificate (comma-separated; localhost, 127.0.0.1 and this host\'s name are always in it).'),
    '# STELLA_TLS=0',
    '# STELLA_TLS_NAMES=',
    ...[...publishedPorts(), ...TLS_PORTS].flatMap((p) => [...comment(`Host port of ${p.service} (container port ${p.containerPort})${p.service === 'tls-proxy' ? ', tls profile only' : ''}.`), `# ${p.variable}=${p.port}`]),
    '',
    '## Images',
    ...comment('Each image by digest. quickstart.sh --images build.json writes the StellaOps ones from a release\'s build document; --registry HOST moves every image to a private registry, keeping the digests. The placeholder digest sha256:000… means "not pinned yet": quickstart.sh refuses to start with it.'),
    ...catalog.services.map((s) => `# ${imageVariable(s.name)}=${images.stella[s.name]}`),
    ...comment('The one-shot init services (secrets, bucket) run this image; default: STELLA_API_IMAGE.'),
    `# ${imageVariable('init')}=`,
    `# ${imageVariable('postgres')}=${images.support.postgres}`,
    `# ${imageVariable('redis')}=${images.support.redis}`,
    `# ${imageVariable('object-store')}=${images.support['object-store']}`,
    `# ${imageVariable('nats')}=${images.support.queue}`,
    `# ${imageVariable('otel-collector')}=${images.support['otel-collector']}`,
    ...comment('The tls profile\'s nginx (support-nginx, built from Debian\'s nginx).'),
    `# ${imageVariable('nginx')}=${images.support.nginx}`,
    '',
    '## Quickstart',
    ...comment('Seconds quickstart.sh waits for every service to be ready before it reports what is not.'),
    '# STELLA_QUICKSTART_TIMEOUT=300',
  ];
  let group = '';
  for (const s of settings()) {
    if (s.key.group !== group) {
      group = s.key.group;
      lines.push('', `## ${group}`);
    }
    const facts = [
      s.key.type === 'enum' ? `one of ${s.key.choices!.join(', ')}` : s.key.type,
      s.key.min !== undefined ? `${s.key.min}..${s.key.max}` : '',
      `read by ${s.services.join(', ')}`,
    ].filter(Boolean);
    const def = s.default !== '' ? s.default : s.key.default !== undefined ? String(s.key.default) : '';
    const what = s.env.endsWith('_FILE') ? `${s.key.description} A secret: put it in .secrets/<name> and set this to ${SECRETS_DIR}/<name> (the path inside the containers).` : s.key.description;
    lines.push(...comment(`${what} (${facts.join('; ')}${def ? `; default ${def}` : '; unset by default'}${s.default !== '' && s.key.default !== undefined && String(s.key.default) !== s.default ? `; the quickstart's default, the service's own is ${s.key.default}` : ''})`));
    lines.push(`# ${s.variable}=${def}`);
  }
  lines.push('');
  return lines.join('\n');
}

export function composeFiles(root: string, build?: BuildDocument, supportLock?: SupportLockImages): { path: string; content: string }[] {
  void root;
  return [
    { path: COMPOSE_FILE, content: renderCompose({ ...(build ? { build } : {}), ...(supportLock ? { supportLock } : {}) }) },
    { path: ENV_EXAMPLE_FILE, content: renderEnvExample(supportLock) },
    { path: OTEL_CONFIG_FILE, content: renderOtelConfig() },
  ];
}
