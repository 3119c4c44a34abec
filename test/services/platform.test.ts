/**
 * The services against the real support stack of the quickstart: PostgreSQL 15, NATS with
 * JetStream, the SeaweedFS S3 gateway and an OpenTelemetry collector (or, when no collector
 * binary is cached, an OTLP/HTTP receiver decoding the JSON export).
 *
 * - object store: SigV4 through the S3 client; readiness is HeadBucket (good credentials
 *   ready; wrong secret or missing bucket not ready, the cause named);
 * - queue: work queued while its worker is down is kept in the JetStream stream (with the
 *   configured retention) and done exactly once when the worker comes back;
 * - auth: the wizard steps and the AI assistant need an API token (401 without / wrong);
 * - tracing: a span of an API request reaches the collector with the release metadata;
 * - seed and data: quickstart-only seed and demo endpoints; findings (ledger), an export in
 *   the object store, a task-pack run queued through the orchestrator to the task runner;
 * - Conseiller: a second source of the same advisory is kept and linked; feed watermark.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import pg from 'pg';
import { connect, nanos, type NatsConnection } from 'nats';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { freePort, waitFor } from '../helpers/net.ts';
import { natsAvailable, postgresAvailable, startNats, startPostgres, type TestPostgres, type TestProcessServer } from '../helpers/servers.ts';
import { COMMIT, VERSION, buildInto, startService, waitReadiness, type Built, type RunningService } from './harness.ts';
import { startSeaweedS3, startTraceSink, type TestS3, type TraceSink } from './support.ts';
import { askWork, queueWork } from './work.ts';

const ADMIN = 'CANARY-admin-pass-6be1a0';
let built: Built;
let db: TestPostgres;
let nats: TestProcessServer;
let nc: NatsConnection;
let s3: TestS3;
let sql: pg.Pool;
const dir = (s: string) => built.services.get(s)!.dir;

type Readiness = { status: string; checks: { name: string; ok: boolean; error?: string }[] };

beforeAll(async () => {
  if (!postgresAvailable() || !natsAvailable()) throw new Error('postgresql-15 and nats-server are needed: run scripts/host-setup.sh');
  [built, db, nats, s3] = await Promise.all([
    buildInto(['api', 'ai', 'ledger', 'export', 'orchestrator', 'task-runner', 'conseiller']),
    startPostgres(),
    startNats(),
    startSeaweedS3(),
  ]);
  await s3.createBucket('stella');
  nc = await connect({ servers: nats.url.replace('nats://', '') });
  sql = new pg.Pool({ connectionString: db.url, max: 2 });
  sql.on('error', () => undefined);
});
afterAll(async () => {
  await sql?.end().catch(() => undefined);
  await nc?.close();
  await Promise.all([db?.destroy(), nats?.stop(), s3?.stop()]);
  built?.cleanup();
});

const s3Env = () => ({ STELLA_OBJECT_STORE_ENDPOINT: s3.endpoint, STELLA_OBJECT_STORE_ACCESS_KEY: s3.accessKey, STELLA_OBJECT_STORE_SECRET_KEY: s3.secretKey });
const apiEnv = (extra: Record<string, string> = {}) => ({ STELLA_DATABASE_URL: db.url, STELLA_QUEUE_URL: nats.url, ...s3Env(), STELLA_QUICKSTART_MODE: 'true', STELLA_ADMIN_PASSWORD: ADMIN, STELLA_QUEUE_RETENTION: '2h', ...extra });
const workerEnv = (extra: Record<string, string> = {}) => ({ STELLA_DATABASE_URL: db.url, STELLA_QUEUE_URL: nats.url, STELLA_QUEUE_RETENTION: '2h', ...extra });

async function login(api: RunningService): Promise<string> {
  const r = await api.get('/api/v1/tokens', { method: 'POST', body: JSON.stringify({ username: 'admin', password: ADMIN }) });
  expect(r.status).toBe(201);
  return (r.json() as { token: string }).token;
}
const bearer = (token: string) => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json' });

async function consumerState(name: string): Promise<{ pending: number; ackPending: number; delivered: number }> {
  const ci = await (await nc.jetstreamManager()).consumers.info('STELLA_WORK', name);
  return { pending: ci.num_pending, ackPending: ci.num_ack_pending, delivered: ci.delivered.consumer_seq };
}

describe('object store (SeaweedFS S3 gateway, SigV4, HeadBucket readiness)', () => {
  it('good credentials and an existing bucket: ready; an export is written and reads back byte for byte', async () => {
    const svc = await startService(dir('export'), { env: { ...workerEnv(), ...s3Env(), STELLA_OBJECT_STORE_REGION: 'us-east-1' } });
    try {
      const r = (await waitReadiness(svc, 200)) as Readiness;
      expect(r.checks).toContainEqual({ name: 'object-store', ok: true });
      const put = await askWork(nc, 'stella.export.work', { id: 'os-0001', tenant: 'demo', format: 'json' });
      expect(put).toMatchObject({ ok: true, result: { key: 'exports/demo/os-0001.json' } });
      const obj = await s3.client.send(new GetObjectCommand({ Bucket: 'stella', Key: 'exports/demo/os-0001.json' }));
      expect(createHash('sha256').update(Buffer.from(await obj.Body!.transformToByteArray())).digest('hex')).toBe(put.result!.sha256);
      // The same export again (a redelivery): nothing rewritten, the same answer.
      expect(await askWork(nc, 'stella.export.work', { id: 'os-0001', tenant: 'demo', format: 'json' })).toMatchObject({ ok: true, result: { duplicate: true, sha256: put.result!.sha256 } });
    } finally {
      expect(await svc.stop()).toBe(0);
    }
  });

  it('a wrong secret: not ready, "credentials refused" (HTTP 403), the secret never shown', async () => {
    const wrong = 'CANARY-wrong-s3-secret-0e11';
    const svc = await startService(dir('export'), { env: { ...workerEnv(), ...s3Env(), STELLA_OBJECT_STORE_SECRET_KEY: wrong } });
    try {
      const r = (await waitReadiness(svc, 503, 20_000, (b) => (b as Readiness).checks.some((c) => c.name === 'object-store' && !c.ok))) as Readiness;
      const check = r.checks.find((c) => c.name === 'object-store')!;
      expect(check.error).toMatch(/^credentials refused by http:\/\/127\.0\.0\.1:\d+ \(HTTP 403.*\): check STELLA_OBJECT_STORE_ACCESS_KEY and STELLA_OBJECT_STORE_SECRET_KEY$/);
      expect(JSON.stringify(r)).not.toContain(wrong);
    } finally {
      await svc.stop();
    }
    expect(svc.stdout() + svc.stderr()).not.toContain(wrong);
  });

  it('a missing bucket: not ready, the bucket named (HTTP 404)', async () => {
    const svc = await startService(dir('export'), { env: { ...workerEnv(), ...s3Env(), STELLA_OBJECT_STORE_BUCKET: 'no-such-bucket' } });
    try {
      const r = (await waitReadiness(svc, 503, 20_000, (b) => (b as Readiness).checks.some((c) => c.name === 'object-store' && !c.ok))) as Readiness;
      expect(r.checks.find((c) => c.name === 'object-store')!.error).toMatch(/^bucket "no-such-bucket" does not exist at http:\/\/127\.0\.0\.1:\d+ \(HTTP 404\)/);
    } finally {
      await svc.stop();
    }
  });

  it('nothing listening: not ready, "unreachable"', async () => {
    const svc = await startService(dir('export'), { env: { ...workerEnv(), ...s3Env(), STELLA_OBJECT_STORE_ENDPOINT: `http://127.0.0.1:${await freePort()}` } });
    try {
      const r = (await waitReadiness(svc, 503, 20_000, (b) => (b as Readiness).checks.some((c) => c.name === 'object-store' && !c.ok))) as Readiness;
      expect(r.checks.find((c) => c.name === 'object-store')!.error).toMatch(/unreachable/);
    } finally {
      await svc.stop();
    }
  });
});

describe('API: seed, auth, data endpoints, queue, tracing', () => {
  let api: RunningService;
  let token: string;
  let sink: TraceSink;

  beforeAll(async () => {
    sink = await startTraceSink();
    api = await startService(dir('api'), { env: apiEnv({ STELLA_OTEL_EXPORTER_ENDPOINT: sink.endpoint }) });
    await waitReadiness(api, 200, 30_000);
    token = await login(api);
  });

  it('GET /welcome shows the dependency endpoints from the configuration, never a secret', async () => {
    const w = await api.get('/welcome');
    expect(w.json()).toMatchObject({ quickstart: true, dependencies: { STELLA_OBJECT_STORE_ENDPOINT: s3.endpoint, STELLA_OBJECT_STORE_BUCKET: 'stella', STELLA_QUEUE_URL: nats.url } });
    expect(w.body).not.toContain(s3.secretKey);
    expect(w.body).not.toContain(db.password);
  });
  afterAll(async () => {
    await api?.stop();
    await sink?.stop();
  });

  it('the wizard steps need a token: missing or wrong → 401; the token from POST /api/v1/tokens works; whoami introspects it', async () => {
    expect((await api.get('/welcome/steps/confirm-endpoints', { method: 'POST' })).status).toBe(401);
    expect((await api.get('/welcome/steps/confirm-endpoints', { method: 'POST', headers: { authorization: 'Bearer stella_not-a-token' } })).status).toBe(401);
    expect((await api.get('/welcome/steps/confirm-endpoints', { method: 'POST', headers: { authorization: token } })).status).toBe(401);
    const ok = await api.get('/welcome/steps/confirm-endpoints', { method: 'POST', headers: bearer(token) });
    expect(ok.json()).toEqual({ step: 'confirm-endpoints', done: true });
    expect((await api.get('/api/v1/auth/whoami')).status).toBe(401);
    expect((await api.get('/api/v1/auth/whoami', { headers: bearer(token) })).json()).toMatchObject({ username: 'admin', tenant: 'demo', role: 'tenant-admin' });
    // Stored hashed only.
    const rows = (await sql.query('SELECT token_sha256 FROM api_tokens')).rows.map((r) => r.token_sha256 as string);
    expect(rows).toContain(createHash('sha256').update(token).digest('hex'));
    expect(JSON.stringify(rows)).not.toContain(token);
    // An expired token is refused.
    await sql.query('UPDATE api_tokens SET expires_at = now() - interval \'1 second\' WHERE token_sha256 = $1', [createHash('sha256').update(token).digest('hex')]);
    expect((await api.get('/api/v1/auth/whoami', { headers: bearer(token) })).status).toBe(401);
    token = await login(api);
  });

  it('the AI assistant needs a token, verified with the API: missing or wrong → 401, valid → answered; API down → 503', async () => {
    // The model backend is an external OpenAI-compatible server; none runs here, so a small one answers.
    const questions: string[] = [];
    const port = await freePort();
    const backend: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        const q = (JSON.parse(body) as { messages: { role: string; content: string }[] }).messages.find((m) => m.role === 'user')!.content;
        questions.push(q);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ choices: [{ message: { content: `about ${q}` } }] }));
      });
    }).listen(port, '127.0.0.1');
    const ai = await startService(dir('ai'), { env: { STELLA_AI_ENABLED: 'true', STELLA_AI_MODEL_ENDPOINT: `http://127.0.0.1:${port}/v1`, STELLA_API_URL: api.url } });
    try {
      const ask = (headers: Record<string, string>) => ai.get('/api/v1/assistant/ask', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ question: 'CVE-2021-44906?' }) });
      expect((await ask({})).status).toBe(401);
      expect((await ask({ authorization: 'Bearer stella_forged' })).status).toBe(401);
      expect(questions).toEqual([]);
      const good = await ask({ authorization: `Bearer ${token}` });
      expect(good.status).toBe(200);
      expect(good.json()).toEqual({ answer: 'about CVE-2021-44906?' });
      const down = await startService(dir('ai'), { env: { STELLA_AI_ENABLED: 'true', STELLA_AI_MODEL_ENDPOINT: `http://127.0.0.1:${port}/v1`, STELLA_API_URL: `http://127.0.0.1:${await freePort()}` } });
      try {
        const r = await down.get('/api/v1/assistant/ask', { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: '{"question":"x"}' });
        expect(r.status).toBe(503);
        expect(r.body).toContain('cannot verify the token');
      } finally {
        await down.stop();
      }
    } finally {
      expect(await ai.stop()).toBe(0);
      backend.close();
    }
    expect(ai.stdout()).not.toContain(token);
  });

  it('work queued while the ledger is down is kept in the JetStream stream (configured retention) and done exactly once when it is back', async () => {
    // A first run creates the durable consumer; then the worker is down.
    const first = await startService(dir('ledger'), { env: workerEnv() });
    await waitReadiness(first, 200);
    await waitFor('the ledger consumer', async () => (await consumerState('stella-ledger-work').then(() => true, () => false)), 10_000);
    expect(await first.stop()).toBe(0);

    const stream = await (await nc.jetstreamManager()).streams.info('STELLA_WORK');
    expect(stream.config).toMatchObject({ retention: 'workqueue', storage: 'file', max_age: nanos(2 * 3_600_000), subjects: ['stella.*.work'] });

    const created = await api.get('/api/v1/findings', { method: 'POST', headers: bearer(token), body: JSON.stringify({ sbomId: 'sbom-demo-web', advisoryId: 'CVE-2021-44906', component: 'pkg:npm/minimist@1.2.5-backup' }) });
    expect(created.status).toBe(201);
    const finding = (created.json() as { finding: { id: string } }).finding;
    // Published again with the same id (a retrying client): the stream drops the duplicate.
    const dup = await queueWork(nc, 'stella.ledger.work', { tenant: 'demo', kind: 'finding.recorded', finding }, `finding:demo:${finding.id}`);
    expect(dup.duplicate).toBe(true);
    expect((await consumerState('stella-ledger-work')).pending).toBe(1);
    await new Promise((r) => setTimeout(r, 500));
    const count = async () => Number((await sql.query("SELECT count(*) AS n FROM ledger_events WHERE payload->'finding'->>'id' = $1", [finding.id])).rows[0].n);
    expect(await count()).toBe(0);

    const again = await startService(dir('ledger'), { env: workerEnv() });
    try {
      await waitFor('the queued finding in the ledger', async () => (await count()) === 1, 20_000);
      await waitFor('the item acknowledged', async () => {
        const c = await consumerState('stella-ledger-work');
        return c.pending === 0 && c.ackPending === 0;
      }, 10_000);
      await new Promise((r) => setTimeout(r, 1000));
      expect(await count()).toBe(1);
      expect((await sql.query('SELECT work_id FROM ledger_events WHERE payload->\'finding\'->>\'id\' = $1', [finding.id])).rows[0].work_id).toBe(`finding:demo:${finding.id}`);
    } finally {
      expect(await again.stop()).toBe(0);
    }
    // A restart delivers nothing again.
    const third = await startService(dir('ledger'), { env: workerEnv() });
    try {
      await waitReadiness(third, 200);
      await new Promise((r) => setTimeout(r, 1000));
      expect(await count()).toBe(1);
    } finally {
      await third.stop();
    }
  });

  it('an export requested through the API is written to the object store and reported; a task-pack run waits in the queue for the task runner', async () => {
    const exp = await startService(dir('export'), { env: { ...workerEnv(), ...s3Env() } });
    const orch = await startService(dir('orchestrator'), { env: workerEnv() });
    try {
      await Promise.all([waitReadiness(exp, 200), waitReadiness(orch, 200)]);
      const req = await api.get('/api/v1/exports', { method: 'POST', headers: bearer(token), body: JSON.stringify({ target: 'production' }) });
      expect(req.status).toBe(202);
      const { exportId } = req.json() as { exportId: string };
      let status: Record<string, unknown> = {};
      await waitFor('the export written', async () => {
        const r = await api.get(`/api/v1/exports/${exportId}`, { headers: bearer(token) });
        status = r.json() as Record<string, unknown>;
        return r.status === 200;
      }, 20_000);
      expect(status).toMatchObject({ status: 'written', key: `exports/demo/${exportId}.json` });
      const obj = await s3.client.send(new GetObjectCommand({ Bucket: 'stella', Key: `exports/demo/${exportId}.json` }));
      const body = Buffer.from(await obj.Body!.transformToByteArray());
      expect(createHash('sha256').update(body).digest('hex')).toBe(status.sha256);
      expect((JSON.parse(body.toString()) as { data: { sboms: unknown[]; taskPacks: unknown[] } }).data.sboms).toHaveLength(2);

      // The task runner is down: the run is scheduled and its steps wait, durable, in the stream.
      const run = await api.get('/api/v1/task-packs/pack-export-to-production/run', { method: 'POST', headers: bearer(token) });
      expect(run.status).toBe(202);
      const { runId } = run.json() as { runId: string };
      await waitFor('the run scheduled', async () => (await sql.query('SELECT steps FROM orchestrator_jobs WHERE run_id = $1', [runId])).rows[0]?.steps === 2, 20_000);
      const pending = async () => {
        const s = await (await nc.jetstreamManager()).streams.info('STELLA_WORK', { subjects_filter: 'stella.task-runner.work' });
        return s.state.subjects?.['stella.task-runner.work'] ?? 0;
      };
      expect(await pending()).toBe(2);
      const tr = await startService(dir('task-runner'), { env: { STELLA_QUEUE_URL: nats.url, STELLA_QUEUE_RETENTION: '2h', ...s3Env() } });
      try {
        await waitFor('the task runner to take both steps', async () => (await pending()) === 0, 30_000);
        // Its export step queued one more export, which the Export Center writes.
        await waitFor('the export of the pack', async () => Number((await sql.query('SELECT count(*) AS n FROM export_jobs')).rows[0].n) >= 2, 20_000);
      } finally {
        expect(await tr.stop()).toBe(0);
      }
    } finally {
      expect(await exp.stop()).toBe(0);
      expect(await orch.stop()).toBe(0);
    }
  });

  it('exports a span of an API request to the collector, with service.version and the git commit', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    expect((await api.get('/version', { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } })).status).toBe(200);
    let span: ReturnType<TraceSink['spans']>[number] | undefined;
    await waitFor(`the span at the ${sink.kind}`, async () => {
      span = sink.spans().find((s) => s.name === 'GET /version' && s.traceId.toLowerCase() === traceId);
      return span !== undefined;
    }, 20_000, 250);
    expect(span!.resource).toMatchObject({ 'service.name': 'stella-api', 'service.version': VERSION, 'vcs.ref.head.revision': COMMIT, 'service.namespace': 'stellaops' });
    expect(span!.attributes).toMatchObject({ 'http.request.method': 'GET', 'http.route': '/version', 'http.response.status_code': 200 });
    console.info(`spans received by: ${sink.kind}`);
  });
});

describe('quickstart mode guards the seed and the demo endpoints', () => {
  it('outside quickstart mode: nothing seeded, /welcome and its steps 404', async () => {
    await sql.query('CREATE DATABASE production_like');
    const url = db.url.replace(/\/stella$/, '/production_like');
    const api = await startService(dir('api'), { env: { ...apiEnv(), STELLA_DATABASE_URL: url, STELLA_QUICKSTART_MODE: 'false', STELLA_ADMIN_PASSWORD: undefined as unknown as string } });
    const other = new pg.Client({ connectionString: url });
    try {
      await waitReadiness(api, 200, 30_000);
      expect((await api.get('/welcome')).status).toBe(404);
      expect((await api.get('/welcome/steps/confirm-endpoints', { method: 'POST' })).status).toBe(404);
      await other.connect();
      const n = (await other.query('SELECT (SELECT count(*) FROM tenants) t, (SELECT count(*) FROM users) u, (SELECT count(*) FROM sboms) s, (SELECT count(*) FROM stella_seed_runs) r')).rows[0];
      expect(n).toEqual({ t: '0', u: '0', s: '0', r: '0' });
      expect((await api.get('/api/v1/tokens', { method: 'POST', body: JSON.stringify({ username: 'admin', password: ADMIN }) })).status).toBe(401);
    } finally {
      await other.end().catch(() => undefined);
      expect(await api.stop()).toBe(0);
    }
  });
});

describe('conseiller: AOC and the feed watermark', () => {
  it('a second source for the same advisory keeps both source records unchanged, linked; the watermark reports each source', async () => {
    const feed = { id: 'GHSA-feed-0001', severity: 'high', summary: 'from the vendor feed' };
    const port = await freePort();
    let feedUp = true;
    const server: Server = createServer((_req, res) => {
      if (!feedUp) return void res.writeHead(503).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(feed));
    }).listen(port, '127.0.0.1');
    const feedUrl = `http://127.0.0.1:${port}/ghsa.json`;
    const svc = await startService(dir('conseiller'), { env: workerEnv({ STELLA_FEED_SOURCES: feedUrl, STELLA_FEED_RETRY_BACKOFF: '50ms', STELLA_FEED_POLL_INTERVAL: '1h' }) });
    try {
      await waitReadiness(svc, 200);
      expect((await svc.get('/capabilities')).json()).toMatchObject({ merge: false });
      let wm: Record<string, unknown> = {};
      await waitFor('the watermark caught up', async () => {
        const r = await svc.get('/status/watermark');
        wm = r.json() as Record<string, unknown>;
        return r.status === 200;
      }, 20_000);
      expect(wm).toMatchObject({ caughtUp: true, queuePending: 0, sources: [{ url: feedUrl, ok: true, lastError: null, lastSha256: createHash('sha256').update(JSON.stringify(feed)).digest('hex') }] });
      expect(Date.parse(String(wm.lastIngestedAt))).toBeGreaterThan(Date.now() - 60_000);

      // The same advisory from a second source, with other content: a new record, linked, both unchanged.
      const second = JSON.stringify({ id: 'GHSA-feed-0001', severity: 'critical', summary: 'from a mirror' });
      const b = await askWork(nc, 'stella.conseiller.work', { sourceUrl: 'https://mirror.example.test/GHSA-feed-0001.json', content: second });
      expect(b).toMatchObject({ ok: true, result: { duplicate: false, documentId: 'GHSA-feed-0001' } });
      const rows = (await sql.query("SELECT id, source_url, convert_from(content, 'UTF8') AS content FROM conseiller_source_documents WHERE document_id = 'GHSA-feed-0001' ORDER BY id")).rows;
      expect(rows.map((r) => [r.source_url, r.content])).toEqual([
        [feedUrl, JSON.stringify(feed)],
        ['https://mirror.example.test/GHSA-feed-0001.json', second],
      ]);
      const links = (await sql.query('SELECT from_id, to_id, relation FROM conseiller_document_links WHERE from_id = $1', [b.result!.id])).rows;
      expect(links).toEqual([{ from_id: String(b.result!.id), to_id: String(rows[0].id), relation: 'conflicts-with' }]);

      // The feed failing: not caught up, the error named.
      feedUp = false;
      const restarted = await startService(dir('conseiller'), { env: workerEnv({ STELLA_FEED_SOURCES: feedUrl, STELLA_FEED_RETRY_BACKOFF: '50ms' }) });
      try {
        await waitFor('the failure recorded', async () => {
          const r = await restarted.get('/status/watermark');
          wm = r.json() as Record<string, unknown>;
          return r.status === 503 && (wm.sources as { lastError: string | null }[])[0]!.lastError !== null;
        }, 20_000);
        expect(wm).toMatchObject({ caughtUp: false, sources: [{ url: feedUrl, ok: false, lastError: 'HTTP 503' }] });
      } finally {
        await restarted.stop();
      }
    } finally {
      await svc.stop();
      server.close();
    }
  });
});
