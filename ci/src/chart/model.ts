/**
 * The chart model: deploy/helm/stella/ derived from the service catalog (ci/src/catalog)
 * and the support image recipes (ci/src/support/recipes.ts).
 *
 *   - `chartValues()`      the values tree (./values-model.ts): global settings, external
 *                          dependencies, the bundled lab mode, ingress, migrations, upgrade gates,
 *                          version skew, metrics, network policy, secrets, one block per component;
 *   - `componentFacts()`   what the templates need from the catalog and cannot take from values:
 *                          ports, health paths, roles, dependencies and, per component, which
 *                          `STELLA_*` key each value maps to (a service gets only keys it knows);
 *   - `supportFacts()`     the bundled StatefulSets' runtime contract (uid, volume, ports, probe).
 *
 * How each catalog key reaches a container (`keyWiring`):
 *   wired    the chart computes it (dependency endpoints, secrets as `<KEY>_FILE` files,
 *            the API URL, STELLA_MIGRATIONS_AUTO=false while the migrator hook runs);
 *   global   one value for every service that reads the key (log level, offline mode, …);
 *   config   `<component>.config.<name>`, the service's own tunables, catalog default as default;
 *   secret   `<component>.secretRefs.<name>`: a reference to a Secret key, mounted as a file;
 *   image    left to the image (the listener port, the config directory, the locked AOC rule)
 *            or to the quickstart (never set by the chart).
 */
import { catalog, configFor } from '../catalog/index.ts';
import type { ConfigKey, ServiceSpec, SupportName } from '../catalog/types.ts';
import { RECIPES } from '../support/recipes.ts';
import { bool, int, list, map, obj, str, type Leaf, type Node, type Obj } from './values-model.ts';

export const CHART_NAME = 'stella';
export const CHART_DIR = 'deploy/helm/stella';
/** Kubernetes versions the chart supports (Chart.yaml kubeVersion). */
export const KUBE_VERSION = '>=1.29.0-0 <1.38.0-0';
/** The committed Chart.yaml's version; the `chart` function writes the release's. */
export const DEV_VERSION = '0.0.0-dev';
/** Where the committed values point until a release pins them. */
export const UPSTREAM_REGISTRY = 'ghcr.io';
export const UPSTREAM_NAMESPACE = 'stellaops';
/** The uid/gid every StellaOps image runs as (docker/*.Dockerfile USER). */
export const RUNTIME_UID = 65532;
/** Where secret files are mounted in every container; `<KEY>_FILE` points here. */
export const SECRETS_MOUNT = '/var/run/secrets/stella';

/** Values keys of the support services (bundled mode and external endpoints). */
export const SUPPORT_VALUES_KEY: Readonly<Record<SupportName, string>> = {
  postgres: 'postgresql',
  redis: 'redis',
  'object-store': 'objectStore',
  queue: 'queue',
  'otel-collector': 'otel',
};

/** Support services the bundled lab mode runs as StatefulSets (the collector stays external). */
export const BUNDLED: readonly SupportName[] = ['postgres', 'redis', 'object-store', 'queue'];

export type KeyWiring =
  | { readonly kind: 'wired'; readonly key: string; readonly how: string }
  | { readonly kind: 'global'; readonly key: string; readonly value: string }
  | { readonly kind: 'config'; readonly key: string; readonly name: string }
  | { readonly kind: 'secret'; readonly key: string; readonly name: string }
  | { readonly kind: 'image'; readonly key: string; readonly why: string };

/** Keys whose value the chart computes. */
export const WIRED: Readonly<Record<string, string>> = {
  STELLA_DATABASE_URL: 'file from postgresql.existingSecret (or the bundled Secret)',
  STELLA_REDIS_URL: 'file from redis.existingSecret (or the bundled Secret)',
  STELLA_QUEUE_URL: 'queue.url (or the bundled NATS)',
  STELLA_OBJECT_STORE_ENDPOINT: 'objectStore.endpoint (or the bundled store)',
  STELLA_OBJECT_STORE_ACCESS_KEY: 'file from objectStore.existingSecret (or the bundled Secret); unset: the workload identity',
  STELLA_OBJECT_STORE_SECRET_KEY: 'file from objectStore.existingSecret (or the bundled Secret)',
  STELLA_OTEL_EXPORTER_ENDPOINT: 'otel.endpoint',
  STELLA_API_URL: 'the API Service of the release',
  STELLA_MIGRATIONS_AUTO: 'false while migrations.enabled with external dependencies (the migrator hook runs them); bundled: the API migrates at start (its migrator is a post-install hook, which helm --wait runs only after every pod is Ready)',
};

/** Keys with one value for every service: the values path (docs) and the template expression (templates/_catalog.tpl). */
export const GLOBAL: Readonly<Record<string, { readonly path: string; readonly expr: string }>> = {
  STELLA_LOG_LEVEL: { path: 'global.logLevel', expr: '.Values.global.logLevel' },
  STELLA_METRICS_ENABLED: { path: 'metrics.enabled', expr: '.Values.metrics.enabled' },
  STELLA_SHUTDOWN_GRACE_SECONDS: { path: 'global.shutdownGraceSeconds', expr: '.Values.global.shutdownGraceSeconds' },
  STELLA_READINESS_TIMEOUT_MS: { path: 'global.readinessTimeoutMs', expr: '.Values.global.readinessTimeoutMs' },
  STELLA_OFFLINE: { path: 'global.offline', expr: '.Values.global.offline' },
  STELLA_OBJECT_STORE_BUCKET: { path: 'objectStore.bucket', expr: '.Values.objectStore.bucket' },
  STELLA_OBJECT_STORE_REGION: { path: 'objectStore.region', expr: '.Values.objectStore.region' },
  STELLA_OBJECT_STORE_PATH_STYLE: { path: 'objectStore.pathStyle (always true in bundled mode)', expr: '(or .Values.bundled.enabled .Values.objectStore.pathStyle)' },
  STELLA_OBJECT_STORE_SSE: { path: 'objectStore.sse', expr: '.Values.objectStore.sse' },
  STELLA_QUEUE_RETENTION: { path: 'queue.retention', expr: '.Values.queue.retention' },
};

/** Keys the chart never sets. */
const IMAGE: Readonly<Record<string, string>> = {
  STELLA_HTTP_PORT: 'the catalog port, which the probes and Services use',
  STELLA_CONFIG_DIR: 'the image default',
  STELLA_DISABLE_MERGE: 'locked to true (the AOC rule)',
  STELLA_QUICKSTART_MODE: 'quickstart only (false)',
  STELLA_ADMIN_PASSWORD: 'quickstart only',
};

/** `STELLA_TOKEN_TTL` → `tokenTtl`. */
export function valueName(key: string): string {
  const parts = key.replace(/^STELLA_/, '').toLowerCase().split('_');
  return parts[0] + parts.slice(1).map((p) => p.charAt(0).toUpperCase() + p.slice(1)).join('');
}

export function keyWiring(k: ConfigKey): KeyWiring {
  if (WIRED[k.key]) return { kind: 'wired', key: k.key, how: WIRED[k.key]! };
  if (GLOBAL[k.key]) return { kind: 'global', key: k.key, value: GLOBAL[k.key]!.path };
  if (IMAGE[k.key] || k.locked || k.group === 'Quickstart') return { kind: 'image', key: k.key, why: IMAGE[k.key] ?? (k.locked ? 'locked' : 'quickstart only') };
  if (k.secret) return { kind: 'secret', key: k.key, name: valueName(k.key) };
  return { kind: 'config', key: k.key, name: valueName(k.key) };
}

/** A catalog key as a value: its type, bounds, choices and default. */
function keyLeaf(k: ConfigKey): Leaf {
  const doc = `${k.description} (${k.key})`;
  switch (k.type) {
    case 'integer':
      return int(typeof k.default === 'number' ? k.default : 0, doc, k.min, k.max);
    case 'boolean':
      return bool(k.default === true, doc);
    case 'enum':
      return str(String(k.default ?? k.choices![0]), doc, { choices: k.choices });
    case 'duration':
      return str(String(k.default ?? ''), `${doc}; <integer>ms|s|m|h`, { pattern: '^([0-9]+(ms|s|m|h))?$' });
    case 'url':
      return str(String(k.default ?? ''), `${doc}; empty: unset`, { pattern: '^([a-z][a-z0-9+.-]*://.+)?$' });
    default:
      return str(String(k.default ?? ''), doc);
  }
}

const QUANTITY_CPU = '^[0-9]+(\\.[0-9]+)?m?$';
const QUANTITY_MEM = '^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$';
const DIGEST = '^(sha256:[0-9a-f]{64})?$';

function resources(cpuReq: string, memReq: string, cpuLim: string, memLim: string): Obj {
  return obj('Requests and limits of the container (set for every container; the chart refuses none).', {
    requests: obj('What the scheduler reserves.', { cpu: str(cpuReq, 'CPU request.', { pattern: QUANTITY_CPU }), memory: str(memReq, 'Memory request.', { pattern: QUANTITY_MEM }) }),
    limits: obj('The ceiling.', { cpu: str(cpuLim, 'CPU limit.', { pattern: QUANTITY_CPU }), memory: str(memLim, 'Memory limit (the container is OOM-killed above it).', { pattern: QUANTITY_MEM }) }),
  });
}

export function imageNode(registry: string, repository: string, what: string): Obj {
  return obj(`The ${what} image: \`registry/repository@digest\` when a digest is set (it overrides the tag), else \`registry/repository:tag\`.`, {
    registry: str(registry, 'Registry host; global.imageRegistry, when set, replaces it (digests are kept).'),
    repository: str(repository, 'Repository below the registry.'),
    tag: str('', 'Tag, and the version the skew check reads; empty: the chart appVersion.'),
    digest: str('', 'Index digest (sha256:…); overrides the tag. The released chart has every digest set.', { pattern: DIGEST }),
    pullPolicy: str('IfNotPresent', 'Image pull policy.', { choices: ['IfNotPresent', 'Always', 'Never'] }),
  });
}

function probe(initial: number, period: number, timeout: number, failures: number, what: string): Obj {
  return obj(what, {
    initialDelaySeconds: int(initial, 'Seconds before the first probe.', 0, 3600),
    periodSeconds: int(period, 'Seconds between probes.', 1, 3600),
    timeoutSeconds: int(timeout, 'Seconds before a probe times out.', 1, 600),
    failureThreshold: int(failures, 'Failures in a row before the probe fails.', 1, 1000),
  });
}

/** Defaults of the resources per role. */
const ROLE_RESOURCES = { http: resources('100m', '192Mi', '1', '512Mi'), worker: resources('50m', '160Mi', '500m', '384Mi') } as const;

function componentNode(s: ServiceSpec): Obj {
  const config: Record<string, Node> = {};
  const secrets: Record<string, Node> = {};
  for (const k of configFor(s)) {
    const w = keyWiring(k);
    if (w.kind === 'config') config[w.name] = keyLeaf(k);
    if (w.kind === 'secret') {
      secrets[w.name] = obj(`Secret holding ${k.key} (${k.description}); mounted as a file, the container gets ${k.key}_FILE.`, {
        name: str('', 'Name of an existing Secret; empty: unset.'),
        key: str(valueName(k.key), 'Key in that Secret.'),
      });
    }
  }
  const props: Record<string, Node> = {
    enabled: bool(s.enabledByDefault, `Deploy ${s.title}${s.enabledByDefault ? '' : ' (off by default)'}.`),
    replicaCount: int(1, 'Replicas when autoscaling is off.', 0, 100),
    image: imageNode(UPSTREAM_REGISTRY, `${UPSTREAM_NAMESPACE}/${s.image}`, s.title),
    config: obj(`${s.title}'s own settings, each mapped to its STELLA_* key (default: the catalog default).`, config),
  };
  if (Object.keys(secrets).length) props.secretRefs = obj(`${s.title}'s secrets, as references to existing Secrets.`, secrets);
  Object.assign(props, {
    resources: ROLE_RESOURCES[s.role],
    autoscaling: obj('HorizontalPodAutoscaler (autoscaling/v2) on CPU utilisation.', {
      enabled: bool(false, 'Render the HPA (replicaCount is then ignored).'),
      minReplicas: int(2, 'Lowest replica count.', 1, 100),
      maxReplicas: int(5, 'Highest replica count.', 1, 1000),
      targetCPUUtilizationPercentage: int(75, 'Average CPU utilisation the HPA aims for.', 1, 100),
    }),
    pdb: obj('PodDisruptionBudget.', {
      enabled: bool(false, 'Render the PDB.'),
      minAvailable: int(1, 'Pods that must stay available during voluntary disruptions.', 0, 100),
    }),
    probes: obj(`Probes on the catalog's health paths (${s.http.liveness}, ${s.http.readiness}) at port ${s.http.port}.`, {
      startup: probe(0, 2, 3, 30, 'Startup probe (liveness path): the other probes wait for it.'),
      liveness: probe(0, 10, 3, 3, 'Liveness probe: the process answers.'),
      readiness: probe(0, 5, 3, 2, 'Readiness probe: dependencies reachable, start-up work done.'),
    }),
    terminationGracePeriodSeconds: int(30, 'Grace period after SIGTERM; keep global.shutdownGraceSeconds below it.', 1, 3600),
    serviceAccount: obj('The component\'s own ServiceAccount (no Role is bound: no component calls the Kubernetes API).', {
      create: bool(true, 'Create it.'),
      name: str('', 'Name; empty: <release fullname>-' + s.name + '.'),
      annotations: map('Annotations (e.g. a workload identity binding for the object store).'),
    }),
    podAnnotations: map('Extra pod annotations.'),
    podLabels: map('Extra pod labels.'),
    nodeSelector: map('Node selector.'),
    tolerations: list('Tolerations.'),
    affinity: map('Affinity (Kubernetes object).', 'any'),
    topologySpreadConstraints: list('Topology spread constraints.'),
    priorityClassName: str('', 'PriorityClass name; empty: none.'),
  });
  return obj(`${s.title} (${s.name}): ${s.description}`, props);
}

function bundledNode(name: SupportName): Obj {
  const r = RECIPES[name];
  const sizes: Record<string, string> = { postgres: '8Gi', redis: '1Gi', 'object-store': '20Gi', queue: '4Gi' };
  return obj(`Bundled ${r.title} (a StatefulSet with a PersistentVolumeClaim).`, {
    image: imageNode('docker.io', catalog.support.find((x) => x.name === name)!.upstreamImage.replace(/^docker\.io\//, '').replace(/:[^/:]+$/, ''), `bundled ${r.title}`),
    storage: obj('The data volume.', {
      size: str(sizes[name]!, 'Size of the PersistentVolumeClaim.', { pattern: QUANTITY_MEM }),
      storageClassName: str('', 'StorageClass; empty: the cluster default.'),
    }),
    resources: resources('100m', '256Mi', '1', '1Gi'),
    ...(name === 'object-store' ? { bucketJob: bucketJobNode() } : {}),
  });
}

/**
 * The object store's bucket in bundled mode: a regular Job of the release (not a hook: `helm install
 * --wait` runs post-install hooks only after every pod is Ready, and the services' readiness needs the
 * bucket) running the quickstart's own `stella-init.mjs bucket` with the API image.
 */
function bucketJobNode(): Obj {
  return obj('The Job that creates objectStore.bucket in the bundled store (the API image runs files/stella-init.mjs bucket, the Compose quickstart\'s object-store-init; an existing bucket is fine). A regular Job named after the release revision, so every install, upgrade and rollback runs it once.', {
    timeoutSeconds: int(600, 'How long it waits for the store to accept the bucket (its activeDeadlineSeconds); the install fails after that.', 30, 86400),
    resources: resources('10m', '64Mi', '200m', '128Mi'),
  });
}

const egressCidrs = (doc: string) => list(doc, 'string', ['0.0.0.0/0']);

/** The whole values tree. */
export function chartValues(): Obj {
  const components: Record<string, Node> = {};
  for (const s of catalog.services) components[s.valuesKey] = componentNode(s);
  const bundled: Record<string, Node> = {};
  for (const n of BUNDLED) bundled[SUPPORT_VALUES_KEY[n]] = bundledNode(n);

  return obj('StellaOps chart values.', {
    global: obj('Settings of every component.', {
      imageRegistry: str('', 'Relocates every image to this registry host (e.g. registry.local:5000), keeping repositories and digests; empty: each image\'s own registry.'),
      imagePullSecrets: list('Names of Secrets with registry credentials, for every pod.', 'string'),
      requireDigests: bool(false, 'Refuse to render an enabled image that has no digest (the released chart pins every image).'),
      logLevel: str('info', 'Minimum log level (STELLA_LOG_LEVEL).', { choices: ['debug', 'info', 'warn', 'error'] }),
      offline: bool(false, 'Air-gapped mode: no outbound calls beyond the configured dependencies (STELLA_OFFLINE).'),
      shutdownGraceSeconds: int(25, 'Drain deadline after SIGTERM, below each terminationGracePeriodSeconds (STELLA_SHUTDOWN_GRACE_SECONDS).', 1, 600),
      readinessTimeoutMs: int(2000, 'Timeout of each dependency check behind the readiness probe (STELLA_READINESS_TIMEOUT_MS).', 100, 60000),
      commonLabels: map('Labels added to every object.'),
    }),
    versionSkew: obj('Version skew policy: every enabled component\'s version (its image tag, else appVersion) must have the chart appVersion\'s major version, must not be newer than it, and at most maxMinorSkew minor versions older; a non-SemVer version (edge, nightly-…) must equal appVersion.', {
      enforce: bool(true, 'Fail the render (with the component and both versions) outside the policy.'),
      maxMinorSkew: int(1, 'Minor versions a component may lag the chart.', 0, 5),
    }),
    postgresql: obj('PostgreSQL (external by default).', {
      existingSecret: str('stella-postgresql', 'Secret with the connection URL (postgres://user:password@host:5432/db); ignored in bundled mode.'),
      existingSecretKey: str('url', 'Key of the URL in that Secret.'),
      port: int(5432, 'Port NetworkPolicy egress allows towards PostgreSQL.', 1, 65535),
      egressCidrs: egressCidrs('CIDRs where the external PostgreSQL lives (NetworkPolicy egress on port).'),
    }),
    redis: obj('Redis (external by default).', {
      existingSecret: str('stella-redis', 'Secret with the URL (redis://:password@host:6379/0); ignored in bundled mode.'),
      existingSecretKey: str('url', 'Key of the URL in that Secret.'),
      port: int(6379, 'Port NetworkPolicy egress allows towards Redis.', 1, 65535),
      egressCidrs: egressCidrs('CIDRs where the external Redis lives.'),
    }),
    queue: obj('NATS with JetStream (external by default).', {
      url: str('nats://nats.stella-deps.svc:4222', 'NATS URL (STELLA_QUEUE_URL); ignored in bundled mode.', { pattern: '^nats://.+' }),
      retention: str('72h', 'Retention of unconsumed work items (STELLA_QUEUE_RETENTION).', { pattern: '^[0-9]+(ms|s|m|h)$' }),
      port: int(4222, 'Port NetworkPolicy egress allows towards NATS.', 1, 65535),
      egressCidrs: egressCidrs('CIDRs where the external NATS lives.'),
    }),
    objectStore: obj('S3-compatible object store (external by default).', {
      endpoint: str('https://s3.us-east-1.amazonaws.com', 'S3 endpoint (STELLA_OBJECT_STORE_ENDPOINT); ignored in bundled mode.', { pattern: '^https?://.+' }),
      bucket: str('stella', 'Bucket (STELLA_OBJECT_STORE_BUCKET).'),
      region: str('us-east-1', 'Signing region (STELLA_OBJECT_STORE_REGION).'),
      pathStyle: bool(false, 'Path-style addressing, as MinIO/SeaweedFS need (STELLA_OBJECT_STORE_PATH_STYLE).'),
      sse: str('none', 'Server-side encryption on upload (STELLA_OBJECT_STORE_SSE).', { choices: ['none', 'AES256', 'aws:kms'] }),
      existingSecret: str('', 'Secret with the access key id and secret key; empty: the workload identity (IAM role) of the ServiceAccounts.'),
      accessKeyKey: str('accessKey', 'Key of the access key id in that Secret.'),
      secretKeyKey: str('secretKey', 'Key of the secret access key in that Secret.'),
      port: int(443, 'Port NetworkPolicy egress allows towards the store.', 1, 65535),
      egressCidrs: egressCidrs('CIDRs where the store lives.'),
    }),
    otel: obj('OpenTelemetry: traces to an OTLP/HTTP collector.', {
      endpoint: str('', 'OTLP/HTTP endpoint (STELLA_OTEL_EXPORTER_ENDPOINT); empty: tracing off.', { pattern: '^(https?://.+)?$' }),
      port: int(4318, 'Port NetworkPolicy egress allows towards the collector.', 1, 65535),
      egressCidrs: egressCidrs('CIDRs where the collector lives.'),
    }),
    bundled: obj('Bundled mode, for lab clusters only: PostgreSQL, Redis, the object store and NATS as StatefulSets from the support image lock; credentials generated into a Secret (kept across upgrades) unless given.', {
      enabled: bool(false, 'Run the dependencies in the release instead of using the external ones.'),
      auth: obj('Lab credentials; empty: generated once and kept (read back from the Secret on upgrade). They only ever land in the bundled Secret.', {
        postgresPassword: str('', 'PostgreSQL superuser password.'),
        redisPassword: str('', 'Redis password.'),
        objectStoreAccessKey: str('', 'Object store access key id.'),
        objectStoreSecretKey: str('', 'Object store secret key.'),
      }),
      ...bundled,
    }),
    ingress: obj('Two Ingresses: one host for the console, one for the API.', {
      enabled: bool(false, 'Render the Ingresses.'),
      className: str('', 'IngressClass of both; empty: the cluster default.'),
      tlsRequired: bool(false, 'Refuse to render an Ingress without a TLS Secret (production values turn it on).'),
      console: obj('The console host.', {
        host: str('console.stella.example.com', 'Host name.'),
        className: str('', 'IngressClass of this one (e.g. a public class); empty: ingress.className.'),
        tlsSecretName: str('', 'TLS Secret for the host; empty: plain HTTP (refused when tlsRequired).'),
        annotations: map('Annotations.'),
      }),
      api: obj('The API host.', {
        host: str('api.stella.example.com', 'Host name.'),
        className: str('', 'IngressClass of this one (e.g. a private gateway); empty: ingress.className.'),
        tlsSecretName: str('', 'TLS Secret for the host.'),
        annotations: map('Annotations.'),
      }),
    }),
    cdn: obj('Console as static files behind a CDN: the console Ingress becomes the CDN\'s origin (reachable only from originCidrs) while the API stays behind its own (private) Ingress.', {
      enabled: bool(false, 'Serve the console to a CDN only.'),
      originCidrs: list('Source CIDRs of the CDN (ingress-nginx whitelist-source-range on the console Ingress); required when enabled.', 'string'),
    }),
    migrations: obj('Database migrations: the stella-migrator Job (API image, `main.js migrate`, idempotent) runs as a pre-install/pre-upgrade hook, and the API starts with STELLA_MIGRATIONS_AUTO=false.', {
      enabled: bool(true, 'Run the migrator hook (off: the API migrates at start).'),
      backoffLimit: int(3, 'Retries of the Job.', 0, 20),
      activeDeadlineSeconds: int(600, 'Deadline of the Job.', 30, 86400),
      breakGlass: bool(false, 'Also render a suspended CronJob for a manual run: kubectl create job --from=cronjob/<fullname>-migrator-break-glass <name>.'),
      resources: resources('100m', '192Mi', '1', '512Mi'),
    }),
    upgrade: obj('Upgrade choreography: workers wait for the API to be ready; a post-install/post-upgrade hook blocks until Conseiller and Excitator report caughtUp on GET /status/watermark.', {
      workersWaitForApi: bool(true, 'Init container on every worker that waits for the API readiness.'),
      watermarkGate: obj('The watermark hook.', {
        enabled: bool(true, 'Render it (only when conseiller or excitator is enabled).'),
        timeoutSeconds: int(900, 'Give up (and fail the upgrade) after this long.', 30, 86400),
        intervalSeconds: int(5, 'Seconds between polls.', 1, 300),
      }),
      resources: resources('10m', '64Mi', '200m', '128Mi'),
    }),
    metrics: obj('Prometheus metrics on GET /metrics of each component\'s port.', {
      enabled: bool(true, 'Serve metrics (STELLA_METRICS_ENABLED).'),
      podAnnotations: bool(true, 'prometheus.io/scrape, port and path annotations on the pods.'),
      serviceMonitor: obj('ServiceMonitor (Prometheus Operator).', {
        enabled: bool(false, 'Render one per component.'),
        interval: str('30s', 'Scrape interval.', { pattern: '^[0-9]+(ms|s|m|h)$' }),
        labels: map('Labels the Prometheus selects ServiceMonitors by.'),
      }),
      scraperNamespaceSelector: map('NetworkPolicy: namespace labels of the Prometheus allowed to scrape; empty: any namespace.', 'string', { 'kubernetes.io/metadata.name': 'monitoring' }),
    }),
    networkPolicy: obj('A default-deny NetworkPolicy for every pod of the release, plus explicit allows per dependency and port.', {
      enabled: bool(true, 'Render the policies.'),
      ingressControllerNamespaceSelector: map('Namespace labels of the ingress controller allowed to reach the console and the API.', 'string', { 'kubernetes.io/metadata.name': 'ingress-nginx' }),
      dnsNamespaceSelector: map('Namespace labels of the cluster DNS (egress UDP/TCP 53).', 'string', { 'kubernetes.io/metadata.name': 'kube-system' }),
    }),
    externalSecrets: obj('Render ExternalSecret resources (external-secrets.io/v1) that create the Secrets the existingSecret values name.', {
      enabled: bool(false, 'Render them.'),
      secretStoreRef: obj('The store.', { name: str('stella', 'SecretStore name.'), kind: str('ClusterSecretStore', 'Kind.', { choices: ['SecretStore', 'ClusterSecretStore'] }) }),
      refreshInterval: str('1h', 'How often the operator refreshes.', { pattern: '^[0-9]+(ms|s|m|h)$' }),
      remoteKeys: obj('Remote keys for each Secret (empty: that Secret is not managed).', {
        postgresql: str('', 'Remote key of the PostgreSQL URL.'),
        redis: str('', 'Remote key of the Redis URL.'),
        objectStoreAccessKey: str('', 'Remote key of the object store access key.'),
        objectStoreSecretKey: str('', 'Remote key of the object store secret key.'),
      }),
    }),
    sealedSecrets: obj('Render SealedSecret resources (bitnami.com/v1alpha1) from encrypted data.', {
      enabled: bool(false, 'Render them.'),
      secrets: map('Secret name → { key: encrypted value } as kubeseal prints it.', 'any'),
    }),
    ...components,
  });
}

/** What the templates need from the catalog (rendered into templates/_catalog.tpl). */
export interface ComponentFacts {
  readonly name: string;
  readonly valuesKey: string;
  readonly title: string;
  readonly role: 'http' | 'worker';
  readonly port: number;
  readonly liveness: string;
  readonly readiness: string;
  readonly metrics: string;
  readonly dependsOn: readonly string[];
  /** Every key the service reads (the chart sets a subset). */
  readonly keys: readonly string[];
  /** `<component>.config.<name>` → key. */
  readonly config: Readonly<Record<string, string>>;
  /** `<component>.secretRefs.<name>` → key. */
  readonly secrets: Readonly<Record<string, string>>;
  /** The global keys this service reads (their values: stella.globalValues). */
  readonly globals: readonly string[];
  /** Wired keys this service reads. */
  readonly wired: readonly string[];
}

export function componentFacts(): ComponentFacts[] {
  return catalog.services.map((s) => {
    const config: Record<string, string> = {};
    const secrets: Record<string, string> = {};
    const globals: string[] = [];
    const wired: string[] = [];
    const keys = configFor(s);
    for (const k of keys) {
      const w = keyWiring(k);
      if (w.kind === 'config') config[w.name] = k.key;
      else if (w.kind === 'secret') secrets[w.name] = k.key;
      else if (w.kind === 'global') globals.push(k.key);
      else if (w.kind === 'wired') wired.push(k.key);
    }
    return {
      name: s.name,
      valuesKey: s.valuesKey,
      title: s.title,
      role: s.role,
      port: s.http.port,
      liveness: s.http.liveness,
      readiness: s.http.readiness,
      metrics: s.http.metrics,
      dependsOn: s.dependsOn,
      keys: keys.map((k) => k.key),
      config,
      secrets,
      globals,
      wired,
    };
  });
}

export interface SupportFacts {
  readonly name: SupportName;
  readonly valuesKey: string;
  readonly title: string;
  readonly uid: number;
  readonly volume: string;
  readonly ports: readonly { readonly name: string; readonly port: number }[];
  /** The port services connect to. */
  readonly port: number;
}

export function supportFacts(): SupportFacts[] {
  return BUNDLED.map((n) => {
    const r = RECIPES[n];
    const s = catalog.support.find((x) => x.name === n)!;
    return { name: n, valuesKey: SUPPORT_VALUES_KEY[n], title: r.title, uid: r.user.uid, volume: r.volume, ports: s.ports, port: s.ports[0]!.port };
  });
}
