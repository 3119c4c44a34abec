/**
 * The shared service runtime: configuration, logs, the HTTP surface (health,
 * readiness, version, metrics, config discovery), NATS workers and graceful
 * shutdown. Each service's main.ts is a `runService({...})` call.
 *
 * Shutdown (SIGTERM/SIGINT; Node is PID 1 in the image, so handlers are explicit):
 *   1. readiness answers 503 at once;
 *   2. the listener stops accepting connections; answers carry `Connection: close`
 *      and idle keep-alive sockets are closed;
 *   3. in-flight requests finish; workers stop consuming, finish their messages, flush;
 *   4. dependencies are closed and the process exits 0 — or 1 at the
 *      STELLA_SHUTDOWN_GRACE_SECONDS deadline.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Server as NetServer, type Socket } from 'node:net';
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Msg, Subscription } from 'nats';
import type { ServiceName } from '../../../ci/src/catalog/types.ts';
import { configFor, serviceByName } from '../../../ci/src/catalog/config.ts';
import { Config, ConfigError, loadConfig } from './config.ts';
import { Dependencies, type CheckResult } from './deps.ts';
import { HttpError, matchRoute, sendJson, type RequestContext, type Route } from './http.ts';
import { Logger, Redactor, errorMessage, type LogLevel } from './log.ts';

export interface BuildInfo {
  readonly version: string;
  readonly gitCommit: string;
  readonly buildDate: string;
}

/** A NATS work handler: its return value is the reply (when the message asks for one). */
export type WorkHandler = (data: unknown, msg: Msg) => Promise<unknown>;

export interface WorkOptions {
  /** Messages handled at the same time (default STELLA_QUEUE_PREFETCH, else 1). */
  readonly concurrency?: number;
}

export interface ServiceContext {
  readonly name: ServiceName;
  readonly config: Config;
  readonly log: Logger;
  readonly deps: Dependencies;
  readonly build: BuildInfo;
  /** The directory of main.js (holds build-info.json, seed/, ui/). */
  readonly appDir: string;
  readonly metrics: Registry;
  isDraining(): boolean;
  /** Consumes `subject` (queue group `stella-<service>`) once start-up work is done. */
  work(subject: string, handler: WorkHandler, opts?: WorkOptions): void;
  /** Publishes a JSON message. */
  publish(subject: string, data: unknown): Promise<void>;
}

export interface ServiceParts {
  readonly routes?: readonly Route[];
  /** Start-up work (migrations, seed); retried with backoff until it succeeds. Readiness is 503 until then. */
  readonly start?: () => Promise<void>;
  /** Flushes background work during shutdown (after consumers stopped). */
  readonly stop?: () => Promise<void>;
  /** Extra readiness checks. */
  readonly checks?: () => Promise<CheckResult[]>;
}

export interface ServiceDefinition {
  readonly name: ServiceName;
  /** Service-specific configuration rules beyond types (returns problems, each naming its key). */
  readonly validate?: (config: Config) => string[];
  readonly setup: (ctx: ServiceContext) => ServiceParts | Promise<ServiceParts>;
  /** One-shot commands: `node main.js <command>`; the returned number is the exit code. */
  readonly commands?: Readonly<Record<string, (ctx: ServiceContext) => Promise<number>>>;
}

export const EXIT_CONFIG = 2;

function appDirectory(): string {
  const main = process.argv[1];
  if (!main) return process.cwd();
  try {
    return dirname(realpathSync(main));
  } catch {
    return dirname(main);
  }
}

export function readBuildInfo(appDir: string): BuildInfo {
  try {
    const j = JSON.parse(readFileSync(join(appDir, 'build-info.json'), 'utf8')) as Partial<BuildInfo>;
    return { version: String(j.version ?? '0.0.0-dev'), gitCommit: String(j.gitCommit ?? 'unknown'), buildDate: String(j.buildDate ?? 'unknown') };
  } catch {
    return { version: '0.0.0-dev', gitCommit: 'unknown', buildDate: 'unknown' };
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Runs a service: the whole process lifetime. */
export async function runService(def: ServiceDefinition): Promise<void> {
  const appDir = appDirectory();
  const build = readBuildInfo(appDir);
  // The catalog says which keys are secret: their values are redacted by name from the first
  // line on (`KEY=value`, { KEY: value }); its other keys are not, whatever their name (STELLA_TOKEN_TTL).
  const keys = configFor(serviceByName(def.name));
  const redactor = new Redactor([], { secretKeys: keys.filter((k) => k.secret).map((k) => k.key), publicKeys: keys.filter((k) => !k.secret).map((k) => k.key) });
  const log = new Logger({ service: def.name, version: build.version, redactor });

  let config: Config;
  try {
    config = loadConfig(def.name);
    // Known before anything about the configuration is printed (validate's problems included).
    redactor.add(config.secretValues());
    const extra = def.validate?.(config) ?? [];
    if (extra.length) throw new ConfigError(extra);
  } catch (e) {
    if (e instanceof ConfigError) {
      redactor.add(e.secrets);
      log.error(e.message, { exitCode: EXIT_CONFIG });
      process.exit(EXIT_CONFIG);
    }
    throw e;
  }
  log.level = config.str('STELLA_LOG_LEVEL') as LogLevel;

  process.on('uncaughtException', (e) => {
    log.error('uncaught exception; exiting', { error: e });
    process.exit(1);
  });
  process.on('unhandledRejection', (e) => log.error('unhandled promise rejection', { error: e }));

  const command = process.argv[2];
  const deps = new Dependencies(config, log, { connectQueue: !command });
  const metrics = new Registry();
  metrics.setDefaultLabels({ service: def.name });
  collectDefaultMetrics({ register: metrics });
  new Gauge({ name: 'stella_build_info', help: 'Build of this service (always 1).', labelNames: ['version', 'revision'], registers: [metrics] })
    .labels(build.version, build.gitCommit)
    .set(1);
  const requests = new Counter({ name: 'stella_http_requests_total', help: 'HTTP requests answered.', labelNames: ['method', 'route', 'status'], registers: [metrics] });
  const durations = new Histogram({ name: 'stella_http_request_duration_seconds', help: 'HTTP request duration.', labelNames: ['method', 'route', 'status'], registers: [metrics] });
  const workItems = new Counter({ name: 'stella_work_items_total', help: 'Queue messages handled.', labelNames: ['subject', 'outcome'], registers: [metrics] });

  let draining = false;
  let started = false;
  let startError: string | undefined = 'start-up work not finished';
  const consumers: { subject: string; handler: WorkHandler; concurrency: number }[] = [];
  const subscriptions = new Set<Subscription>();
  const inFlightWork = new Set<Promise<unknown>>();

  const ctx: ServiceContext = {
    name: def.name,
    config,
    log,
    deps,
    build,
    appDir,
    metrics,
    isDraining: () => draining,
    work(subject, handler, opts) {
      const prefetch = config.entries.has('STELLA_QUEUE_PREFETCH') ? config.int('STELLA_QUEUE_PREFETCH') : 1;
      consumers.push({ subject, handler, concurrency: Math.max(1, opts?.concurrency ?? prefetch) });
    },
    async publish(subject, data) {
      const nc = deps.natsNow();
      if (!nc) throw new HttpError(503, `queue unavailable: cannot publish to ${subject}`);
      nc.publish(subject, Buffer.from(JSON.stringify(data)));
      await nc.flush();
    },
  };

  // One-shot commands (e.g. `node main.js migrate` for the chart's migration Job).
  if (command) {
    const run = def.commands?.[command];
    if (!run) {
      log.error(`unknown command "${command}"; ${def.name} knows: ${Object.keys(def.commands ?? {}).join(', ') || '(none)'}`);
      process.exit(EXIT_CONFIG);
    }
    let code = 1;
    try {
      code = await run(ctx);
    } catch (e) {
      log.error(`${command} failed`, { error: e });
    }
    await deps.close();
    process.exit(code);
  }

  let parts: ServiceParts;
  try {
    parts = await def.setup(ctx);
  } catch (e) {
    log.error('service setup failed; exiting', { error: e });
    process.exit(1);
  }
  const routes = parts.routes ?? [];

  const readiness = async (): Promise<{ status: number; body: unknown }> => {
    if (draining) return { status: 503, body: { status: 'draining', checks: [] } };
    const checks = await deps.check();
    if (!started) checks.unshift({ name: 'startup', ok: false, error: startError ?? 'start-up work not finished' });
    if (parts.checks) checks.push(...(await parts.checks()));
    const redacted = checks.map((c) => (c.error ? { ...c, error: redactor.text(c.error) } : c));
    const ok = redacted.every((c) => c.ok);
    return { status: ok ? 200 : 503, body: { status: ok ? 'ready' : 'not-ready', checks: redacted } };
  };

  const builtin: Route[] = [
    { method: 'GET', path: '/health/liveness', handler: ({ res }) => sendJson(res, 200, { status: 'ok' }) },
    {
      method: 'GET',
      path: '/health/readiness',
      handler: async ({ res }) => {
        const r = await readiness();
        sendJson(res, r.status, r.body);
      },
    },
    { method: 'GET', path: '/version', handler: ({ res }) => sendJson(res, 200, build) },
    {
      method: 'GET',
      path: '/metrics',
      handler: async ({ res }) => {
        if (!config.bool('STELLA_METRICS_ENABLED')) return sendJson(res, 404, { error: 'metrics are disabled (STELLA_METRICS_ENABLED=false)' });
        const text = await metrics.metrics();
        res.writeHead(200, { 'content-type': metrics.contentType });
        res.end(text);
      },
    },
    { method: 'GET', path: '/config', handler: ({ res }) => sendJson(res, 200, { service: def.name, version: build.version, config: config.discoverable() }) },
  ];
  const allRoutes = [...builtin, ...routes];

  const server: Server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const startedAt = process.hrtime.bigint();
    closeWhenDraining(res, () => draining);
    const url = new URL(req.url ?? '/', 'http://localhost');
    const found = matchRoute(allRoutes, req.method ?? 'GET', url.pathname);
    const routeName = found ? (found.route.name ?? (typeof found.route.path === 'string' ? found.route.path : 'pattern')) : 'unmatched';
    res.on('finish', () => {
      const status = String(res.statusCode);
      requests.labels(req.method ?? 'GET', routeName, status).inc();
      durations.labels(req.method ?? 'GET', routeName, status).observe(Number(process.hrtime.bigint() - startedAt) / 1e9);
    });
    try {
      if (!found) throw new HttpError(404, `no route for ${req.method} ${url.pathname}`);
      const rc: RequestContext = { req, res, url, params: found.params };
      await found.route.handler(rc);
    } catch (e) {
      const status = e instanceof HttpError ? e.status : 500;
      if (status >= 500 && !(e instanceof HttpError)) log.error('request failed', { method: req.method, path: url.pathname, error: e });
      if (!res.headersSent) sendJson(res, status, { error: redactor.text(errorMessage(e)), ...(e instanceof HttpError ? (redactor.value(e.body) as object) : {}) });
      else res.destroy();
    }
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.keepAliveTimeout = 5000;

  const port = config.int('STELLA_HTTP_PORT');
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '0.0.0.0', () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    log.error(`cannot listen on 0.0.0.0:${port} (STELLA_HTTP_PORT); exiting`, { error: e });
    process.exit(1);
  }
  log.info(`${def.name} listening on 0.0.0.0:${port}`, { port, build, config: config.describe() });

  // Start-up work, retried until it succeeds; then the workers start consuming.
  const startConsumers = () => {
    for (const c of consumers) void consume(c.subject, c.handler, c.concurrency);
  };
  const consume = async (subject: string, handler: WorkHandler, concurrency: number) => {
    const queue = `stella-${def.name}`;
    while (!draining) {
      let nc;
      try {
        nc = await deps.nats();
      } catch (e) {
        log.error(`cannot consume ${subject}`, { error: e });
        return;
      }
      if (draining) return;
      const sub = nc.subscribe(subject, { queue });
      subscriptions.add(sub);
      log.info(`consuming ${subject}`, { subject, queue, concurrency });
      const running = new Set<Promise<unknown>>();
      try {
        for await (const msg of sub) {
          const p = (async () => {
            let reply: unknown;
            try {
              const text = Buffer.from(msg.data).toString('utf8');
              const data: unknown = text ? JSON.parse(text) : null;
              const result = await handler(data, msg);
              reply = { ok: true, result };
              workItems.labels(subject, 'ok').inc();
            } catch (e) {
              reply = { ok: false, error: redactor.text(errorMessage(e)) };
              workItems.labels(subject, 'error').inc();
              log.warn(`work item on ${subject} failed`, { subject, error: e });
            }
            if (msg.reply) {
              try {
                msg.respond(Buffer.from(JSON.stringify(reply)));
              } catch (e) {
                log.warn('could not answer a work request', { subject, error: e });
              }
            }
          })();
          running.add(p);
          inFlightWork.add(p);
          void p.finally(() => {
            running.delete(p);
            inFlightWork.delete(p);
          });
          while (running.size >= concurrency) await Promise.race(running);
        }
      } catch (e) {
        log.warn(`subscription to ${subject} ended`, { error: e });
      }
      subscriptions.delete(sub);
      await Promise.allSettled([...running]);
      if (!draining) await delay(500);
    }
  };

  void (async () => {
    if (!parts.start) {
      started = true;
      startError = undefined;
      startConsumers();
      return;
    }
    let attempt = 0;
    while (!draining) {
      try {
        await parts.start();
        started = true;
        startError = undefined;
        log.info('start-up work done');
        startConsumers();
        return;
      } catch (e) {
        attempt++;
        startError = `start-up work failed (attempt ${attempt}, retrying): ${redactor.text(errorMessage(e))}`;
        log.warn('start-up work failed; retrying', { attempt, error: e });
        await delay(Math.min(1000 * attempt, 10_000));
      }
    }
  })();

  const shutdown = async (signal: string) => {
    if (draining) return;
    draining = true;
    const graceMs = config.int('STELLA_SHUTDOWN_GRACE_SECONDS') * 1000;
    log.info(`${signal} received; draining`, { signal, graceSeconds: graceMs / 1000, openConnections: sockets.size, inFlightWork: inFlightWork.size });
    setTimeout(() => {
      log.error(`shutdown deadline of ${graceMs / 1000} s reached; exiting with work left`, { openConnections: sockets.size, inFlightWork: inFlightWork.size });
      process.exit(1);
    }, graceMs);
    // Stop accepting new connections, without http.Server.close()'s immediate closing of
    // idle sockets: a request already in a socket's receive buffer gets read and answered first.
    const closed = new Promise<void>((resolve) => NetServer.prototype.close.call(server, () => resolve()));
    const idleSweep = setInterval(() => server.closeIdleConnections(), 250);
    // Workers: stop taking messages, finish those taken.
    await Promise.allSettled([...subscriptions].map((s) => s.drain()));
    await Promise.allSettled([...inFlightWork]);
    await closed;
    clearInterval(idleSweep);
    try {
      await parts.stop?.();
    } catch (e) {
      log.error('flushing background work failed', { error: e });
    }
    await deps.close();
    log.info('drained; exiting', { signal });
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/** Makes an answer written while draining carry `Connection: close` (also one already in flight). */
function closeWhenDraining(res: ServerResponse, isDraining: () => boolean): void {
  const orig = res.writeHead.bind(res) as (...a: unknown[]) => ServerResponse;
  (res as unknown as { writeHead: (...a: unknown[]) => ServerResponse }).writeHead = (...args: unknown[]) => {
    if (isDraining() && !res.headersSent) {
      res.setHeader('connection', 'close');
      res.shouldKeepAlive = false;
    }
    return orig(...args);
  };
}
