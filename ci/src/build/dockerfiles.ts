/**
 * The per-service Dockerfiles (docker/stella-<service>.Dockerfile), generated
 * from the catalog. They are the source of truth for what is in an image: our
 * builder interprets them (dockerfile.ts), and plain BuildKit builds the same
 * content from them:
 *
 *   docker buildx build -f docker/stella-api.Dockerfile --build-arg BASE_IMAGE=… .
 *
 * (from the repo root, after the JavaScript build wrote dist/app/<service>/).
 *
 * Regenerate: `node ci/src/build/dockerfiles.ts` (writes docker/*.Dockerfile);
 * `node ci/src/build/dockerfiles.ts --check` exits 1 when the committed files drift.
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { catalog as theCatalog, type Catalog, type ServiceSpec } from '../catalog/index.ts';

/** The upstream base the product defaults to; builds here override it with BASE_IMAGE. */
export const UPSTREAM_BASE_IMAGE = 'gcr.io/distroless/nodejs24-debian12:nonroot';
/** org.opencontainers.image.source of every image. */
export { SOURCE_URL } from '../catalog/index.ts';
import { SOURCE_URL } from '../catalog/index.ts';
export const LICENSES = 'Apache-2.0';
export const VENDOR = 'StellaOps';
/** The runtime user of every image (distroless "nonroot"). */
export const RUNTIME_USER = '65532:65532';
/** Where the JavaScript build writes each service's bundle, relative to the repo root (the build context). */
export const APP_DIST_DIR = 'dist/app';
/** Where each service's files live in its image. */
export const APP_DIR = '/app';
export const NODE_BIN = '/nodejs/bin/node';
export const DOCKERFILE_DIR = 'docker';

export const HEALTHCHECK = { interval: '10s', timeout: '3s', startPeriod: '20s', retries: 3 } as const;

export function dockerfilePath(service: string): string {
  return `${DOCKERFILE_DIR}/stella-${service}.Dockerfile`;
}

/** A Dockerfile double-quoted string: escapes `\`, `"` and `$` so that BuildKit reads the value back verbatim. */
function q(value: string): string {
  return `"${value.replace(/[\\"$]/g, (c) => `\\${c}`)}"`;
}

/** The ENV an image must enforce: NODE_ENV and every locked catalog key (the AOC rule: STELLA_DISABLE_MERGE=true). */
export function enforcedEnv(s: ServiceSpec): [string, string][] {
  const env: [string, string][] = [['NODE_ENV', 'production']];
  for (const k of s.config) if (k.locked && k.default !== undefined) env.push([k.key, String(k.default)]);
  return env;
}

export function renderDockerfile(s: ServiceSpec): string {
  const port = `${s.http.port}/tcp`;
  const labels: [string, string][] = [
    ['org.opencontainers.image.title', s.image],
    ['org.opencontainers.image.description', `StellaOps ${s.title}: ${s.description}`],
    ['org.opencontainers.image.version', '${VERSION}'],
    ['org.opencontainers.image.revision', '${GIT_COMMIT}'],
    ['org.opencontainers.image.created', '${BUILD_DATE}'],
    ['org.opencontainers.image.source', SOURCE_URL],
    ['org.opencontainers.image.licenses', LICENSES],
    ['org.opencontainers.image.vendor', VENDOR],
    ['io.stellaops.service', s.name],
    ['io.stellaops.ports', port],
  ];
  // Label values are quoted; the three build-arg references are the only expansions.
  const label = (k: string, v: string) => (v.startsWith('${') ? `${k}="${v}"` : `${k}=${q(v)}`);
  const lines = [
    `# Generated from ci/src/catalog by ci/src/build/dockerfiles.ts — do not edit; regenerate with \`node ci/src/build/dockerfiles.ts\`.`,
    `#`,
    `# ${s.image}: ${s.title}. No RUN: nothing executes at build time, so every platform builds natively.`,
    `# Build from the repo root after the JavaScript build wrote ${APP_DIST_DIR}/${s.name}/:`,
    `#   docker buildx build -f ${dockerfilePath(s.name)} --build-arg BASE_IMAGE=<node 24 distroless base> \\`,
    `#     --build-arg VERSION=<version> --build-arg GIT_COMMIT=<sha> --build-arg BUILD_DATE=<RFC 3339> .`,
    `ARG BASE_IMAGE=${UPSTREAM_BASE_IMAGE}`,
    `FROM \${BASE_IMAGE}`,
    `ARG VERSION=0.0.0-dev`,
    `ARG GIT_COMMIT=unknown`,
    `ARG BUILD_DATE=1970-01-01T00:00:00Z`,
    `LABEL ${labels.map(([k, v]) => label(k, v)).join(' \\\n      ')}`,
    `COPY --chown=0:0 ${APP_DIST_DIR}/${s.name}/ ${APP_DIR}/`,
    `WORKDIR ${APP_DIR}`,
    `ENV ${enforcedEnv(s).map(([k, v]) => `${k}=${v}`).join(' ')}`,
    `EXPOSE ${port}`,
    `USER ${RUNTIME_USER}`,
    `STOPSIGNAL SIGTERM`,
    `HEALTHCHECK --interval=${HEALTHCHECK.interval} --timeout=${HEALTHCHECK.timeout} --start-period=${HEALTHCHECK.startPeriod} --retries=${HEALTHCHECK.retries} \\`,
    `  CMD ["${NODE_BIN}", "${APP_DIR}/healthcheck.js"]`,
    `ENTRYPOINT ["${NODE_BIN}"]`,
    `CMD ["${APP_DIR}/main.js"]`,
    '',
  ];
  return lines.join('\n');
}

/** Every Dockerfile, keyed by its path relative to the repo root, in catalog order. */
export function renderDockerfiles(c: Catalog = theCatalog): Map<string, string> {
  return new Map(c.services.map((s) => [dockerfilePath(s.name), renderDockerfile(s)]));
}

/** The Dockerfiles as `{ path, content }` for ci/src/generate's `fileGenerators` list. */
export function dockerfileFiles(c: Catalog = theCatalog): { path: string; content: string }[] {
  return [...renderDockerfiles(c)].map(([path, content]) => ({ path, content }));
}

/** Paths (relative to `root`) whose content differs from the generated one, or that are missing. */
export function dockerfileDrift(root: string, c: Catalog = theCatalog): string[] {
  const drift: string[] = [];
  for (const [path, want] of renderDockerfiles(c)) {
    let got: string | undefined;
    try {
      got = readFileSync(join(root, path), 'utf8');
    } catch {
      got = undefined;
    }
    if (got !== want) drift.push(path);
  }
  return drift;
}

export function writeDockerfiles(root: string, c: Catalog = theCatalog): string[] {
  const written: string[] = [];
  for (const [path, text] of renderDockerfiles(c)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
    written.push(path);
  }
  return written;
}

if (import.meta.main) {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
  if (process.argv.includes('--check')) {
    const drift = dockerfileDrift(root);
    if (drift.length) {
      process.stderr.write(`Dockerfiles drifted from the catalog: ${drift.join(', ')}; run node ci/src/build/dockerfiles.ts\n`);
      process.exitCode = 1;
    }
  } else {
    for (const p of writeDockerfiles(root)) process.stdout.write(`wrote ${p}\n`);
  }
}
