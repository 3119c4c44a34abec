/**
 * The StellaOps service catalog. This file is the single source for every
 * image, the compose file, the chart values and the documentation tables;
 * generated files name it in their header, and a test fails when they drift.
 */
import type { Catalog, ConfigKey, ServiceSpec, SupportSpec } from './types.ts';

/** Where the StellaOps source lives: image labels, SBOMs and provenance name it. */
export const SOURCE_URL = 'https://github.com/stellaops/stellaops';

const http = (port: number) =>
  ({
    port,
    liveness: '/health/liveness',
    readiness: '/health/readiness',
    version: '/version',
    metrics: '/metrics',
  }) as const;

/** Keys every service reads; `STELLA_HTTP_PORT` defaults to the service's own port. */
const sharedConfig: readonly ConfigKey[] = [
  { key: 'STELLA_LOG_LEVEL', type: 'enum', group: 'Runtime', choices: ['debug', 'info', 'warn', 'error'], default: 'info', description: 'Minimum level of the structured JSON log on stdout.', discoverable: true },
  { key: 'STELLA_METRICS_ENABLED', type: 'boolean', group: 'Telemetry', default: true, description: 'Serve Prometheus metrics at GET /metrics.', discoverable: true },
  { key: 'STELLA_SHUTDOWN_GRACE_SECONDS', type: 'integer', group: 'Runtime', default: 25, min: 1, max: 600, description: 'Deadline for draining after SIGTERM; keep it below the orchestrator grace period (Kubernetes: 30 s).' },
  { key: 'STELLA_READINESS_TIMEOUT_MS', type: 'integer', group: 'Runtime', default: 2000, min: 100, max: 60000, description: 'Timeout of each dependency check behind GET /health/readiness.' },
  { key: 'STELLA_CONFIG_DIR', type: 'string', group: 'Runtime', default: '/etc/stella', description: 'Mounted configuration directory: one file per key (file name = key), read at start.' },
  { key: 'STELLA_OFFLINE', type: 'boolean', group: 'Runtime', default: false, description: 'Air-gapped mode: no outbound calls beyond configured dependencies; egress attempts fail with an explicit error.', discoverable: true },
  { key: 'STELLA_OTEL_EXPORTER_ENDPOINT', type: 'url', group: 'Telemetry', description: 'OTLP/HTTP endpoint of an OpenTelemetry collector; tracing is off when unset.' },
];

/** Keys added to a service for each support service it depends on. */
export const dependencyConfig: Readonly<Record<string, readonly ConfigKey[]>> = {
  postgres: [
    { key: 'STELLA_DATABASE_URL', type: 'url', group: 'Storage', secret: true, description: 'PostgreSQL connection URL (postgres://user:password@host:5432/db). Holds a password: pass it as a file (STELLA_DATABASE_URL_FILE) or a Secret.' },
    { key: 'STELLA_DATABASE_POOL_SIZE', type: 'integer', group: 'Storage', default: 5, min: 1, max: 200, description: 'Maximum PostgreSQL connections per process.' },
  ],
  redis: [
    { key: 'STELLA_REDIS_URL', type: 'url', group: 'Cache', secret: true, description: 'Redis URL (redis://:password@host:6379/0).' },
  ],
  queue: [
    { key: 'STELLA_QUEUE_URL', type: 'url', group: 'Queue', default: 'nats://queue:4222', description: 'NATS server URL; the server must have JetStream enabled (work is queued durably in the STELLA_WORK stream).', discoverable: true },
    { key: 'STELLA_QUEUE_PREFETCH', type: 'integer', group: 'Queue', default: 16, min: 1, max: 10000, description: 'Messages a worker takes ahead of processing.' },
    { key: 'STELLA_QUEUE_RETENTION', type: 'duration', group: 'Queue', default: '72h', description: 'How long unconsumed work items are retained in the JetStream work stream (STELLA_WORK, work-queue retention: an item leaves it when a worker acknowledges it).' },
  ],
  'object-store': [
    { key: 'STELLA_OBJECT_STORE_ENDPOINT', type: 'url', group: 'Object store', default: 'http://object-store:9000', description: 'S3-compatible endpoint.', discoverable: true },
    { key: 'STELLA_OBJECT_STORE_BUCKET', type: 'string', group: 'Object store', default: 'stella', description: 'Bucket for artifacts, exports and packs.', discoverable: true },
    { key: 'STELLA_OBJECT_STORE_REGION', type: 'string', group: 'Object store', default: 'us-east-1', description: 'Region the requests are signed for (AWS Signature V4); S3-compatible stores usually accept us-east-1.', discoverable: true },
    { key: 'STELLA_OBJECT_STORE_PATH_STYLE', type: 'boolean', group: 'Object store', default: true, description: 'Path-style addressing (endpoint/bucket/key), as MinIO and SeaweedFS need; false for virtual-hosted style (bucket.endpoint/key).' },
    { key: 'STELLA_OBJECT_STORE_ACCESS_KEY', type: 'string', group: 'Object store', secret: true, description: 'S3 access key id (omit, with the secret key, to use the AWS SDK default credential chain: AWS_* variables, workload identity / IAM role).' },
    { key: 'STELLA_OBJECT_STORE_SECRET_KEY', type: 'string', group: 'Object store', secret: true, description: 'S3 secret access key.' },
    { key: 'STELLA_OBJECT_STORE_SSE', type: 'enum', group: 'Object store', choices: ['none', 'AES256', 'aws:kms'], default: 'none', description: 'Server-side encryption requested on upload.' },
  ],
  api: [
    { key: 'STELLA_API_URL', type: 'url', group: 'Runtime', default: 'http://api:8081', description: 'Internal URL of the Web Services API.', discoverable: true },
  ],
};

const services: readonly ServiceSpec[] = [
  {
    name: 'api', title: 'Web Services API', image: 'stella-api', valuesKey: 'api', role: 'http', http: http(8081), publishedPort: 8081,
    description: 'Public REST API; runs the idempotent migrations and the quickstart seed job; serves the console its welcome state.',
    dependsOn: ['postgres', 'redis', 'queue', 'object-store'], enabledByDefault: true,
    config: [
      { key: 'STELLA_AUTHORITY_ISSUER', type: 'url', group: 'Auth', description: 'OIDC issuer of the Authority; unset in the quickstart, which uses local accounts.', discoverable: true },
      { key: 'STELLA_AUTHORITY_JWKS_URL', type: 'url', group: 'Auth', description: 'JWKS URL used to verify tokens (defaults to the issuer discovery document).' },
      { key: 'STELLA_RBAC_CACHE_TTL', type: 'duration', group: 'Auth', default: '5m', description: 'How long resolved role bindings are cached.' },
      { key: 'STELLA_TOKEN_TTL', type: 'duration', group: 'Auth', default: '1h', description: 'Lifetime of API tokens issued by the API.' },
      { key: 'STELLA_MIGRATIONS_AUTO', type: 'boolean', group: 'Storage', default: true, description: 'Run pending migrations at start (the chart runs them in a pre-upgrade Job and turns this off).' },
      { key: 'STELLA_QUICKSTART_MODE', type: 'boolean', group: 'Quickstart', default: false, description: 'Enables the seed job, the demo data endpoints and the welcome wizard state.', discoverable: true },
      { key: 'STELLA_ADMIN_PASSWORD', type: 'string', group: 'Quickstart', secret: true, description: 'Password of the seeded admin account (quickstart only; generated on first run).' },
    ],
  },
  {
    name: 'console', title: 'Web UI', image: 'stella-console', valuesKey: 'console', role: 'http', http: http(8080), publishedPort: 8080,
    description: 'The web console: onboarding wizard, quickstart banner and links to the install docs.',
    dependsOn: ['api'], enabledByDefault: true,
    config: [
      { key: 'STELLA_QUICKSTART_MODE', type: 'boolean', group: 'Quickstart', default: false, description: 'Shows the "Connected to Quickstart" banner.', discoverable: true },
      { key: 'STELLA_DOCS_URL', type: 'string', group: 'Runtime', default: '/docs/install/overview.md', description: 'Where "View install docs" points; the console serves an offline copy of the install docs.', discoverable: true },
    ],
  },
  {
    name: 'orchestrator', title: 'Orchestrator', image: 'stella-orchestrator', valuesKey: 'orchestrator', role: 'worker', http: http(8082),
    description: 'Source and job scheduler: enqueues feed polls and task packs.',
    dependsOn: ['postgres', 'queue'], enabledByDefault: true,
    config: [
      { key: 'STELLA_ORCHESTRATOR_CONCURRENCY', type: 'integer', group: 'Orchestrator/Task Runner', default: 2, min: 1, max: 256, description: 'Jobs scheduled in parallel.' },
      { key: 'STELLA_PACK_REGISTRY_URL', type: 'url', group: 'Orchestrator/Task Runner', description: 'Task pack registry endpoint; the built-in pack store is used when unset.', discoverable: true },
    ],
  },
  {
    name: 'task-runner', title: 'Task Runner', image: 'stella-task-runner', valuesKey: 'taskRunner', role: 'worker', http: http(8083),
    description: 'Executes task packs; respects offline mode and fails explicitly when egress is blocked.',
    dependsOn: ['queue', 'object-store'], enabledByDefault: true,
    config: [
      { key: 'STELLA_TASK_RUNNER_CONCURRENCY', type: 'integer', group: 'Orchestrator/Task Runner', default: 2, min: 1, max: 256, description: 'Task packs executed in parallel.' },
      { key: 'STELLA_TASK_SANDBOX', type: 'enum', group: 'Orchestrator/Task Runner', choices: ['process', 'none'], default: 'process', description: 'Isolation of each task: a separate process with a scrubbed environment, or in-process.' },
      { key: 'STELLA_EGRESS_POLICY', type: 'enum', group: 'Orchestrator/Task Runner', choices: ['deny', 'allow'], default: 'deny', description: 'Outbound network access for tasks; denied egress fails the task with an explicit error.', discoverable: true },
      { key: 'STELLA_ARTIFACT_RETENTION', type: 'duration', group: 'Orchestrator/Task Runner', default: '168h', description: 'How long task artifacts are kept in the object store.' },
    ],
  },
  {
    name: 'conseiller', title: 'Conseiller (Feedser)', image: 'stella-conseiller', valuesKey: 'conseiller', role: 'worker', http: http(8084),
    description: 'Advisory aggregator: stores source advisories as immutable records linked to their originals; never merges.',
    dependsOn: ['postgres', 'queue'], enabledByDefault: true,
    config: [
      { key: 'STELLA_DISABLE_MERGE', type: 'boolean', group: 'Conseiller/Excitator', default: true, locked: true, description: 'The AOC rule (seed DISABLE_MERGE): merging is hard-disabled; any other value stops start-up.', discoverable: true },
      { key: 'STELLA_FEED_POLL_INTERVAL', type: 'duration', group: 'Conseiller/Excitator', default: '1h', description: 'Interval between feed polls.' },
      { key: 'STELLA_FEED_SOURCES', type: 'list', group: 'Conseiller/Excitator', default: '', description: 'Comma-separated feed source URLs; empty uses the bundled seed feed only.' },
      { key: 'STELLA_FEED_RETRY_BACKOFF', type: 'duration', group: 'Conseiller/Excitator', default: '30s', description: 'Initial backoff after a failed fetch (doubles up to 10 tries).' },
      { key: 'STELLA_FEED_MAX_INFLIGHT', type: 'integer', group: 'Conseiller/Excitator', default: 4, min: 1, max: 64, description: 'Concurrent feed fetches.' },
    ],
  },
  {
    name: 'excitator', title: 'Excitator (Vexer)', image: 'stella-excitator', valuesKey: 'excitator', role: 'worker', http: http(8085),
    description: 'VEX aggregator: stores source VEX statements as immutable records linked to their originals; never merges.',
    dependsOn: ['postgres', 'queue'], enabledByDefault: true,
    config: [
      { key: 'STELLA_DISABLE_MERGE', type: 'boolean', group: 'Conseiller/Excitator', default: true, locked: true, description: 'The AOC rule (seed DISABLE_MERGE): merging is hard-disabled; any other value stops start-up.', discoverable: true },
      { key: 'STELLA_FEED_POLL_INTERVAL', type: 'duration', group: 'Conseiller/Excitator', default: '1h', description: 'Interval between VEX source polls.' },
      { key: 'STELLA_FEED_SOURCES', type: 'list', group: 'Conseiller/Excitator', default: '', description: 'Comma-separated VEX source URLs; empty uses the bundled seed statements only.' },
      { key: 'STELLA_FEED_RETRY_BACKOFF', type: 'duration', group: 'Conseiller/Excitator', default: '30s', description: 'Initial backoff after a failed fetch.' },
      { key: 'STELLA_FEED_MAX_INFLIGHT', type: 'integer', group: 'Conseiller/Excitator', default: 4, min: 1, max: 64, description: 'Concurrent source fetches.' },
    ],
  },
  {
    name: 'policy', title: 'Policy Engine', image: 'stella-policy', valuesKey: 'policy', role: 'http', http: http(8086),
    description: 'Evaluates findings against policy; caches compiled rules in Redis.',
    dependsOn: ['postgres', 'redis'], enabledByDefault: true,
    config: [
      { key: 'STELLA_POLICY_CACHE_TTL', type: 'duration', group: 'Policy engine', default: '5m', description: 'Rule cache TTL.' },
      { key: 'STELLA_POLICY_DEFAULT_VERSION', type: 'string', group: 'Policy engine', default: 'baseline-1', description: 'Policy version applied to tenants without one.', discoverable: true },
    ],
  },
  {
    name: 'ledger', title: 'Findings Ledger', image: 'stella-ledger', valuesKey: 'ledger', role: 'worker', http: http(8087),
    description: 'Findings Ledger worker: appends findings events to the ledger.',
    dependsOn: ['postgres', 'queue'], enabledByDefault: true,
    config: [
      { key: 'STELLA_LEDGER_BATCH_SIZE', type: 'integer', group: 'Storage', default: 100, min: 1, max: 10000, description: 'Events written per ledger transaction.' },
    ],
  },
  {
    name: 'export', title: 'Export Center', image: 'stella-export', valuesKey: 'export', role: 'worker', http: http(8088),
    description: 'Export Center worker: renders exports and writes them to the object store.',
    dependsOn: ['postgres', 'queue', 'object-store'], enabledByDefault: true,
    config: [
      { key: 'STELLA_EXPORT_FORMATS', type: 'list', group: 'Export Center', default: 'json,spdx,csaf', description: 'Export formats enabled.', discoverable: true },
      { key: 'STELLA_EXPORT_RATE_LIMIT', type: 'integer', group: 'Export Center', default: 60, min: 1, max: 100000, description: 'Exports accepted per tenant per minute.' },
    ],
  },
  {
    name: 'notify', title: 'Notifications Studio', image: 'stella-notify', valuesKey: 'notify', role: 'worker', http: http(8089),
    description: 'Notifications worker: batches events and delivers them to the configured sinks.',
    dependsOn: ['postgres', 'queue'], enabledByDefault: true,
    config: [
      { key: 'STELLA_NOTIFY_SINKS', type: 'list', group: 'Notifications', default: 'log', description: 'Enabled sinks (log, webhook, email).', discoverable: true },
      { key: 'STELLA_NOTIFY_TEMPLATES_PATH', type: 'string', group: 'Notifications', default: '/etc/stella/templates', description: 'Directory of notification templates.' },
      { key: 'STELLA_NOTIFY_BATCH_WINDOW', type: 'duration', group: 'Notifications', default: '30s', description: 'Events arriving within this window are sent together.' },
    ],
  },
  {
    name: 'ai', title: 'Advisory AI Assistant', image: 'stella-ai', valuesKey: 'ai', role: 'http', http: http(8090),
    description: 'Lightweight assistant that calls a configured LLM backend; disabled by default.',
    dependsOn: ['api'], enabledByDefault: false,
    config: [
      { key: 'STELLA_AI_ENABLED', type: 'boolean', group: 'AI Assistant', default: false, description: 'Answer assistant requests; when false the service reports itself disabled.', discoverable: true },
      { key: 'STELLA_AI_MODEL_ENDPOINT', type: 'url', group: 'AI Assistant', description: 'OpenAI-compatible endpoint of the model backend.' },
      { key: 'STELLA_AI_API_KEY', type: 'string', group: 'AI Assistant', secret: true, description: 'API key for the model backend.' },
      { key: 'STELLA_AI_MAX_TOKENS', type: 'integer', group: 'AI Assistant', default: 2048, min: 1, max: 200000, description: 'Token limit per answer.' },
      { key: 'STELLA_AI_GUARDRAILS', type: 'enum', group: 'AI Assistant', choices: ['strict', 'standard'], default: 'strict', description: 'Guardrail profile applied to prompts and answers.' },
    ],
  },
];

const support: readonly SupportSpec[] = [
  { name: 'postgres', title: 'PostgreSQL', upstreamImage: 'docker.io/library/postgres:15.20-bookworm', ports: [{ port: 5432, name: 'postgres' }], connectionKey: 'STELLA_DATABASE_URL', description: 'Relational store of every service.' },
  { name: 'redis', title: 'Redis', upstreamImage: 'docker.io/library/redis:7.0.15-bookworm', ports: [{ port: 6379, name: 'redis' }], connectionKey: 'STELLA_REDIS_URL', description: 'Cache (policy rules, RBAC).' },
  { name: 'object-store', title: 'S3-compatible object store (SeaweedFS)', upstreamImage: 'docker.io/chrislusf/seaweedfs:4.53', ports: [{ port: 9000, name: 's3' }], publishedPort: 9000, connectionKey: 'STELLA_OBJECT_STORE_ENDPOINT', description: 'Artifacts, exports and task packs.' },
  { name: 'queue', title: 'NATS', upstreamImage: 'docker.io/library/nats:2.9.10', ports: [{ port: 4222, name: 'client' }, { port: 8222, name: 'monitor' }], publishedPort: 4222, connectionKey: 'STELLA_QUEUE_URL', description: 'Work queue between the scheduler and the workers.' },
  { name: 'otel-collector', title: 'OpenTelemetry Collector', upstreamImage: 'docker.io/otel/opentelemetry-collector-contrib:0.165.0', ports: [{ port: 4317, name: 'otlp-grpc' }, { port: 4318, name: 'otlp-http' }], connectionKey: 'STELLA_OTEL_EXPORTER_ENDPOINT', description: 'Receives traces and metrics (optional).' },
];

export const catalog: Catalog = { services, support, sharedConfig };
