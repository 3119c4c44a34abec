/**
 * Clients of the support services a service is configured with, and the checks
 * behind GET /health/readiness. A dependency that is down is never fatal: every
 * client reconnects on its own, and readiness reports it until it answers.
 */
import pg from 'pg';
import { Redis } from 'ioredis';
import { connect, type JetStreamClient, type JetStreamManager, type NatsConnection } from 'nats';
import { durationMs, type Config } from './config.ts';
import { errorMessage, type Logger } from './log.ts';
import { ObjectStore, type ObjectStoreSettings } from './objectstore.ts';
import { WORK_STREAM, ensureWorkStream } from './queue.ts';

export type { ObjectStoreSettings } from './objectstore.ts';

export interface CheckResult {
  readonly name: string;
  readonly ok: boolean;
  readonly error?: string;
}

/** Rejects after `ms` with a message naming `what`; the timer never keeps the process alive. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export class Dependencies {
  readonly postgres?: pg.Pool;
  readonly redis?: Redis;
  readonly objectStore?: ObjectStore;
  private readonly queueUrl?: string;
  private readonly retentionMs: number = 72 * 3_600_000;
  private nc: NatsConnection | undefined;
  private jsm: JetStreamManager | undefined;
  private natsError: string | undefined;
  private natsWaiters: ((nc: NatsConnection) => void)[] = [];
  private closing = false;
  private readonly timeoutMs: number;
  private readonly log: Logger;
  private readonly down = new Set<string>();
  private readonly lastError = new Map<string, string>();

  /** `connectQueue: false` for one-shot commands, which never consume or publish. */
  constructor(config: Config, log: Logger, opts: { connectQueue?: boolean } = {}) {
    this.log = log;
    this.timeoutMs = config.int('STELLA_READINESS_TIMEOUT_MS');
    const dbUrl = config.entries.has('STELLA_DATABASE_URL') ? config.optional('STELLA_DATABASE_URL') : undefined;
    if (dbUrl) {
      this.postgres = new pg.Pool({
        connectionString: dbUrl,
        max: config.int('STELLA_DATABASE_POOL_SIZE'),
        connectionTimeoutMillis: this.timeoutMs,
        idleTimeoutMillis: 10_000,
        application_name: `stella-${config.service.name}`,
      });
      // An idle client losing its server must not crash the process.
      this.postgres.on('error', (e) => this.markDown('postgres', e));
    }
    const redisUrl = config.entries.has('STELLA_REDIS_URL') ? config.optional('STELLA_REDIS_URL') : undefined;
    if (redisUrl) {
      this.redis = new Redis(redisUrl, {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        connectTimeout: this.timeoutMs,
        retryStrategy: (times) => Math.min(times * 250, 5000),
        lazyConnect: false,
      });
      this.redis.on('error', (e) => this.markDown('redis', e));
      this.redis.on('ready', () => this.markUp('redis'));
    }
    if (config.entries.has('STELLA_QUEUE_URL')) this.queueUrl = config.optional('STELLA_QUEUE_URL');
    if (config.entries.has('STELLA_QUEUE_RETENTION')) this.retentionMs = durationMs(config.str('STELLA_QUEUE_RETENTION'));
    if (config.entries.has('STELLA_OBJECT_STORE_ENDPOINT') && config.optional('STELLA_OBJECT_STORE_ENDPOINT')) {
      const access = config.optional('STELLA_OBJECT_STORE_ACCESS_KEY');
      const secret = config.optional('STELLA_OBJECT_STORE_SECRET_KEY');
      const settings: ObjectStoreSettings = {
        endpoint: config.str('STELLA_OBJECT_STORE_ENDPOINT'),
        bucket: config.str('STELLA_OBJECT_STORE_BUCKET'),
        region: config.str('STELLA_OBJECT_STORE_REGION'),
        pathStyle: config.bool('STELLA_OBJECT_STORE_PATH_STYLE'),
        sse: config.str('STELLA_OBJECT_STORE_SSE'),
        ...(access ? { accessKey: access } : {}),
        ...(secret ? { secretKey: secret } : {}),
      };
      this.objectStore = new ObjectStore(settings);
    }
    if (this.queueUrl && opts.connectQueue !== false) void this.natsLoop(this.queueUrl);
  }

  private markDown(name: string, e: unknown): void {
    this.lastError.set(name, errorMessage(e));
    if (this.down.has(name)) return this.log.debug(`${name} still unavailable`, { error: errorMessage(e) });
    this.down.add(name);
    this.log.warn(`${name} unavailable; reconnecting`, { dependency: name, error: errorMessage(e) });
  }

  private markUp(name: string): void {
    if (this.down.delete(name)) this.log.info(`${name} available again`, { dependency: name });
  }

  /** Connects to NATS, retrying forever (until shutdown); reconnects after a close. */
  private async natsLoop(url: string): Promise<void> {
    const u = new URL(url);
    const server = `${u.hostname.includes(':') ? `[${u.hostname}]` : u.hostname}:${u.port || '4222'}`;
    let attempt = 0;
    while (!this.closing) {
      try {
        const nc = await connect({
          servers: server,
          name: `stella-${this.log.service}`,
          ...(u.username ? { user: decodeURIComponent(u.username) } : {}),
          ...(u.password ? { pass: decodeURIComponent(u.password) } : {}),
          timeout: this.timeoutMs,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 1000,
        });
        if (this.closing) {
          await nc.close();
          return;
        }
        // The durable work stream must exist before anything is published or consumed.
        let jsm: JetStreamManager;
        try {
          jsm = await nc.jetstreamManager({ timeout: this.timeoutMs });
          await ensureWorkStream(jsm, this.retentionMs);
        } catch (e) {
          await nc.close().catch(() => undefined);
          const msg = errorMessage(e);
          throw new Error(/jetstream not enabled|503/i.test(msg) ? `JetStream is not enabled on ${server} (run nats-server with -js / jetstream { store_dir })` : `cannot set up the JetStream work stream ${WORK_STREAM}: ${msg}`);
        }
        attempt = 0;
        this.jsm = jsm;
        this.nc = nc;
        this.natsError = undefined;
        this.markUp('nats');
        for (const w of this.natsWaiters.splice(0)) w(nc);
        void (async () => {
          for await (const s of nc.status()) {
            if (s.type === 'disconnect') this.markDown('nats', new Error(`disconnected from ${server}`));
            if (s.type === 'reconnect') this.markUp('nats');
          }
        })().catch(() => undefined);
        const err = await nc.closed();
        this.nc = undefined;
        this.jsm = undefined;
        if (this.closing) return;
        this.natsError = err ? errorMessage(err) : 'connection closed';
        this.markDown('nats', err ?? new Error('connection closed'));
      } catch (e) {
        this.natsError = errorMessage(e);
        this.markDown('nats', e);
      }
      attempt++;
      await new Promise((r) => setTimeout(r, Math.min(500 * attempt, 5000)));
    }
  }

  /** The NATS connection, once there is one (waits across a server that is down at start). */
  nats(): Promise<NatsConnection> {
    if (!this.queueUrl) return Promise.reject(new Error('STELLA_QUEUE_URL is not set'));
    if (this.nc && !this.nc.isClosed()) return Promise.resolve(this.nc);
    return new Promise((resolve) => this.natsWaiters.push(resolve));
  }

  natsNow(): NatsConnection | undefined {
    return this.nc && !this.nc.isClosed() ? this.nc : undefined;
  }

  /** JetStream publishing, once connected (the work stream exists by then). */
  jetstreamNow(): JetStreamClient | undefined {
    const nc = this.natsNow();
    return nc ? nc.jetstream({ timeout: this.timeoutMs }) : undefined;
  }

  /** The JetStream manager of the current connection. */
  async jetstreamManager(): Promise<JetStreamManager> {
    const nc = await this.nats();
    return this.jsm ?? nc.jetstreamManager({ timeout: this.timeoutMs });
  }

  /** Runs every configured dependency check in parallel, each bounded by STELLA_READINESS_TIMEOUT_MS. */
  async check(): Promise<CheckResult[]> {
    const checks: [string, () => Promise<unknown>][] = [];
    const pool = this.postgres;
    if (pool) checks.push(['postgres', () => pool.query('SELECT 1')]);
    const redis = this.redis;
    if (redis) {
      checks.push([
        'redis',
        async () => {
          if (redis.status !== 'ready') throw new Error(`not connected (${redis.status})${this.lastError.has('redis') ? `: ${this.lastError.get('redis')}` : ''}`);
          await redis.ping();
        },
      ]);
    }
    if (this.queueUrl) {
      checks.push([
        'nats',
        async () => {
          const nc = this.natsNow();
          if (!nc) throw new Error(this.natsError ? `not connected: ${this.natsError}` : 'not connected');
          await nc.flush();
          // The durable work stream is there (JetStream answers); recreated if a NATS without
          // persistent storage came back empty.
          await ensureWorkStream(this.jsm ?? (await nc.jetstreamManager()), this.retentionMs).catch((e: unknown) => {
            throw new Error(`JetStream stream ${WORK_STREAM} unavailable: ${errorMessage(e)}`);
          });
        },
      ]);
    }
    const os = this.objectStore;
    if (os) {
      checks.push([
        'object-store',
        // HeadBucket: reachable, credentials accepted, bucket present (each failure named).
        () => os.check(AbortSignal.timeout(this.timeoutMs)),
      ]);
    }
    return Promise.all(
      checks.map(async ([name, run]): Promise<CheckResult> => {
        try {
          await withTimeout(run(), this.timeoutMs, name);
          this.markUp(name);
          return { name, ok: true };
        } catch (e) {
          const cause = (e as { cause?: unknown }).cause;
          const msg = errorMessage(e) + (cause && errorMessage(cause) !== errorMessage(e) ? `: ${errorMessage(cause)}` : '');
          return { name, ok: false, error: msg };
        }
      }),
    );
  }

  async close(): Promise<void> {
    this.closing = true;
    const tasks: Promise<unknown>[] = [];
    if (this.nc) tasks.push(this.nc.drain().catch(() => this.nc?.close()));
    if (this.postgres) tasks.push(this.postgres.end().catch(() => undefined));
    if (this.redis) tasks.push(this.redis.quit().catch(() => this.redis?.disconnect()));
    this.objectStore?.close();
    await withTimeout(Promise.allSettled(tasks), 5000, 'closing dependencies').catch(() => undefined);
  }
}
