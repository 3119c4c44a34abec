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
import { randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { headers as natsHeaders, type ConsumerMessages, type JsMsg } from 'nats';
import type { ServiceName } from '../../../ci/src/catalog/types.ts';
import { configFor, serviceByName } from '../../../ci/src/catalog/config.ts';
import { Config, ConfigError, loadConfig } from './config.ts';
import { Dependencies, type CheckResult } from './deps.ts';
import { HttpError, matchRoute, sendJson, type RequestContext, type Route } from './http.ts';
import { Logger, Redactor, errorMessage, type LogLevel } from './log.ts';
import { BadWork, MAX_DELIVER, REPLY_HEADER, WORK_STREAM, ensureConsumer, isWorkSubject } from './queue.ts';
import { Tracing } from './tracing.ts';

export interface BuildInfo {
  readonly version: string;
  readonly gitCommit: string;
  readonly buildDate: string;
}

/** One work item as its handler sees it. */
export interface WorkItem {
  /** Stable across redeliveries: the publisher's Nats-Msg-Id, else `<stream>:<sequence>`. Use it to make the effect idempotent. */
  readonly id: string;
  readonly subject: string;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
}

/** A work handler: its return value is the reply (when the item asks for one). Throw BadWork for input that can never succeed. */
export type WorkHandler = (data: unknown, item: WorkItem) => Promise<unknown>;

export interface PublishOptions {
  /** Deduplication id (Nats-Msg-Id); default a random UUID. */
  readonly msgId?: string;
  /** An inbox to receive { ok, result | error } when the item is done. */
  readonly replyTo?: string;
}

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
  /** Consumes the work subject `stella.<x>.work` (durable JetStream consumer) once start-up work is done. */
  work(subject: string, handler: WorkHandler, opts?: WorkOptions): void;
  /** Publishes a JSON message: to the durable work stream for `stella.*.work`, else core NATS. */
  publish(subject: string, data: unknown, opts?: PublishOptions): Promise<{ seq?: number; duplicate?: boolean }>;
  /** The tracer, when STELLA_OTEL_EXPORTER_ENDPOINT is set. */
  readonly tracing?: Tracing;
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
  const subscriptions = new Set<ConsumerMessages>();
  const otlp = config.optional('STELLA_OTEL_EXPORTER_ENDPOINT');
  const tracing = otlp && !command ? new Tracing(def.name, build, otlp) : undefined;
  if (tracing) log.info('exporting traces over OTLP/HTTP', { url: redactor.text(tracing.url) });
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
    ...(tracing ? { tracing } : {}),
    work(subject, handler, opts) {
      if (!isWorkSubject(subject)) throw new Error(`work subject ${subject} is not stella.<name>.work (programming error)`);
      const prefetch = config.entries.has('STELLA_QUEUE_PREFETCH') ? config.int('STELLA_QUEUE_PREFETCH') : 1;
      consumers.push({ subject, handler, concurrency: Math.max(1, opts?.concurrency ?? prefetch) });
    },
    async publish(subject, data, opts = {}) {
      const nc = deps.natsNow();
      if (!nc) throw new HttpError(503, `queue unavailable: cannot publish to ${subject}`);
      const payload = Buffer.from(JSON.stringify(data));
      if (!isWorkSubject(subject)) {
        nc.publish(subject, payload);
        await nc.flush();
        return {};
      }
      const h = natsHeaders();
      if (opts.replyTo) h.set(REPLY_HEADER, opts.replyTo);
      try {
        // Acknowledged by the stream: stored on disk before the caller hears "queued".
        const ack = await deps.jetstreamNow()!.publish(subject, payload, { msgID: opts.msgId ?? randomUUID(), headers: h });
        return { seq: ack.seq, duplicate: ack.duplicate };
      } catch (e) {
        throw new HttpError(503, `queue unavailable: the work stream did not accept ${subject}: ${errorMessage(e)}`);
      }
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
    // Probes and scrapes (every few seconds, from the orchestrator and the collector) are not traced.
    const probe = routeName.startsWith('/health/') || routeName === '/metrics';
    const span = probe ? undefined : tracing?.startHttp(req.method ?? 'GET', routeName, url.pathname, req.headers);
    res.on('close', () => {
      if (span) tracing!.endHttp(span, res.statusCode);
    });
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
    while (!draining) {
      let messages: ConsumerMessages;
      let nc;
      try {
        nc = await deps.nats();
        if (draining) return;
        const jsm = await deps.jetstreamManager();
        const name = await ensureConsumer(jsm, subject, Math.max(concurrency, config.entries.has('STELLA_QUEUE_PREFETCH') ? config.int('STELLA_QUEUE_PREFETCH') : 1) * 4);
        const consumer = await nc.jetstream().consumers.get(WORK_STREAM, name);
        messages = await consumer.consume({ max_messages: Math.max(concurrency, 1) });
        log.info(`consuming ${subject}`, { subject, stream: WORK_STREAM, consumer: name, concurrency });
      } catch (e) {
        log.warn(`cannot consume ${subject} yet; retrying`, { subject, error: e });
        await delay(1000);
        continue;
      }
      subscriptions.add(messages);
      const running = new Set<Promise<unknown>>();
      try {
        for await (const msg of messages) {
          const p = handle(subject, handler, msg);
          running.add(p);
          inFlightWork.add(p);
          void p.finally(() => {
            running.delete(p);
            inFlightWork.delete(p);
          });
          while (running.size >= concurrency) await Promise.race(running);
        }
      } catch (e) {
        log.warn(`consumer of ${subject} ended`, { error: e });
      }
      subscriptions.delete(messages);
      await Promise.allSettled([...running]);
      if (!draining) await delay(500);
    }
  };

  /** One item: run, then ack (done), term (bad input or last attempt) or nak with backoff (retry). */
  const handle = async (subject: string, handler: WorkHandler, msg: JsMsg): Promise<void> => {
    const item: WorkItem = { id: msg.headers?.get('Nats-Msg-Id') || `${WORK_STREAM}:${msg.seq}`, subject, deliveryCount: msg.info.deliveryCount };
    const replyTo = msg.headers?.get(REPLY_HEADER) || undefined;
    let reply: unknown;
    try {
      const text = Buffer.from(msg.data).toString('utf8');
      let data: unknown;
      try {
        data = text ? JSON.parse(text) : null;
      } catch {
        throw new BadWork('work item is not valid JSON');
      }
      const run = () => handler(data, item);
      const result = tracing ? await tracing.work(subject, item.id, (t) => redactor.text(t), run) : await run();
      await msg.ackAck();
      workItems.labels(subject, 'ok').inc();
      reply = { ok: true, result };
    } catch (e) {
      const final = e instanceof BadWork || item.deliveryCount >= MAX_DELIVER;
      const error = redactor.text(errorMessage(e));
      if (final) {
        msg.term();
        workItems.labels(subject, 'error').inc();
        log.warn(`work item on ${subject} failed; giving up`, { subject, id: item.id, deliveries: item.deliveryCount, error });
        reply = { ok: false, error };
      } else {
        msg.nak(Math.min(1000 * 2 ** (item.deliveryCount - 1), 15_000));
        workItems.labels(subject, 'retry').inc();
        log.warn(`work item on ${subject} failed; will retry`, { subject, id: item.id, deliveries: item.deliveryCount, error });
        return;
      }
    }
    if (replyTo) {
      try {
        deps.natsNow()?.publish(replyTo, Buffer.from(JSON.stringify(reply)));
      } catch (e) {
        log.warn('could not answer a work request', { subject, error: e });
      }
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
    await Promise.allSettled([...subscriptions].map((s) => s.close()));
    await Promise.allSettled([...inFlightWork]);
    await closed;
    clearInterval(idleSweep);
    try {
      await parts.stop?.();
    } catch (e) {
      log.error('flushing background work failed', { error: e });
    }
    await tracing?.shutdown().catch((e: unknown) => log.warn('flushing traces failed', { error: e }));
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
