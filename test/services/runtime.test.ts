/**
 * The shared runtime, on built services run as real processes: the HTTP surface
 * (liveness, version, metrics, config discovery), configuration sources and start-up
 * errors, secret redaction, graceful shutdown under load and at the deadline, and
 * NATS workers (task-runner egress denial, notify flush on shutdown).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, Agent, request, type Server } from 'node:http';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { freePort, waitFor } from '../helpers/net.ts';
import { natsAvailable, startNats, type TestProcessServer } from '../helpers/servers.ts';
import { askWork } from './work.ts';
import { COMMIT, NODE, VERSION, buildInto, runToExit, startService, waitReadiness, type Built } from './harness.ts';

const runFile = promisify(execFile);

/** The `msg` of every JSON log line in `stdout`. */
const msgs = (stdout: string): string => stdout.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { msg: string }).msg).join('\n');

let built: Built;
let objectStore: Server;
let objectStoreUrl: string;
let nats: TestProcessServer;
let nc: NatsConnection;
let tmp: string;
const dir = (s: string) => built.services.get(s)!.dir;
/** The S3 client signs every request: the stand-in object stores below get keys too. */
const osKeys = { STELLA_OBJECT_STORE_ACCESS_KEY: 'stand-in', STELLA_OBJECT_STORE_SECRET_KEY: 'stand-in-secret' };

beforeAll(async () => {
  if (!natsAvailable()) throw new Error('nats-server is missing: run scripts/host-setup.sh');
  built = await buildInto(['ai', 'notify', 'task-runner', 'conseiller']);
  nats = await startNats();
  nc = await connect({ servers: nats.url.replace('nats://', '') });
  tmp = mkdtempSync(join(tmpdir(), 'stella-runtime-'));
  // These tests are about workers and shutdown, not S3: a stand-in answers the readiness
  // HeadBucket with 200 (the S3 client against the real SeaweedFS gateway: objectstore.test.ts).
  const osPort = await freePort();
  objectStore = createServer((_req, res) => {
    res.writeHead(200);
    res.end();
  }).listen(osPort, '127.0.0.1');
  objectStoreUrl = `http://127.0.0.1:${osPort}`;
});
afterAll(async () => {
  objectStore?.close();
  await nc?.close();
  await nats?.stop();
  built?.cleanup();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('HTTP surface', () => {
  it('answers liveness, version, metrics and config discovery; /metrics is 404 when disabled', async () => {
    const svc = await startService(dir('ai'));
    try {
      expect(await svc.get('/health/liveness')).toMatchObject({ status: 200, body: '{"status":"ok"}\n' });
      expect((await svc.get('/version')).json()).toEqual({ version: VERSION, gitCommit: COMMIT, buildDate: '2026-02-03T04:05:06Z' });
      const ready = await svc.get('/health/readiness');
      expect(ready.status).toBe(200);
      expect(ready.json()).toEqual({ status: 'ready', checks: [] });
      const metrics = await svc.get('/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.body).toContain(`stella_build_info{version="${VERSION}",revision="${COMMIT}",service="ai"} 1`);
      expect(metrics.body).toMatch(/stella_http_requests_total\{method="GET",route="\/version",status="200",service="ai"\} 1/);
      expect(metrics.body).toContain('stella_http_request_duration_seconds_bucket');
      expect(metrics.body).toContain('process_cpu_user_seconds_total');
      const cfg = svc.get('/config');
      expect((await cfg).json()).toEqual({ service: 'ai', version: VERSION, config: { STELLA_LOG_LEVEL: 'info', STELLA_METRICS_ENABLED: true, STELLA_OFFLINE: false, STELLA_API_URL: 'http://api:8081', STELLA_AI_ENABLED: false } });
      // The assistant is disabled by default: its endpoints say so, health stays fine.
      const ask = await svc.get('/api/v1/assistant/ask', { method: 'POST', body: '{"question":"x"}' });
      expect(ask.status).toBe(503);
      expect(ask.json()).toMatchObject({ status: 'disabled' });
      expect(svc.stderr()).toBe('');
      for (const line of svc.logs()) expect(Object.keys(line)).toEqual(expect.arrayContaining(['ts', 'level', 'service', 'version', 'msg']));
    } finally {
      expect(await svc.stop()).toBe(0);
    }
    const off = await startService(dir('ai'), { env: { STELLA_METRICS_ENABLED: 'false' } });
    try {
      expect((await off.get('/metrics')).status).toBe(404);
    } finally {
      await off.stop();
    }
  });
});

describe('configuration', () => {
  it('stops start-up with exit 2 and one message naming an invalid key', async () => {
    const r = await runToExit(dir('ai'), { env: { STELLA_LOG_LEVEL: 'loud' } });
    expect(r.code).toBe(2);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'error', msg: 'config: STELLA_LOG_LEVEL="loud" is not one of debug, info, warn, error' });
    expect(r.stderr).toBe('');
    const bad = await runToExit(dir('ai'), { env: { STELLA_AI_MAX_TOKENS: '0', STELLA_SHUTDOWN_GRACE_SECONDS: 'soon', STELLA_AI_MODEL_ENDPOINT: 'not a url' } });
    expect(bad.code).toBe(2);
    expect(msgs(bad.stdout)).toContain('STELLA_AI_MAX_TOKENS="0" is below the minimum 1');
    expect(msgs(bad.stdout)).toContain('STELLA_SHUTDOWN_GRACE_SECONDS="soon" is not an integer');
    expect(msgs(bad.stdout)).toContain('STELLA_AI_MODEL_ENDPOINT="not a url" is not a valid URL');
  });

  it('stops start-up on an unknown STELLA_* variable, suggesting the key meant', async () => {
    const r = await runToExit(dir('ai'), { env: { STELLA_LOG_LEVLE: 'debug' } });
    expect(r.code).toBe(2);
    expect(msgs(r.stdout)).toContain('STELLA_LOG_LEVLE is not a setting of ai (did you mean STELLA_LOG_LEVEL?)');
    const other = await runToExit(dir('ai'), { env: { STELLA_DATABASE_URL: 'postgres://x@db/x' } });
    expect(other.code).toBe(2);
    expect(msgs(other.stdout)).toContain('STELLA_DATABASE_URL is not a setting of ai');
  });

  it('refuses STELLA_DISABLE_MERGE=false (locked): merge stays disabled', async () => {
    const r = await runToExit(dir('conseiller'), { env: { STELLA_DISABLE_MERGE: 'false', STELLA_DATABASE_URL: 'postgres://u@127.0.0.1:1/x' } });
    expect(r.code).toBe(2);
    expect(msgs(r.stdout)).toContain('STELLA_DISABLE_MERGE="false" is locked to "true"');
  });

  it('exits 1 with one log line naming STELLA_HTTP_PORT when the port is taken', async () => {
    const port = await freePort();
    const blocker: Server = createServer().listen(port, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    try {
      const r = await runToExit(dir('ai'), { port });
      expect(r.code).toBe(1);
      expect(msgs(r.stdout)).toContain(`cannot listen on 0.0.0.0:${port} (STELLA_HTTP_PORT); exiting`);
      expect(r.stderr).toBe('');
    } finally {
      blocker.close();
    }
  });

  it('reads KEY_FILE and the mounted config directory, env first', async () => {
    const f = join(tmp, 'level');
    writeFileSync(f, 'debug\n');
    const fromFile = await startService(dir('ai'), { env: { STELLA_LOG_LEVEL_FILE: f } });
    try {
      expect((await fromFile.get('/config')).json()).toMatchObject({ config: { STELLA_LOG_LEVEL: 'debug' } });
    } finally {
      await fromFile.stop();
    }
    const cfgDir = mkdtempSync(join(tmp, 'etc-'));
    writeFileSync(join(cfgDir, 'STELLA_LOG_LEVEL'), 'warn\n');
    writeFileSync(join(cfgDir, 'STELLA_AI_GUARDRAILS'), 'standard');
    const fromDir = await startService(dir('ai'), { env: { STELLA_CONFIG_DIR: cfgDir } });
    try {
      expect((await fromDir.get('/config')).json()).toMatchObject({ config: { STELLA_LOG_LEVEL: 'warn' } });
    } finally {
      await fromDir.stop();
    }
    const envWins = await startService(dir('ai'), { env: { STELLA_CONFIG_DIR: cfgDir, STELLA_LOG_LEVEL: 'error', STELLA_LOG_LEVEL_FILE: f } });
    try {
      expect((await envWins.get('/config')).json()).toMatchObject({ config: { STELLA_LOG_LEVEL: 'error' } });
    } finally {
      await envWins.stop();
    }
    const invalidInDir = mkdtempSync(join(tmp, 'etc-'));
    writeFileSync(join(invalidInDir, 'STELLA_METRICS_ENABLED'), 'yes\n');
    const r = await runToExit(dir('ai'), { env: { STELLA_CONFIG_DIR: invalidInDir } });
    expect(r.code).toBe(2);
    expect(msgs(r.stdout)).toContain(`STELLA_METRICS_ENABLED="yes" (from ${join(invalidInDir, 'STELLA_METRICS_ENABLED')}) is not a boolean`);
  });
});

describe('secrets', () => {
  it('never shows the AI API key: not in logs, /config, or an error about it', async () => {
    const canary = 'CANARY-ai-key-7f3e9b';
    const keyFile = join(tmp, 'ai-key');
    writeFileSync(keyFile, `${canary}\n`);
    // The model backend answers with the key in an error body; the service must not echo it.
    const backendPort = await freePort();
    const backend: Server = createServer((req, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`bad key ${req.headers.authorization}`);
    }).listen(backendPort, '127.0.0.1');
    const svc = await startService(dir('ai'), { env: { STELLA_AI_ENABLED: 'true', STELLA_AI_API_KEY_FILE: keyFile, STELLA_AI_MODEL_ENDPOINT: `http://127.0.0.1:${backendPort}/v1`, STELLA_LOG_LEVEL: 'debug' } });
    try {
      // Without a token: 401 before the backend is called (with one, against the real API: platform.test.ts).
      const ask = await svc.get('/api/v1/assistant/ask', { method: 'POST', body: '{"question":"what is CVE-2021-44906?"}' });
      expect(ask.status).toBe(401);
      const cfg = await svc.get('/config');
      expect(cfg.body).not.toContain(canary);
      expect(cfg.body).not.toContain('STELLA_AI_API_KEY');
      expect(ask.body).not.toContain(canary);
    } finally {
      await svc.stop();
      backend.close();
    }
    expect(svc.stdout()).toContain('STELLA_AI_API_KEY');
    expect(svc.stdout() + svc.stderr()).not.toContain(canary);
  });
});

describe('workers', () => {
  it('task-runner fails an egress step at once with an explicit error when egress is denied or offline', async () => {
    const svc = await startService(dir('task-runner'), { env: { STELLA_QUEUE_URL: nats.url, ...osKeys, STELLA_OBJECT_STORE_ENDPOINT: objectStoreUrl } });
    try {
      await waitReadiness(svc, 200);
      const ask = (step: unknown) => askWork(nc, 'stella.task-runner.work', { runId: 'r1', step });
      const denied = await ask({ id: 'download', kind: 'fetch', url: 'http://127.0.0.1:9/feed.json' });
      expect(denied).toEqual({ ok: false, error: 'egress denied: step download wants http://127.0.0.1:9/feed.json, but STELLA_EGRESS_POLICY=deny' });
      // An echo step runs in the process sandbox and answers.
      expect(await ask({ id: 'hello', kind: 'echo', text: 'hi' })).toEqual({ ok: true, result: { output: 'hi' } });
    } finally {
      expect(await svc.stop()).toBe(0);
    }
    const offline = await startService(dir('task-runner'), { env: { STELLA_QUEUE_URL: nats.url, STELLA_EGRESS_POLICY: 'allow', STELLA_OFFLINE: 'true', ...osKeys, STELLA_OBJECT_STORE_ENDPOINT: objectStoreUrl } });
    try {
      await waitReadiness(offline, 200);
      expect(await askWork(nc, 'stella.task-runner.work', { step: { id: 'dl', kind: 'fetch', url: 'http://127.0.0.1:9/' } })).toMatchObject({ ok: false, error: expect.stringContaining('STELLA_OFFLINE=true') });
    } finally {
      await offline.stop();
    }
  });

  it('notify consumes a published event and delivers the batch in hand on SIGTERM', async () => {
    const svc = await startService(dir('notify'), { env: { STELLA_QUEUE_URL: nats.url, STELLA_NOTIFY_BATCH_WINDOW: '1h' } });
    await waitReadiness(svc, 200);
    expect(await askWork(nc, 'stella.notify.work', { event: 'scan.imported', summary: 'canary-event-42' })).toMatchObject({ ok: true, result: { queued: true } });
    expect(svc.stdout()).not.toContain('canary-event-42');
    expect(await svc.stop()).toBe(0);
    const note = svc.logs().find((l) => l.msg === 'notification');
    expect(note).toMatchObject({ fields: { sink: 'log', events: 1, notifications: [{ summary: 'canary-event-42' }] } });
  });

  it('readiness names NATS while it is down at start (no crash), then the worker connects and consumes once it is up', async () => {
    const port = await freePort();
    const svc = await startService(dir('notify'), { env: { STELLA_QUEUE_URL: `nats://127.0.0.1:${port}`, STELLA_NOTIFY_BATCH_WINDOW: '100ms' } });
    let late: TestProcessServer | undefined;
    let lateNc: NatsConnection | undefined;
    try {
      const body = (await waitReadiness(svc, 503)) as { checks: { name: string; ok: boolean }[] };
      expect(body.checks).toContainEqual(expect.objectContaining({ name: 'nats', ok: false }));
      expect((await svc.get('/health/liveness')).status).toBe(200);
      // The image's HEALTHCHECK helper agrees: live, not ready.
      const hc = (args: string[]) => runFile(NODE, [join(dir('notify'), 'healthcheck.js'), ...args], { env: { STELLA_HTTP_PORT: String(svc.port) }, timeout: 10_000 });
      await expect(hc([])).resolves.toMatchObject({ stderr: '' });
      await expect(hc(['--readiness'])).rejects.toMatchObject({ code: 1 });
      late = await startNats({ port });
      await waitReadiness(svc, 200);
      expect(svc.proc.exitCode).toBeNull();
      lateNc = await connect({ servers: `127.0.0.1:${port}` });
      expect(await askWork(lateNc, 'stella.notify.work', { event: 'late' })).toMatchObject({ ok: true });
    } finally {
      await lateNc?.close();
      expect(await svc.stop()).toBe(0);
      await late?.stop();
    }
  });
});

describe('queue without JetStream', () => {
  it('a NATS server without JetStream: not ready, the cause named (work needs the durable stream)', async () => {
    const core = await startNats({ jetstream: false });
    const svc = await startService(dir('notify'), { env: { STELLA_QUEUE_URL: core.url } });
    try {
      const r = (await waitReadiness(svc, 503, 20_000, (b) => JSON.stringify(b).includes('JetStream'))) as { checks: { name: string; ok: boolean; error?: string }[] };
      expect(r.checks.find((c) => c.name === 'nats')!.error).toMatch(/JetStream is not enabled on 127\.0\.0\.1:\d+ \(run nats-server with -js/);
    } finally {
      expect(await svc.stop()).toBe(0);
      await core.stop();
    }
  });
});

describe('graceful shutdown', () => {
  it('under a steady keep-alive load: readiness 503 at once, no accepted request fails, exit 0 before the deadline', async () => {
    // A slow object store makes readiness take ~400 ms, so requests are truly in flight at SIGTERM.
    const slowPort = await freePort();
    const slow: Server = createServer((_req, res) => setTimeout(() => res.end('ok'), 400)).listen(slowPort, '127.0.0.1');
    const svc = await startService(dir('task-runner'), { env: { STELLA_QUEUE_URL: nats.url, ...osKeys, STELLA_OBJECT_STORE_ENDPOINT: `http://127.0.0.1:${slowPort}`, STELLA_SHUTDOWN_GRACE_SECONDS: '10' } });
    await waitReadiness(svc, 200);
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    type Outcome = { path: string; startedAt: number; status?: number; error?: string };
    const outcomes: Outcome[] = [];
    const get = (path: string, a: Agent) =>
      new Promise<Outcome>((resolve) => {
        const o: Outcome = { path, startedAt: performance.now() };
        const req = request({ host: '127.0.0.1', port: svc.port, path, agent: a, timeout: 10_000 }, (res) => {
          res.resume();
          res.on('end', () => resolve({ ...o, status: res.statusCode ?? 0 }));
          res.on('error', (e) => resolve({ ...o, error: e.message }));
        });
        req.on('error', (e) => resolve({ ...o, error: (e as NodeJS.ErrnoException).code ?? e.message }));
        req.on('timeout', () => req.destroy(new Error('client timeout')));
        req.end();
      });
    let stopAt = Infinity;
    const loop = async (path: string) => {
      for (let i = 0; i < 2000; i++) {
        const o = await get(path, agent);
        outcomes.push(o);
        if (o.error || o.startedAt > stopAt) return;
      }
    };
    // A separate keep-alive socket, warmed before SIGTERM, to ask readiness right after it.
    const probeAgent = new Agent({ keepAlive: true, maxSockets: 1 });
    expect((await get('/version', probeAgent)).status).toBe(200);
    const loops = [...Array.from({ length: 6 }, () => loop('/version')), loop('/health/readiness'), loop('/health/readiness')];
    await new Promise((r) => setTimeout(r, 700));
    const sigtermAt = performance.now();
    stopAt = sigtermAt;
    svc.proc.kill('SIGTERM');
    await waitFor('the drain to start', async () => svc.stdout().includes('SIGTERM received; draining'), 5000, 2);
    const probe = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: svc.port, path: '/health/readiness', agent: probeAgent }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(probe.status).toBe(503);
    expect(JSON.parse(probe.body)).toEqual({ status: 'draining', checks: [] });
    await Promise.all(loops);
    const code = await Promise.race([svc.exited, new Promise((r) => setTimeout(() => r('still running'), 15_000))]);
    agent.destroy();
    probeAgent.destroy();
    slow.close();
    expect(code).toBe(0);
    const before = outcomes.filter((o) => o.startedAt < sigtermAt);
    expect(before.length).toBeGreaterThan(20);
    expect(before.filter((o) => o.error || o.status !== 200)).toEqual([]);
    // Requests in flight at SIGTERM (slow readiness) finished with their answer.
    expect(before.filter((o) => o.path === '/health/readiness').length).toBeGreaterThan(0);
    const logs = svc.logs().map((l) => l.msg);
    expect(logs).toContain('SIGTERM received; draining');
    expect(logs).toContain('drained; exiting');
    expect(svc.stderr()).toBe('');
  });

  it('drains the same way on SIGINT', async () => {
    const svc = await startService(dir('ai'));
    svc.proc.kill('SIGINT');
    expect(await Promise.race([svc.exited, new Promise((r) => setTimeout(() => r('still running'), 10_000))])).toBe(0);
    expect(svc.logs().map((l) => l.msg)).toEqual(expect.arrayContaining(['SIGINT received; draining', 'drained; exiting']));
  });

  it('exits 1, logged, at the STELLA_SHUTDOWN_GRACE_SECONDS deadline when work does not finish', async () => {
    const hangPort = await freePort();
    const hang: Server = createServer(() => undefined).listen(hangPort, '127.0.0.1');
    const svc = await startService(dir('task-runner'), { env: { STELLA_QUEUE_URL: nats.url, STELLA_EGRESS_POLICY: 'allow', STELLA_TASK_SANDBOX: 'none', STELLA_SHUTDOWN_GRACE_SECONDS: '1', ...osKeys, STELLA_OBJECT_STORE_ENDPOINT: `http://127.0.0.1:${hangPort}` } });
    try {
      await waitReadiness(svc, 503); // the object store never answers
      nc.publish('stella.task-runner.work', Buffer.from(JSON.stringify({ step: { id: 'stuck', kind: 'fetch', url: `http://127.0.0.1:${hangPort}/` } })));
      await nc.flush();
      // Taken by the worker (delivered, not acknowledged): in flight.
      await waitFor('the stuck step taken', async () => (await (await nc.jetstreamManager()).consumers.info('STELLA_WORK', 'stella-task-runner-work')).num_ack_pending === 1, 10_000);
      svc.proc.kill('SIGTERM');
      expect(await Promise.race([svc.exited, new Promise((r) => setTimeout(() => r('still running'), 10_000))])).toBe(1);
      expect(svc.logs().map((l) => l.msg)).toContain('shutdown deadline of 1 s reached; exiting with work left');
    } finally {
      await svc.stop();
      hang.closeAllConnections();
      hang.close();
    }
  });
});
