/**
 * What each support image is made of: the Debian packages (roots of a
 * dependency closure, minus what only maintainer scripts need), or a Go binary
 * built from pinned modules, plus the runtime contract (user, volume,
 * entrypoint, ports). The catalog (ci/src/catalog) names the upstream image
 * each one stands in for; the upstream default is the same software.
 */
import { SUPPORT_NAMES } from '../catalog/types.ts';

/**
 * The images `support-images` builds: the catalog's support services, plus nginx, the Compose
 * quickstart's TLS sidecar (the `tls` profile), and the registry `quickstart.sh --bundle` starts
 * from the air-gap bundle to load it into. Neither is a catalog support service: no StellaOps
 * service depends on them, and the chart terminates TLS at its ingress.
 */
export const SUPPORT_IMAGE_NAMES = [...SUPPORT_NAMES, 'nginx', 'registry'] as const;
export type SupportImageName = (typeof SUPPORT_IMAGE_NAMES)[number];

/** Debian suite every Debian-based support image is built from. */
export const SUPPORT_DEBIAN = { id: 'debian', versionId: '12', codename: 'bookworm' } as const;

/** Packages of every support image (no shell, no package manager): what distroless `static` ships. */
export const COMMON_DEBS = ['base-files', 'netbase', 'tzdata', 'ca-certificates'] as const;

/**
 * Never pulled into an image by the closure: they serve maintainer scripts,
 * init systems, Debian's multi-version wrappers (perl) or JIT (libllvm14, ~100 MB;
 * the PostgreSQL image runs with jit=off and its llvmjit module removed).
 */
export const EXCLUDED_DEBS: readonly string[] = [
  'adduser', 'debconf', 'debconf-2.0', 'dpkg', 'debianutils', 'init-system-helpers', 'lsb-base', 'sysvinit-utils',
  'sensible-utils', 'postgresql-common', 'postgresql-client-common', 'ssl-cert', 'locales', 'locales-all',
  'perl', 'perl-base', 'perl-modules-5.36', 'libllvm14', 'passwd', 'login', 'systemd', 'systemd-sysv', 'coreutils',
  'ucf', 'logrotate', 'cron', 'lsb-release', 'procps', 'openssl', 'libc-bin', 'mawk', 'gawk', 'sed', 'grep', 'util-linux',
  // nginx's Depends (its init script's `ip`); nothing in the image runs it.
  'iproute2',
];

export interface GoBinary {
  /** Key in the inputs lock and the cache. */
  readonly id: 'seaweedfs' | 'otelcol' | 'probe';
  /** The module that is built (a wrapper module under tools/). */
  readonly moduleDir: string;
  /** Package to build, relative to moduleDir's module (`.` or an import path). */
  readonly pkg: string;
  /** Where the binary goes in the image. */
  readonly pathInImage: string;
  /** The upstream module and version (as the wrapper pins it), for labels and the SBOM root. */
  readonly upstreamModule: string;
  readonly upstreamVersion: string;
  /** Human version (release number) of the software. */
  readonly version: string;
  readonly license: string;
  readonly homepage: string;
  /** Source files of moduleDir that are part of the cache key besides go.mod and go.sum (our own modules' main.go). */
  readonly sources?: readonly string[];
}

/**
 * stella-probe (tools/probe, our own, standard library only): the health check of the images
 * that have no shell or HTTP client (NATS, SeaweedFS, the collector, nginx). `stella-probe URL...`
 * exits 0 when every http:// URL answers 2xx and every tcp://host:port accepts.
 */
export const PROBE: GoBinary = {
  id: 'probe',
  moduleDir: 'tools/probe',
  pkg: '.',
  pathInImage: '/usr/bin/stella-probe',
  upstreamModule: 'stellaops.dev/tools/probe',
  upstreamVersion: 'v1.0.0',
  version: '1.0.0',
  license: 'Apache-2.0',
  homepage: 'https://github.com/stellaops/stellaops/tree/main/tools/probe',
  sources: ['main.go'],
};

export interface SupportRecipe {
  readonly name: SupportImageName;
  /** Repository name below the namespace. */
  readonly image: string;
  readonly title: string;
  readonly description: string;
  /** Root Debian packages (their Depends/Pre-Depends closure is installed), besides COMMON_DEBS. */
  readonly debs: readonly string[];
  readonly go?: GoBinary;
  /** Whether /usr/bin/stella-probe (PROBE) is in the image: its health check's probe. */
  readonly probe?: boolean;
  /** The upstream image it stands in for, when it is not a catalog support service (nginx). */
  readonly upstream?: string;
  /** The fixed runtime user (uid = gid). */
  readonly user: { readonly name: string; readonly uid: number; readonly home: string };
  /** The only writable path (an image volume, owned by the user). */
  readonly volume: string;
  readonly volumeMode: number;
  /** A second, scratch volume (contents ephemeral: a tmpfs or emptyDir), when the software insists on one. */
  readonly scratch?: { readonly path: string; readonly why: string };
  readonly entrypoint: readonly string[];
  readonly cmd?: readonly string[];
  readonly env: readonly string[];
  readonly exposedPorts: readonly number[];
  readonly workingDir: string;
  readonly stopSignal?: string;
  /** Exec-form health check (Docker honours it; compose and the chart declare their own too). */
  readonly healthcheck?: readonly string[];
  /** Files written into the image (path → content, mode). */
  readonly files: readonly { readonly path: string; readonly content: string; readonly mode?: number }[];
  /** Paths (relative to /) removed after unpacking. */
  readonly prune: readonly string[];
  /** Whether the image contains a shell (dash), and why: shown in a label. */
  readonly shell?: string;
  /** Upstream version the package or module reports, from the locked inputs (filled at build). */
  readonly versionFrom: { readonly deb: string } | { readonly go: true };
  readonly licenses: string;
}

const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** PostgreSQL's entrypoint (dash): initdb on an empty data directory, then exec postgres. */
export const POSTGRES_ENTRYPOINT = `#!/bin/sh
# StellaOps support image: PostgreSQL entrypoint (run by dash, the only shell in
# the image). On an empty $PGDATA it runs initdb (superuser $POSTGRES_USER,
# password from $POSTGRES_PASSWORD or the file $POSTGRES_PASSWORD_FILE,
# scram-sha-256 over TCP), creates $POSTGRES_DB, then execs postgres listening on
# all addresses, without a Unix socket (the root filesystem is read-only) and
# without JIT. Same variables as the upstream postgres image.
set -eu
PGDATA="\${PGDATA:-/var/lib/postgresql/data}"
export PGDATA
case "\${1:-}" in
  ''|-*) set -- postgres "$@" ;;
esac
if [ "$1" != postgres ]; then exec "$@"; fi
shift
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  user="\${POSTGRES_USER:-postgres}"
  db="\${POSTGRES_DB:-$user}"
  if [ -n "\${POSTGRES_PASSWORD_FILE:-}" ]; then
    pwfile="$POSTGRES_PASSWORD_FILE"
  elif [ -n "\${POSTGRES_PASSWORD:-}" ]; then
    pwfile=/dev/stdin
  else
    echo "stella-postgres: $PGDATA is empty and no password is set: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" >&2
    exit 1
  fi
  case "$user$db" in *'"'*) echo 'stella-postgres: POSTGRES_USER and POSTGRES_DB must not contain a double quote' >&2; exit 1 ;; esac
  printf '%s\\n' "\${POSTGRES_PASSWORD:-}" | initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" \\
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C \${POSTGRES_INITDB_ARGS:-} >&2
  printf '%s\\n' '# stella-postgres: every address, with a password' 'host all all all scram-sha-256' >> "$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    printf 'CREATE DATABASE "%s";\\n' "$db" | postgres --single -D "$PGDATA" -c jit=off postgres >/dev/null
  fi
  echo "stella-postgres: initialised $PGDATA (user $user, database $db)" >&2
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories= -c jit=off "$@"
`;

export const REDIS_CONF = `# StellaOps support image: Redis configuration. Pass --requirepass <secret>
# (or other options) as arguments; they override these lines.
bind * -::*
protected-mode no
port 6379
daemonize no
supervised no
logfile ""
dir /data
appendonly yes
appendfsync everysec
save 3600 1 300 100 60 10000
`;

export const OTELCOL_CONFIG = `# StellaOps support image: default OpenTelemetry Collector configuration.
# OTLP in (gRPC 4317, HTTP 4318), Prometheus scrape (the collector's own
# metrics by default; compose and the chart mount a config that scrapes every
# service's /metrics), batch, out to the debug exporter and to JSON lines under
# /var/lib/otelcol (the volume). Health: http://:13133/.
extensions:
  health_check:
    endpoint: 0.0.0.0:13133
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
      http:
        endpoint: 0.0.0.0:4318
  prometheus:
    config:
      scrape_configs:
        - job_name: otelcol
          scrape_interval: 30s
          static_configs:
            - targets: ['127.0.0.1:8888']
processors:
  batch:
    timeout: 1s
exporters:
  debug:
    verbosity: basic
  file/traces:
    path: /var/lib/otelcol/traces.jsonl
  file/metrics:
    path: /var/lib/otelcol/metrics.jsonl
  file/logs:
    path: /var/lib/otelcol/logs.jsonl
service:
  extensions: [health_check]
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: 8888
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug, file/traces]
    metrics:
      receivers: [otlp, prometheus]
      processors: [batch]
      exporters: [debug, file/metrics]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug, file/logs]
`;

export const SEAWEEDFS_VERSION = '4.53';
export const SEAWEEDFS_MODULE_VERSION = 'v0.0.0-20261109003541-7506e5f91cd6';
export const OTELCOL_VERSION = '0.165.0';

/** The Go binaries of an image: its own (recipe.go), then the probe. */
export function goBinariesOf(recipe: SupportRecipe): GoBinary[] {
  return [...(recipe.go ? [recipe.go] : []), ...(recipe.probe ? [PROBE] : [])];
}

/**
 * The registry's configuration: distribution 2.8 on :5000, storage under the volume, no auth
 * (it listens where `quickstart.sh --bundle` publishes it: 127.0.0.1 only), deletes off.
 */
export const REGISTRY_CONF = `# StellaOps support image: distribution (docker-registry) configuration.
# Storage under /var/lib/registry (the volume); no authentication: publish it on
# loopback only (quickstart.sh --bundle does), or mount your own config here.
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
`;

/** The image's default nginx configuration (compose mounts its own, deploy/compose/tls/nginx.conf). */
export const NGINX_CONF = `# StellaOps support image: default nginx configuration. Non-root (uid 101), read-only root:
# the pid and temporary files go to /tmp and /var/lib/nginx (the volume). A health endpoint on
# 127.0.0.1:8099/healthz (stella-probe checks it); mount your own configuration over this file,
# keeping that server block, the pid and the temp paths. Started with -e stderr -g 'daemon off;':
# no daemon or error_log directive needed.
worker_processes auto;
pid /tmp/nginx.pid;

events {
  worker_connections 512;
}

http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log /dev/stdout;
  server_tokens off;
  client_body_temp_path /var/lib/nginx/body;
  proxy_temp_path /var/lib/nginx/proxy;
  fastcgi_temp_path /var/lib/nginx/fastcgi;
  uwsgi_temp_path /var/lib/nginx/uwsgi;
  scgi_temp_path /var/lib/nginx/scgi;

  server {
    listen 127.0.0.1:8099;
    access_log off;
    location = /healthz {
      return 200 "ok\\n";
    }
  }

  server {
    listen 8080;
    root /usr/share/nginx/html;
  }
}
`;

/** Exec-form health checks of the images without pg_isready/redis-cli: stella-probe on their own health endpoints. */
export const PROBE_HEALTHCHECKS = {
  /** NATS's monitoring port: /healthz answers 200 once the server (and JetStream) is up. */
  queue: ['CMD', '/usr/bin/stella-probe', 'http://127.0.0.1:8222/healthz'],
  /** SeaweedFS: the S3 gateway's /healthz and the filer's (the filer store answers). */
  'object-store': ['CMD', '/usr/bin/stella-probe', 'http://127.0.0.1:9000/healthz', 'http://127.0.0.1:8888/healthz'],
  /** The collector's health_check extension (13133). */
  'otel-collector': ['CMD', '/usr/bin/stella-probe', 'http://127.0.0.1:13133/'],
  /** nginx's health server (NGINX_CONF, deploy/compose/tls/nginx.conf). */
  nginx: ['CMD', '/usr/bin/stella-probe', 'http://127.0.0.1:8099/healthz'],
  /** The registry's API root (200 without auth: REGISTRY_CONF has none). */
  registry: ['CMD', '/usr/bin/stella-probe', 'http://127.0.0.1:5000/v2/'],
} as const satisfies Partial<Record<SupportImageName, readonly string[]>>;

export const RECIPES: Readonly<Record<SupportImageName, SupportRecipe>> = {
  postgres: {
    name: 'postgres',
    image: 'support-postgres',
    title: 'PostgreSQL 15',
    description: "PostgreSQL 15 from Debian 12's postgresql-15, with a dash entrypoint that runs initdb on an empty data directory",
    debs: ['postgresql-15', 'postgresql-client-15', 'dash'],
    user: { name: 'postgres', uid: 999, home: '/var/lib/postgresql' },
    volume: '/var/lib/postgresql/data',
    volumeMode: 0o700,
    entrypoint: ['/bin/sh', '/usr/local/bin/stella-postgres-entrypoint'],
    cmd: ['postgres'],
    env: [`PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, 'PGDATA=/var/lib/postgresql/data'],
    exposedPorts: [5432],
    workingDir: '/var/lib/postgresql',
    stopSignal: 'SIGINT',
    healthcheck: ['CMD', 'pg_isready', '-h', '127.0.0.1', '-p', '5432', '-q'],
    files: [{ path: '/usr/local/bin/stella-postgres-entrypoint', content: POSTGRES_ENTRYPOINT, mode: 0o755 }],
    prune: ['usr/lib/postgresql/15/lib/llvmjit.so', 'usr/lib/postgresql/15/lib/llvmjit_types.bc', 'usr/lib/postgresql/15/lib/bitcode', 'usr/share/postgresql/15/man', 'etc/postgresql-common', 'usr/share/postgresql-common'],
    shell: 'dash (/bin/sh), only to run the initdb entrypoint /usr/local/bin/stella-postgres-entrypoint',
    versionFrom: { deb: 'postgresql-15' },
    licenses: 'PostgreSQL AND GPL-2.0-or-later',
  },
  redis: {
    name: 'redis',
    image: 'support-redis',
    title: 'Redis 7',
    description: "Redis from Debian 12's redis-server and redis-tools (redis-cli for health checks); no shell",
    debs: ['redis-server', 'redis-tools'],
    user: { name: 'redis', uid: 999, home: '/data' },
    volume: '/data',
    volumeMode: 0o750,
    entrypoint: ['/usr/bin/redis-server', '/etc/redis/stella.conf'],
    env: [PATH_ENV],
    exposedPorts: [6379],
    workingDir: '/data',
    healthcheck: ['CMD', '/usr/bin/redis-cli', 'ping'],
    files: [{ path: '/etc/redis/stella.conf', content: REDIS_CONF }],
    prune: ['etc/redis/redis.conf', 'etc/redis/sentinel.conf', 'etc/init.d', 'etc/logrotate.d', 'lib/systemd', 'usr/lib/systemd', 'etc/default'],
    versionFrom: { deb: 'redis-server' },
    licenses: 'BSD-3-Clause',
  },
  queue: {
    name: 'queue',
    image: 'support-queue',
    title: 'NATS with JetStream',
    description: "NATS from Debian 12's nats-server, run with JetStream (-js) storing under /data; no shell",
    debs: ['nats-server'],
    user: { name: 'nats', uid: 65532, home: '/data' },
    volume: '/data',
    volumeMode: 0o750,
    entrypoint: ['/usr/sbin/nats-server'],
    cmd: ['-js', '-sd', '/data', '-p', '4222', '-m', '8222'],
    env: [PATH_ENV],
    exposedPorts: [4222, 8222],
    workingDir: '/data',
    probe: true,
    healthcheck: PROBE_HEALTHCHECKS.queue,
    files: [],
    prune: ['etc/init.d', 'lib/systemd', 'usr/lib/systemd', 'etc/default'],
    versionFrom: { deb: 'nats-server' },
    licenses: 'Apache-2.0',
  },
  'object-store': {
    name: 'object-store',
    image: 'support-object-store',
    title: `SeaweedFS ${SEAWEEDFS_VERSION} (S3 gateway)`,
    description: 'SeaweedFS (Apache-2.0) built from Go modules: master, volume and filer in one process with the S3 gateway on 9000; credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; data under /data; no shell',
    debs: [],
    go: {
      id: 'seaweedfs',
      moduleDir: 'tools/seaweedfs',
      pkg: 'github.com/seaweedfs/seaweedfs/weed',
      pathInImage: '/usr/bin/weed',
      upstreamModule: 'github.com/seaweedfs/seaweedfs',
      upstreamVersion: SEAWEEDFS_MODULE_VERSION,
      version: SEAWEEDFS_VERSION,
      license: 'Apache-2.0',
      homepage: 'https://github.com/seaweedfs/seaweedfs',
    },
    user: { name: 'seaweed', uid: 65532, home: '/data' },
    volume: '/data',
    volumeMode: 0o750,
    // SeaweedFS listens on Unix sockets under /tmp (hard-coded) for same-process gRPC and has no TCP fallback.
    scratch: { path: '/tmp', why: 'SeaweedFS puts its local gRPC Unix sockets in /tmp (hard-coded); mount a tmpfs/emptyDir there' },
    entrypoint: ['/usr/bin/weed', '-logtostderr=true'],
    cmd: ['server', '-dir=/data', '-ip=127.0.0.1', '-ip.bind=0.0.0.0', '-master.volumeSizeLimitMB=1024', '-volume.max=0', '-filer', '-s3', '-s3.port=9000'],
    env: [PATH_ENV],
    exposedPorts: [9000],
    workingDir: '/data',
    probe: true,
    healthcheck: PROBE_HEALTHCHECKS['object-store'],
    files: [],
    prune: [],
    versionFrom: { go: true },
    licenses: 'Apache-2.0',
  },
  'otel-collector': {
    name: 'otel-collector',
    image: 'support-otel-collector',
    title: `OpenTelemetry Collector ${OTELCOL_VERSION}`,
    description: 'OpenTelemetry Collector built with the collector builder from tools/otelcol/manifest.yaml: otlp and prometheus receivers, batch, debug, file and otlp/otlphttp exporters, health_check; no shell',
    debs: [],
    go: {
      id: 'otelcol',
      moduleDir: 'tools/otelcol/generated',
      pkg: '.',
      pathInImage: '/usr/bin/otelcol-stella',
      upstreamModule: 'go.opentelemetry.io/collector/otelcol',
      upstreamVersion: `v${OTELCOL_VERSION}`,
      version: OTELCOL_VERSION,
      license: 'Apache-2.0',
      homepage: 'https://opentelemetry.io/docs/collector/',
    },
    user: { name: 'otel', uid: 10001, home: '/var/lib/otelcol' },
    volume: '/var/lib/otelcol',
    volumeMode: 0o750,
    entrypoint: ['/usr/bin/otelcol-stella'],
    cmd: ['--config', '/etc/otelcol/config.yaml'],
    env: [PATH_ENV],
    exposedPorts: [4317, 4318, 13133],
    workingDir: '/var/lib/otelcol',
    probe: true,
    healthcheck: PROBE_HEALTHCHECKS['otel-collector'],
    files: [{ path: '/etc/otelcol/config.yaml', content: OTELCOL_CONFIG }],
    prune: [],
    versionFrom: { go: true },
    licenses: 'Apache-2.0',
  },
  nginx: {
    name: 'nginx',
    image: 'support-nginx',
    title: 'nginx 1.22 (TLS sidecar)',
    description: "nginx from Debian 12's nginx and nginx-common, non-root (uid 101) on a read-only root, for the Compose quickstart's tls profile; no shell",
    upstream: 'docker.io/library/nginx:1.22.1',
    debs: ['nginx'],
    probe: true,
    user: { name: 'nginx', uid: 101, home: '/var/lib/nginx' },
    volume: '/var/lib/nginx',
    volumeMode: 0o750,
    scratch: { path: '/tmp', why: 'nginx writes its pid file there (the root filesystem is read-only); mount a tmpfs/emptyDir there' },
    entrypoint: ['/usr/sbin/nginx', '-e', 'stderr', '-g', 'daemon off;'],
    cmd: ['-c', '/etc/nginx/nginx.conf'],
    env: [PATH_ENV],
    exposedPorts: [8080, 8443, 8444],
    workingDir: '/var/lib/nginx',
    stopSignal: 'SIGQUIT',
    healthcheck: PROBE_HEALTHCHECKS.nginx,
    files: [{ path: '/etc/nginx/nginx.conf', content: NGINX_CONF }],
    prune: ['etc/nginx/sites-available', 'etc/nginx/sites-enabled', 'etc/nginx/modules-enabled', 'etc/nginx/modules-available', 'etc/nginx/snippets', 'etc/init.d', 'etc/logrotate.d', 'etc/ufw', 'etc/default', 'lib/systemd', 'usr/lib/systemd', 'var/www', 'usr/share/nginx/modules-available'],
    versionFrom: { deb: 'nginx' },
    licenses: 'BSD-2-Clause',
  },  registry: {
    name: 'registry',
    image: 'support-registry',
    title: 'Distribution registry 2.8 (air-gap loading)',
    description: "The OCI distribution registry from Debian 12's docker-registry, non-root (uid 65532) on a read-only root, storing under /var/lib/registry; what quickstart.sh --bundle loads the bundle into; no shell",
    upstream: 'docker.io/library/registry:2.8.2',
    debs: ['docker-registry'],
    probe: true,
    user: { name: 'registry', uid: 65532, home: '/var/lib/registry' },
    volume: '/var/lib/registry',
    volumeMode: 0o750,
    entrypoint: ['/usr/bin/docker-registry'],
    cmd: ['serve', '/etc/docker/registry/config.yml'],
    env: [PATH_ENV],
    exposedPorts: [5000],
    workingDir: '/var/lib/registry',
    healthcheck: PROBE_HEALTHCHECKS.registry,
    files: [{ path: '/etc/docker/registry/config.yml', content: REGISTRY_CONF }],
    prune: ['etc/init.d', 'lib/systemd', 'usr/lib/systemd', 'var/lib/docker-registry'],
    versionFrom: { deb: 'docker-registry' },
    licenses: 'Apache-2.0',
  },
};
