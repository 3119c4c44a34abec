/**
 * Services against real PostgreSQL 15, Redis and NATS: readiness follows PostgreSQL
 * going down and coming back (no restart, no crash loop), the API's migrations and
 * quickstart seed are idempotent, a worker consumes what the API publishes, canary
 * secrets never leak, and Conseiller/Excitator keep source records immutable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import pg from 'pg';
import { connect, type NatsConnection } from 'nats';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { waitFor } from '../helpers/net.ts';
import { natsAvailable, postgresAvailable, redisAvailable, startNats, startPostgres, startRedis, type TestPostgres, type TestProcessServer } from '../helpers/servers.ts';
import { buildInto, runToExit, startService, waitReadiness, type Built, type RunningService } from './harness.ts';
import { startSeaweedS3, type TestS3 } from './support.ts';
import { askWork } from './work.ts';

const PG_CANARY = 'CANARY-pg-pass-3a9c71';
const ADMIN_CANARY = 'CANARY-admin-pass-58d0e2';
const REDIS_CANARY = 'CANARY-redis-pass-0b4f16';
const WRONG_CANARY = 'CANARY-wrong-pass-d27c44';

let built: Built;
let db: TestPostgres;
let redis: TestProcessServer;
let nats: TestProcessServer;
let nc: NatsConnection;
let sql: pg.Pool;
let s3: TestS3;
const S3_CANARY = 'CANARY-s3-secret-91be02';
const dir = (s: string) => built.services.get(s)!.dir;

beforeAll(async () => {
  const missing = [!postgresAvailable() && 'postgresql-15', !redisAvailable() && 'redis-server', !natsAvailable() && 'nats-server'].filter(Boolean);
  if (missing.length) throw new Error(`missing ${missing.join(', ')}: run scripts/host-setup.sh`);
  [built, db, redis, nats, s3] = await Promise.all([
    buildInto(['api', 'console', 'ledger', 'export', 'conseiller', 'excitator', 'policy']),
    startPostgres({ password: PG_CANARY }),
    startRedis({ password: REDIS_CANARY }),
    startNats(),
    startSeaweedS3({ secretKey: S3_CANARY }),
  ]);
  await s3.createBucket('stella');
  nc = await connect({ servers: nats.url.replace('nats://', '') });
  sql = new pg.Pool({ connectionString: db.url, max: 2 });
  sql.on('error', () => undefined);
});
afterAll(async () => {
  await sql?.end().catch(() => undefined);
  await nc?.close();
  await Promise.all([db?.destroy(), redis?.stop(), nats?.stop(), s3?.stop()]);
  built?.cleanup();
});

const apiEnv = () => ({
  STELLA_DATABASE_URL: db.url,
  STELLA_REDIS_URL: redis.url,
  STELLA_QUEUE_URL: nats.url,
  STELLA_OBJECT_STORE_ENDPOINT: s3.endpoint,
  STELLA_OBJECT_STORE_ACCESS_KEY: s3.accessKey,
  STELLA_OBJECT_STORE_SECRET_KEY: s3.secretKey,
  STELLA_QUICKSTART_MODE: 'true',
  STELLA_ADMIN_PASSWORD: ADMIN_CANARY,
});
const workerEnv = () => ({ STELLA_DATABASE_URL: db.url, STELLA_QUEUE_URL: nats.url });

/** Queues a work item on the JetStream work stream and waits for the worker's answer. */
const request = (subject: string, data: unknown) => askWork(nc, subject, data);

function leaks(s: RunningService | { stdout: string; stderr: string }, canaries: readonly string[]): string[] {
  const text = 'proc' in s ? s.stdout() + s.stderr() : s.stdout + s.stderr;
  return canaries.filter((c) => text.includes(c));
}

describe('PostgreSQL down and back', () => {
  it('a dependency down at start is not a crash; readiness names postgres while it is stopped and recovers without a restart', async () => {
    await db.stop();
    const ledger = await startService(dir('ledger'), { env: workerEnv() });
    try {
      // Not ready while PostgreSQL is down, once connected to NATS (and its JetStream work stream).
      const natsUp = (b: unknown) => (b as { checks: { name: string; ok: boolean }[] }).checks.some((c) => c.name === 'nats' && c.ok);
      const down = (await waitReadiness(ledger, 503, 20_000, natsUp)) as { status: string; checks: { name: string; ok: boolean; error?: string }[] };
      expect(down.status).toBe('not-ready');
      expect(down.checks).toContainEqual(expect.objectContaining({ name: 'postgres', ok: false }));
      expect(down.checks).toContainEqual(expect.objectContaining({ name: 'startup', ok: false }));
      expect(down.checks).toContainEqual({ name: 'nats', ok: true });
      expect((await ledger.get('/health/liveness')).status).toBe(200);

      await db.start();
      await waitReadiness(ledger, 200, 30_000);
      const pid = ledger.proc.pid;

      await db.stop();
      const again = (await waitReadiness(ledger, 503)) as { checks: { name: string; ok: boolean; error?: string }[] };
      expect(again.checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(['postgres']);
      expect((await ledger.get('/health/liveness')).status).toBe(200);
      await db.start();
      await waitReadiness(ledger, 200, 30_000);
      expect(ledger.proc.pid).toBe(pid);
      expect(ledger.proc.exitCode).toBeNull();

      // The worker consumes a message published on NATS and appends it to the ledger.
      const reply = await request('stella.ledger.work', { tenant: 'demo', kind: 'finding.recorded', finding: 'CVE-2021-44906' });
      expect(reply.ok).toBe(true);
      const row = await sql.query('SELECT tenant_id, kind, payload FROM ledger_events WHERE id = $1', [reply.result!.eventId]);
      expect(row.rows[0]).toMatchObject({ tenant_id: 'demo', kind: 'finding.recorded', payload: { finding: 'CVE-2021-44906' } });
      await expect(sql.query('DELETE FROM ledger_events')).rejects.toThrow(/append-only/);
    } finally {
      expect(await ledger.stop()).toBe(0);
    }
    expect(ledger.stderr()).toBe('');
  });
});

describe('api', () => {
  it('migrations are idempotent (run twice) and the seed is applied once', async () => {
    const first = await runToExit(dir('api'), { args: ['migrate'], env: apiEnv() });
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('applied migration api#1');
    expect(first.stdout).toContain('quickstart seed applied');
    const hash1 = (await sql.query('SELECT password_hash FROM users WHERE username = $1', ['admin'])).rows[0].password_hash as string;
    expect(hash1).toMatch(/^scrypt\$16384\$8\$1\$/);
    const counts = async () => (await sql.query("SELECT (SELECT count(*) FROM tenants) t, (SELECT count(*) FROM sboms) s, (SELECT count(*) FROM advisories) a, (SELECT count(*) FROM vex_statements) v, (SELECT count(*) FROM policies) p, (SELECT count(*) FROM task_packs) k, (SELECT count(*) FROM stella_seed_runs) r, (SELECT count(*) FROM stella_schema_migrations WHERE component = 'api') m")).rows[0];
    const before = await counts();
    expect(before).toEqual({ t: '1', s: '2', a: '3', v: '2', p: '1', k: '1', r: '1', m: '3' });

    const second = await runToExit(dir('api'), { args: ['migrate'], env: { ...apiEnv(), STELLA_ADMIN_PASSWORD: 'another-password' } });
    expect(second.code).toBe(0);
    expect(second.stdout).not.toContain('applied migration');
    expect(second.stdout).toContain('migrations of api up to date');
    expect(second.stdout).toContain('quickstart seed already applied; nothing changed');
    expect(await counts()).toEqual(before);
    expect((await sql.query('SELECT password_hash FROM users WHERE username = $1', ['admin'])).rows[0].password_hash).toBe(hash1);
    expect(leaks(first, [PG_CANARY, ADMIN_CANARY, REDIS_CANARY])).toEqual([]);
    expect(leaks(second, [PG_CANARY, ADMIN_CANARY, REDIS_CANARY])).toEqual([]);
  });

  it('with STELLA_MIGRATIONS_AUTO=false, readiness stays 503 (naming start-up) until the migration Job has run', async () => {
    await sql.query('CREATE DATABASE upgrade_check');
    const url = db.url.replace(/\/stella$/, '/upgrade_check');
    const env = { ...apiEnv(), STELLA_DATABASE_URL: url, STELLA_MIGRATIONS_AUTO: 'false', STELLA_QUICKSTART_MODE: 'false' };
    const api = await startService(dir('api'), { env });
    try {
      type Readiness = { checks: { name: string; ok: boolean; error?: string }[] };
      const startup = (b: unknown) => (b as Readiness).checks?.find((c) => c.name === 'startup')?.error ?? '';
      // Until the service has looked at the schema, start-up reads "not finished"; then it names the schema gap.
      const r = await waitReadiness(api, 503, 20_000, (b) => startup(b).includes('database schema is at'));
      expect(startup(r)).toContain('database schema is at api#0, this build needs api#3');
      const job = await runToExit(dir('api'), { args: ['migrate'], env });
      expect(job.code).toBe(0);
      await waitReadiness(api, 200, 30_000);
    } finally {
      expect(await api.stop()).toBe(0);
    }
  });

  it('serves the welcome wizard, issues a token, and publishes the sample scan to the ledger worker', async () => {
    const [api, ledger] = await Promise.all([startService(dir('api'), { env: apiEnv() }), startService(dir('ledger'), { env: workerEnv() })]);
    try {
      const ready = (await waitReadiness(api, 200)) as { checks: { name: string }[] };
      expect(ready.checks.map((c) => c.name).sort()).toEqual(['nats', 'object-store', 'postgres', 'redis']);
      await waitReadiness(ledger, 200);
      const welcome = (await api.get('/welcome')).json() as { quickstart: boolean; steps: { id: string; done: boolean }[] };
      expect(welcome.quickstart).toBe(true);
      expect(welcome.steps.map((s) => s.id)).toEqual(['confirm-endpoints', 'generate-token', 'import-sample-scan', 'open-vuln-explorer']);
      expect((await api.get('/api/v1/tenants')).status).toBe(401);
      const bad = await api.get('/api/v1/tokens', { method: 'POST', body: JSON.stringify({ username: 'admin', password: 'nope' }) });
      expect(bad.status).toBe(401);
      const tok = await api.get('/api/v1/tokens', { method: 'POST', body: JSON.stringify({ username: 'admin', password: ADMIN_CANARY }) });
      expect(tok.status).toBe(201);
      const auth = { authorization: `Bearer ${(tok.json() as { token: string }).token}` };
      expect((await api.get('/api/v1/advisories', { headers: auth })).json()).toMatchObject({ advisories: expect.arrayContaining([expect.objectContaining({ id: 'CVE-2021-44906' })]) });
      const before = Number((await sql.query('SELECT count(*) AS n FROM ledger_events WHERE kind = $1', ['scan.imported'])).rows[0].n);
      const scan = await api.get('/api/v1/scans/import', { method: 'POST', headers: auth });
      expect(scan.json()).toEqual({ sboms: 2, findings: 3 });
      await waitFor('the ledger to append the scan', async () => Number((await sql.query('SELECT count(*) AS n FROM ledger_events WHERE kind = $1', ['scan.imported'])).rows[0].n) === before + 1, 10_000);
      const findings = (await api.get('/api/v1/findings', { headers: auth })).json() as { findings: { advisory_id: string; vex_status: string | null }[] };
      expect(findings.findings).toContainEqual(expect.objectContaining({ advisory_id: 'CVE-2021-23337', vex_status: 'not_affected' }));
      const after = (await api.get('/welcome')).json() as { steps: { id: string; done: boolean }[] };
      expect(after.steps.filter((s) => s.done).map((s) => s.id)).toEqual(['generate-token', 'import-sample-scan', 'open-vuln-explorer']);
      for (const body of [(await api.get('/config')).body, (await api.get('/health/readiness')).body, tok.body]) expect([PG_CANARY, ADMIN_CANARY, REDIS_CANARY].filter((c) => body.includes(c))).toEqual([]);
    } finally {
      expect(await api.stop()).toBe(0);
      expect(await ledger.stop()).toBe(0);
    }
    expect(leaks(api, [PG_CANARY, ADMIN_CANARY, REDIS_CANARY])).toEqual([]);
  });

  it('console: serves the wizard UI with the quickstart banner and proxies /welcome and /api/* to the API (502 while it is down)', async () => {
    const api = await startService(dir('api'), { env: apiEnv() });
    const consoleSvc = await startService(dir('console'), { env: { STELLA_API_URL: api.url, STELLA_QUICKSTART_MODE: 'true' } });
    try {
      await waitReadiness(api, 200);
      await waitReadiness(consoleSvc, 200);
      const page = await consoleSvc.get('/');
      expect(page.status).toBe(200);
      for (const text of ['Connected to Quickstart', 'View install docs', 'Export pack to production', 'Confirm endpoints', 'Generate an API token', 'Run the sample scan import', 'Open the Vulnerability Explorer']) expect(page.body).toContain(text);
      expect((await consoleSvc.get('/ui/console.js')).body).toContain('/api/v1/scans/import');
      expect((await consoleSvc.get('/ui/..%2Fmain.js')).status).toBe(404);
      expect((await consoleSvc.get('/config')).json()).toMatchObject({ config: { STELLA_QUICKSTART_MODE: true, STELLA_DOCS_URL: '/docs/install/overview.md' } });
      expect((await consoleSvc.get('/welcome')).json()).toEqual((await api.get('/welcome')).json());
      // Wizard steps need a token: none or a wrong one is 401.
      expect((await consoleSvc.get('/welcome/steps/confirm-endpoints', { method: 'POST' })).status).toBe(401);
      expect((await consoleSvc.get('/welcome/steps/confirm-endpoints', { method: 'POST', headers: { authorization: 'Bearer stella_wrong' } })).status).toBe(401);
      const tok = await consoleSvc.get('/api/v1/tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: ADMIN_CANARY }) });
      expect(tok.status).toBe(201);
      const confirm = await consoleSvc.get('/welcome/steps/confirm-endpoints', { method: 'POST', headers: { authorization: `Bearer ${(tok.json() as { token: string }).token}` } });
      expect(confirm.json()).toEqual({ step: 'confirm-endpoints', done: true });
      const exp = await consoleSvc.get('/api/v1/exports', { method: 'POST', headers: { authorization: `Bearer ${(tok.json() as { token: string }).token}` }, body: JSON.stringify({ target: 'production' }) });
      expect(exp.status).toBe(202);
      expect(await api.stop()).toBe(0);
      const down = await consoleSvc.get('/welcome');
      expect(down.status).toBe(502);
      expect(down.body).toContain('is unreachable');
      expect((await consoleSvc.get('/health/readiness')).status).toBe(200);
    } finally {
      await api.stop();
      expect(await consoleSvc.stop()).toBe(0);
    }
    expect(leaks(consoleSvc, [ADMIN_CANARY, PG_CANARY])).toEqual([]);
  });

  it('never shows a canary secret, also when the database rejects the password or the URL is invalid', async () => {
    const api = await startService(dir('api'), { env: { ...apiEnv(), STELLA_DATABASE_URL: db.urlWithPassword(WRONG_CANARY), STELLA_LOG_LEVEL: 'debug' } });
    try {
      const r = (await waitReadiness(api, 503)) as { checks: { name: string; ok: boolean; error?: string }[] };
      const pgCheck = r.checks.find((c) => c.name === 'postgres')!;
      expect(pgCheck.ok).toBe(false);
      expect(pgCheck.error).toMatch(/password authentication failed/);
      await waitFor('a failed start-up attempt in the log', async () => api.stdout().includes('start-up work failed; retrying'), 10_000);
      const cfg = await api.get('/config');
      expect(cfg.json()).toMatchObject({ service: 'api', config: { STELLA_QUICKSTART_MODE: true } });
      for (const body of [cfg.body, JSON.stringify(r)]) expect([WRONG_CANARY, ADMIN_CANARY, REDIS_CANARY].filter((c) => body.includes(c))).toEqual([]);
    } finally {
      await api.stop();
    }
    expect(leaks(api, [WRONG_CANARY, ADMIN_CANARY, REDIS_CANARY, encodeURIComponent(WRONG_CANARY)])).toEqual([]);
    expect(api.stdout()).toContain('password authentication failed');

    const invalid = await runToExit(dir('api'), { env: { ...apiEnv(), STELLA_DATABASE_URL: `not a url ${WRONG_CANARY}` } });
    expect(invalid.code).toBe(2);
    expect(invalid.stdout).toContain('STELLA_DATABASE_URL (secret, value hidden) is not a valid URL');
    expect(leaks(invalid, [WRONG_CANARY, ADMIN_CANARY, REDIS_CANARY])).toEqual([]);

    const noAdmin = await runToExit(dir('api'), { env: { ...apiEnv(), STELLA_ADMIN_PASSWORD: undefined } });
    expect(noAdmin.code).toBe(2);
    expect(noAdmin.stdout).toContain('STELLA_ADMIN_PASSWORD is required when STELLA_QUICKSTART_MODE=true');
  });
});

describe('export', () => {
  it('writes the export as one object to the real SeaweedFS S3 gateway (SigV4) and records it; the secret never shows', async () => {
    const svc = await startService(dir('export'), { env: { ...workerEnv(), STELLA_OBJECT_STORE_ENDPOINT: s3.endpoint, STELLA_OBJECT_STORE_ACCESS_KEY: s3.accessKey, STELLA_OBJECT_STORE_SECRET_KEY: S3_CANARY } });
    try {
      await waitReadiness(svc, 200);
      const r = await request('stella.export.work', { id: 'e-0001', tenant: 'demo', format: 'json', target: 'production' });
      expect(r).toMatchObject({ ok: true, result: { key: 'exports/demo/e-0001.json' } });
      const obj = await s3.client.send(new GetObjectCommand({ Bucket: 'stella', Key: 'exports/demo/e-0001.json' }));
      const body = Buffer.from(await obj.Body!.transformToByteArray());
      expect(createHash('sha256').update(body).digest('hex')).toBe(r.result!.sha256);
      expect(JSON.parse(body.toString())).toMatchObject({ kind: 'stella-export', id: 'e-0001', tenant: 'demo' });
      expect(body.toString()).not.toContain(S3_CANARY);
      const row = (await sql.query('SELECT sha256, object_key, size_bytes FROM export_jobs WHERE id = $1', ['e-0001'])).rows[0];
      expect(row).toEqual({ sha256: r.result!.sha256, object_key: 'exports/demo/e-0001.json', size_bytes: body.length });
      const csaf = await request('stella.export.work', { id: 'e-0002', tenant: 'demo', format: 'csaf' });
      expect(csaf).toEqual({ ok: false, error: 'export format csaf is not rendered by this build (rendered: json)' });
    } finally {
      expect(await svc.stop()).toBe(0);
    }
    expect(leaks(svc, [S3_CANARY, PG_CANARY])).toEqual([]);
  });
});

describe('policy', () => {
  it('evaluates a finding against the baseline, caching the rules in Redis', async () => {
    const svc = await startService(dir('policy'), { env: { STELLA_DATABASE_URL: db.url, STELLA_REDIS_URL: redis.url } });
    try {
      await waitReadiness(svc, 200);
      const ev = async (finding: unknown) => (await svc.get('/api/v1/evaluate', { method: 'POST', body: JSON.stringify({ finding }) })).json();
      expect(await ev({ severity: 'critical' })).toMatchObject({ decision: 'fail', rule: 'block-critical', cache: 'miss', policyVersion: 'baseline-1' });
      expect(await ev({ severity: 'critical', vexStatus: 'not_affected' })).toMatchObject({ decision: 'pass', rule: 'vex-not-affected', cache: 'hit' });
      expect(await ev({ severity: 'low' })).toMatchObject({ decision: 'pass', rule: null });
    } finally {
      expect(await svc.stop()).toBe(0);
    }
  });
});

describe('conseiller and excitator (AOC: aggregate and link, never merge)', () => {
  const rowHash = async (table: string, id: string) =>
    (await sql.query(`SELECT encode(sha256(convert_to(row_to_json(d)::text, 'UTF8')), 'hex') AS h FROM ${table} d WHERE id = $1`, [id])).rows[0]?.h as string;

  it('conseiller: /capabilities says merge false; re-ingest and a conflicting version leave the original byte-identical; UPDATE/DELETE are rejected', async () => {
    const svc = await startService(dir('conseiller'), { env: workerEnv() });
    try {
      await waitReadiness(svc, 200);
      expect((await svc.get('/capabilities')).json()).toMatchObject({ merge: false });
      expect((await svc.get('/config')).json()).toMatchObject({ config: { STELLA_DISABLE_MERGE: true } });
      // The bundled seed advisories were ingested at start.
      const docs = (await svc.get('/api/v1/documents')).json() as { documents: { sourceUrl: string }[] };
      expect(docs.documents.map((d) => d.sourceUrl)).toContain('seed:advisories.json#CVE-2021-44906');

      const original = JSON.stringify({ id: 'GHSA-demo-0001', severity: 'high', summary: 'original text' });
      const sourceUrl = 'https://feeds.example.test/ghsa/GHSA-demo-0001.json';
      const fetchedAt = '2026-01-01T00:00:00.000Z';
      const a = await request('stella.conseiller.work', { sourceUrl, content: original, fetchedAt });
      expect(a).toMatchObject({ ok: true, result: { duplicate: false, contentSha256: createHash('sha256').update(original).digest('hex'), documentId: 'GHSA-demo-0001' } });
      const id = String(a.result!.id);
      const hashBefore = await rowHash('conseiller_source_documents', id);

      const again = await request('stella.conseiller.work', { sourceUrl, content: original, fetchedAt: '2026-02-02T00:00:00.000Z' });
      expect(again).toMatchObject({ ok: true, result: { id, duplicate: true } });
      const conflicting = JSON.stringify({ id: 'GHSA-demo-0001', severity: 'low', summary: 'rewritten upstream' });
      const c = await request('stella.conseiller.work', { sourceUrl, content: conflicting });
      expect(c.ok).toBe(true);
      expect(c.result!.id).not.toBe(id);
      expect(c.result!.linkedTo).toEqual([id]);

      expect(await rowHash('conseiller_source_documents', id)).toBe(hashBefore);
      const orig = await fetch(`${svc.url}/api/v1/documents/${id}/original`);
      expect(await orig.text()).toBe(original);
      expect(orig.headers.get('x-source-url')).toBe(sourceUrl);
      const detail = (await svc.get(`/api/v1/documents/${String(c.result!.id)}`)).json() as { links: unknown[] };
      expect(detail.links).toEqual([{ from: String(c.result!.id), to: id, relation: 'conflicts-with' }]);

      await expect(sql.query("UPDATE conseiller_source_documents SET content = convert_to('merged', 'UTF8') WHERE id = $1", [id])).rejects.toThrow(/UPDATE on conseiller_source_documents rejected: source records are immutable/);
      await expect(sql.query('DELETE FROM conseiller_source_documents WHERE id = $1', [id])).rejects.toThrow(/DELETE on conseiller_source_documents rejected/);
      await expect(sql.query('TRUNCATE conseiller_source_documents CASCADE')).rejects.toThrow(/TRUNCATE on conseiller_source_documents rejected/);
      await expect(sql.query('UPDATE conseiller_document_links SET relation = $1', ['same-content-as'])).rejects.toThrow(/immutable/);
      expect(await rowHash('conseiller_source_documents', id)).toBe(hashBefore);
    } finally {
      expect(await svc.stop()).toBe(0);
    }
    const merge = await runToExit(dir('conseiller'), { env: { ...workerEnv(), STELLA_DISABLE_MERGE: 'false' } });
    expect(merge.code).toBe(2);
    expect(merge.stdout).toContain('STELLA_DISABLE_MERGE');
  });

  it('excitator: /capabilities says merge false; VEX records are immutable and conflicting statements are linked', async () => {
    const svc = await startService(dir('excitator'), { env: workerEnv() });
    try {
      await waitReadiness(svc, 200);
      expect((await svc.get('/capabilities')).json()).toMatchObject({ merge: false });
      const stmt = { vulnerability: 'CVE-2021-44906', product: 'pkg:npm/minimist@1.2.5', status: 'affected' };
      const a = await request('stella.excitator.work', { sourceUrl: 'https://vendor.example.test/vex/1.json', content: stmt });
      const id = String(a.result!.id);
      const before = await rowHash('excitator_source_documents', id);
      const b = await request('stella.excitator.work', { sourceUrl: 'https://other.example.test/vex/9.json', content: { ...stmt, status: 'not_affected' } });
      expect(b.result).toMatchObject({ duplicate: false, linkedTo: [id] });
      expect(await rowHash('excitator_source_documents', id)).toBe(before);
      await expect(sql.query('UPDATE excitator_source_documents SET media_type = $1 WHERE id = $2', ['text/plain', id])).rejects.toThrow(/immutable/);
    } finally {
      expect(await svc.stop()).toBe(0);
    }
    const merge = await runToExit(dir('excitator'), { env: { ...workerEnv(), STELLA_DISABLE_MERGE: 'false' } });
    expect(merge.code).toBe(2);
  });
});
