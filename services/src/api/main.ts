/**
 * stella-api (Web Services API): migrations at start (or `node main.js migrate` for the
 * chart's Job), the quickstart seed, the console's welcome state, token issue, a few
 * read endpoints, and work queued on the JetStream work stream for the workers.
 *
 * Authentication: `POST /api/v1/tokens` with a local account's username and password
 * issues an opaque bearer token (`stella_<43 base64url chars>`, 256 random bits); only
 * its SHA-256 is stored (api_tokens), with an expiry of STELLA_TOKEN_TTL. Every endpoint
 * but /welcome (read), /api/v1/tokens and the health surface requires
 * `Authorization: Bearer <token>`: missing, unknown or expired → 401. Other services
 * (the AI assistant) verify a caller's token with `GET /api/v1/auth/whoami` here.
 *
 * STELLA_QUICKSTART_MODE guards the seed and the demo endpoints (the welcome wizard and
 * the sample scan import); outside it they answer 404 and nothing is seeded.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type pg from 'pg';
import { runService, type ServiceContext } from '../runtime/service.ts';
import { HttpError, readJson, sendJson, sendText, type RequestContext, type Route } from '../runtime/http.ts';
import { migrate } from '../shared/migrate.ts';
import { requireKeys } from '../shared/require.ts';
import { API_MIGRATIONS, TENANT, seed, verifyPassword } from './schema.ts';

const WELCOME_STEPS = [
  { id: 'confirm-endpoints', title: 'Confirm endpoints' },
  { id: 'generate-token', title: 'Generate an API token' },
  { id: 'import-sample-scan', title: 'Run the sample scan import' },
  { id: 'open-vuln-explorer', title: 'Open the Vulnerability Explorer' },
] as const;

/** Migrations, then the seed under STELLA_QUICKSTART_MODE. */
async function prepare(ctx: ServiceContext): Promise<void> {
  const pool = ctx.deps.postgres!;
  await migrate(pool, 'api', API_MIGRATIONS, ctx.log);
  if (ctx.config.bool('STELLA_QUICKSTART_MODE')) {
    await seed(pool, join(ctx.appDir, 'seed'), ctx.config.str('STELLA_ADMIN_PASSWORD'), ctx.log);
  }
}

async function markStep(pool: pg.Pool, step: string): Promise<void> {
  await pool.query('INSERT INTO welcome_steps (tenant_id, step) SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1) ON CONFLICT DO NOTHING', [TENANT, step]);
}

await runService({
  name: 'api',
  validate(config) {
    const problems = requireKeys(config, 'api', ['STELLA_DATABASE_URL']);
    if (config.bool('STELLA_QUICKSTART_MODE') && !config.has('STELLA_ADMIN_PASSWORD')) {
      problems.push('STELLA_ADMIN_PASSWORD is required when STELLA_QUICKSTART_MODE=true (the seeded admin account needs it; quickstart.sh writes one to .secrets/)');
    }
    return problems;
  },
  commands: {
    /** One-shot migrations (+ seed in quickstart mode) for the chart's migration Job; retries the connection for ~60 s. */
    async migrate(ctx) {
      for (let attempt = 1; ; attempt++) {
        try {
          await prepare(ctx);
          ctx.log.info('migrate: done');
          return 0;
        } catch (e) {
          if (attempt >= 30) throw e;
          ctx.log.warn('migrate: attempt failed; retrying', { attempt, error: e });
          await new Promise((r) => setTimeout(r, 2000));
        }
      }
    },
  },
  setup(ctx) {
    const { config, log } = ctx;
    const pool = ctx.deps.postgres!;
    const redis = ctx.deps.redis;
    const quickstart = config.bool('STELLA_QUICKSTART_MODE');
    const tokenTtlMs = config.ms('STELLA_TOKEN_TTL');
    const rbacTtlS = Math.max(1, Math.round(config.ms('STELLA_RBAC_CACHE_TTL') / 1000));

    type Who = { userId: string; username: string; tenant: string; role: string; expiresAt: string };
    /** Resolves the bearer token to its user; role bindings are cached in Redis when configured. */
    const authenticate = async ({ req }: RequestContext): Promise<Who> => {
      const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
      if (!m) throw new HttpError(401, 'missing bearer token (POST /api/v1/tokens with the admin credentials issues one)');
      const sha = createHash('sha256').update(m[1]!).digest('hex');
      const cacheKey = `stella:api:token:${sha}`;
      if (redis) {
        const hit = await redis.get(cacheKey).catch(() => null);
        if (hit) {
          const who = JSON.parse(hit) as Who;
          if (Date.parse(who.expiresAt) > Date.now()) return who;
        }
      }
      const r = await pool.query<{ user_id: string; username: string; tenant_id: string; role: string; expires_at: Date }>(
        'SELECT u.id AS user_id, u.username, u.tenant_id, u.role, t.expires_at FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_sha256 = $1 AND t.expires_at > now()',
        [sha],
      );
      const row = r.rows[0];
      if (!row) throw new HttpError(401, 'unknown or expired token');
      const who: Who = { userId: String(row.user_id), username: row.username, tenant: row.tenant_id, role: row.role, expiresAt: row.expires_at.toISOString() };
      const ttl = Math.min(rbacTtlS, Math.max(1, Math.floor((row.expires_at.getTime() - Date.now()) / 1000)));
      if (redis) await redis.set(cacheKey, JSON.stringify(who), 'EX', ttl).catch(() => undefined);
      return who;
    };

    const list = (path: string, sql: string, key: string): Route => ({
      method: 'GET',
      path,
      handler: async (c) => {
        const who = await authenticate(c);
        const r = await pool.query(sql, sql.includes('$1') ? [who.tenant] : []);
        sendJson(c.res, 200, { [key]: r.rows });
      },
    });

    const routes: Route[] = [
      {
        method: 'GET',
        path: '/welcome',
        handler: async ({ res }) => {
          if (!quickstart) throw new HttpError(404, 'the welcome wizard exists only in quickstart mode (STELLA_QUICKSTART_MODE=true)', { quickstart: false });
          const done = await pool.query<{ step: string; done_at: Date }>('SELECT step, done_at FROM welcome_steps WHERE tenant_id = $1', [TENANT]);
          const doneAt = new Map(done.rows.map((r) => [r.step, r.done_at.toISOString()]));
          const tenant = await pool.query<{ id: string; name: string }>('SELECT id, name FROM tenants WHERE id = $1', [TENANT]);
          sendJson(res, 200, {
            quickstart: true,
            tenant: tenant.rows[0] ?? null,
            admin: 'admin',
            endpoints: { api: '/api/v1', health: '/health/readiness', version: '/version' },
            // The API's own dependencies, from its configuration (credentials stripped, never a secret).
            dependencies: config.discoverable(),
            steps: WELCOME_STEPS.map((s) => ({ ...s, done: doneAt.has(s.id), doneAt: doneAt.get(s.id) ?? null })),
            complete: WELCOME_STEPS.every((s) => doneAt.has(s.id)),
          });
        },
      },
      {
        method: 'POST',
        path: /^\/welcome\/steps\/(?<step>[a-z-]+)$/,
        name: '/welcome/steps/:step',
        handler: async (c) => {
          const { res, params } = c;
          if (!quickstart) throw new HttpError(404, 'the welcome wizard exists only in quickstart mode (STELLA_QUICKSTART_MODE=true)');
          await authenticate(c);
          if (!WELCOME_STEPS.some((s) => s.id === params.step)) throw new HttpError(400, `unknown step "${params.step}"; expected one of ${WELCOME_STEPS.map((s) => s.id).join(', ')}`);
          await markStep(pool, params.step!);
          sendJson(res, 200, { step: params.step, done: true });
        },
      },
      {
        method: 'POST',
        path: '/api/v1/tokens',
        handler: async ({ req, res }) => {
          const body = await readJson<{ username?: unknown; password?: unknown; purpose?: unknown }>(req, 16 * 1024);
          if (!body || typeof body.username !== 'string' || typeof body.password !== 'string') throw new HttpError(400, 'expected {"username": "...", "password": "..."}');
          const r = await pool.query<{ id: string; password_hash: string }>('SELECT id, password_hash FROM users WHERE username = $1', [body.username]);
          const user = r.rows[0];
          if (!user || !(await verifyPassword(body.password, user.password_hash))) throw new HttpError(401, 'invalid username or password');
          const token = `stella_${randomBytes(32).toString('base64url')}`;
          const expiresAt = new Date(Date.now() + tokenTtlMs);
          await pool.query('INSERT INTO api_tokens (user_id, token_sha256, expires_at) VALUES ($1, $2, $3)', [user.id, createHash('sha256').update(token).digest('hex'), expiresAt]);
          // The console's sign-in ({"purpose": "console-session"}) is not the wizard's "generate an API token" step.
          if (quickstart && body.purpose !== 'console-session') await markStep(pool, 'generate-token');
          log.info('API token issued', { username: body.username, expiresAt: expiresAt.toISOString() });
          sendJson(res, 201, { token, expiresAt: expiresAt.toISOString() });
        },
      },
      {
        method: 'GET',
        path: '/api/v1/auth/whoami',
        // Token introspection: other services (the AI assistant) verify their callers here.
        handler: async (c) => sendJson(c.res, 200, await authenticate(c)),
      },
      list('/api/v1/tenants', 'SELECT id, name, created_at FROM tenants WHERE id = $1', 'tenants'),
      list('/api/v1/sboms', 'SELECT id, name, format, created_at FROM sboms WHERE tenant_id = $1 ORDER BY id', 'sboms'),
      list('/api/v1/advisories', 'SELECT id, severity, summary FROM advisories ORDER BY id', 'advisories'),
      list('/api/v1/vex', 'SELECT id, vulnerability, product, status FROM vex_statements ORDER BY id', 'vex'),
      list('/api/v1/policies', 'SELECT version, name, document FROM policies ORDER BY version', 'policies'),
      list('/api/v1/task-packs', 'SELECT id, name, version, document FROM task_packs ORDER BY id', 'taskPacks'),
      {
        method: 'GET',
        path: '/api/v1/findings',
        handler: async (c) => {
          const who = await authenticate(c);
          const r = await pool.query('SELECT id, sbom_id, advisory_id, component, severity, vex_status, created_at FROM findings WHERE tenant_id = $1 ORDER BY id', [who.tenant]);
          if (quickstart) await markStep(pool, 'open-vuln-explorer');
          sendJson(c.res, 200, { findings: r.rows });
        },
      },
      {
        method: 'POST',
        path: '/api/v1/scans/import',
        handler: async (c) => {
          const who = await authenticate(c);
          if (!quickstart) throw new HttpError(404, 'the sample scan import exists only in quickstart mode (STELLA_QUICKSTART_MODE=true)');
          const sboms = await pool.query<{ id: string; document: { components?: { purl?: string }[] } }>('SELECT id, document FROM sboms WHERE tenant_id = $1 ORDER BY id', [who.tenant]);
          const advisories = await pool.query<{ id: string; severity: string; document: { affected?: { purl: string; versions: string[] }[] } }>('SELECT id, severity, document FROM advisories');
          const vex = await pool.query<{ vulnerability: string; product: string; status: string }>('SELECT vulnerability, product, status FROM vex_statements');
          const found: { sbomId: string; advisoryId: string; component: string; severity: string; vexStatus: string | null }[] = [];
          for (const s of sboms.rows) {
            for (const comp of s.document.components ?? []) {
              if (!comp.purl) continue;
              const [base, version] = comp.purl.split('@');
              for (const a of advisories.rows) {
                if (!(a.document.affected ?? []).some((x) => x.purl === base && x.versions.includes(version ?? ''))) continue;
                const v = vex.rows.find((x) => x.vulnerability === a.id && x.product === comp.purl);
                found.push({ sbomId: s.id, advisoryId: a.id, component: comp.purl, severity: a.severity, vexStatus: v?.status ?? null });
              }
            }
          }
          for (const f of found) {
            await pool.query('INSERT INTO findings (tenant_id, sbom_id, advisory_id, component, severity, vex_status) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING', [who.tenant, f.sbomId, f.advisoryId, f.component, f.severity, f.vexStatus]);
          }
          const importId = randomUUID();
          await ctx.publish('stella.ledger.work', { tenant: who.tenant, kind: 'scan.imported', findings: found }, { msgId: `scan:${importId}:ledger` });
          await ctx.publish('stella.notify.work', { tenant: who.tenant, event: 'scan.imported', summary: `${found.length} findings in ${sboms.rows.length} SBOMs` }, { msgId: `scan:${importId}:notify` });
          await markStep(pool, 'import-sample-scan');
          sendJson(c.res, 200, { sboms: sboms.rows.length, findings: found.length });
        },
      },
      {
        method: 'POST',
        path: '/api/v1/exports',
        handler: async (c) => {
          const who = await authenticate(c);
          const body = (await readJson<{ target?: unknown; format?: unknown; kind?: unknown } | null>(c.req, 16 * 1024)) ?? {};
          const id = randomUUID();
          // kind "task-pack": the Export Center renders the data as a Task Pack (the console's "Export pack to production").
          const job = { id, tenant: who.tenant, target: typeof body.target === 'string' ? body.target : 'production', format: typeof body.format === 'string' ? body.format : 'json', kind: body.kind === 'task-pack' ? 'task-pack' : 'quickstart-pack' };
          const queued = await ctx.publish('stella.export.work', job, { msgId: `export:${id}` });
          log.info('export requested', { id, target: job.target });
          sendJson(c.res, 202, { exportId: id, status: 'queued', subject: 'stella.export.work', seq: queued.seq, statusUrl: `/api/v1/exports/${id}` });
        },
      },
      {
        method: 'GET',
        path: /^\/api\/v1\/exports\/(?<id>[A-Za-z0-9-]{1,64})$/,
        name: '/api/v1/exports/:id',
        handler: async (c) => {
          const who = await authenticate(c);
          // export_jobs is the Export Center's table (same database); absent until it has run once.
          const r = await pool
            .query('SELECT id, format, object_url, object_key, sha256, size_bytes, created_at FROM export_jobs WHERE id = $1 AND tenant_id = $2', [c.params.id, who.tenant])
            .catch((e: { code?: string }) => (e.code === '42P01' ? { rows: [] } : Promise.reject(e)));
          const row = r.rows[0] as Record<string, unknown> | undefined;
          if (!row) return sendJson(c.res, 202, { exportId: c.params.id, status: 'queued' });
          sendJson(c.res, 200, { exportId: row.id, status: 'written', format: row.format, object: row.object_url, key: row.object_key, sha256: row.sha256, bytes: row.size_bytes, createdAt: (row.created_at as Date).toISOString() });
        },
      },
      {
        method: 'GET',
        path: /^\/api\/v1\/exports\/(?<id>[A-Za-z0-9-]{1,64})\/download$/,
        name: '/api/v1/exports/:id/download',
        // The written export, from the object store, as a file download.
        handler: async (c) => {
          const who = await authenticate(c);
          const r = await pool
            .query<{ object_key: string | null }>('SELECT object_key FROM export_jobs WHERE id = $1 AND tenant_id = $2', [c.params.id, who.tenant])
            .catch((e: { code?: string }) => (e.code === '42P01' ? { rows: [] } : Promise.reject(e)));
          const key = r.rows[0]?.object_key;
          if (!key) throw new HttpError(404, `export ${c.params.id} is not written (yet): GET /api/v1/exports/${c.params.id} says when it is`);
          if (!ctx.deps.objectStore) throw new HttpError(503, 'no object store configured (STELLA_OBJECT_STORE_ENDPOINT)');
          const body = await ctx.deps.objectStore.get(key);
          c.res.setHeader('content-disposition', `attachment; filename="${key.split('/').pop()}"`);
          sendText(c.res, 200, body, 'application/json');
        },
      },
      {
        method: 'POST',
        path: '/api/v1/findings',
        handler: async (c) => {
          const who = await authenticate(c);
          const b = (await readJson<Record<string, unknown> | null>(c.req, 16 * 1024)) ?? {};
          const str = (k: string) => (typeof b[k] === 'string' && (b[k] as string).length > 0 && (b[k] as string).length <= 512 ? (b[k] as string) : undefined);
          const sbomId = str('sbomId');
          const advisoryId = str('advisoryId');
          const component = str('component');
          if (!sbomId || !advisoryId || !component) throw new HttpError(400, 'expected {"sbomId": "...", "advisoryId": "...", "component": "pkg:...", "severity"?: "...", "vexStatus"?: "..."}');
          const adv = await pool.query<{ severity: string }>('SELECT severity FROM advisories WHERE id = $1', [advisoryId]);
          if (!adv.rows[0]) throw new HttpError(400, `advisory ${advisoryId} is unknown`);
          const sbom = await pool.query('SELECT 1 FROM sboms WHERE id = $1 AND tenant_id = $2', [sbomId, who.tenant]);
          if (!sbom.rows[0]) throw new HttpError(400, `SBOM ${sbomId} is unknown in tenant ${who.tenant}`);
          const severity = str('severity') ?? adv.rows[0].severity;
          const vexStatus = str('vexStatus') ?? null;
          const ins = await pool.query<{ id: string }>(
            `INSERT INTO findings (tenant_id, sbom_id, advisory_id, component, severity, vex_status) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, sbom_id, advisory_id, component) DO UPDATE SET severity = findings.severity RETURNING id, (xmax = 0) AS created`,
            [who.tenant, sbomId, advisoryId, component, severity, vexStatus],
          );
          const id = String(ins.rows[0]!.id);
          const created = (ins.rows[0] as unknown as { created: boolean }).created;
          const finding = { id, sbomId, advisoryId, component, severity, vexStatus };
          // The Findings Ledger records the event (append-only), once per finding.
          const queued = await ctx.publish('stella.ledger.work', { tenant: who.tenant, kind: 'finding.recorded', finding }, { msgId: `finding:${who.tenant}:${id}` });
          sendJson(c.res, created ? 201 : 200, { finding, created, ledger: { queued: true, seq: queued.seq } });
        },
      },
      {
        method: 'POST',
        path: /^\/api\/v1\/task-packs\/(?<id>[A-Za-z0-9._-]+)\/run$/,
        name: '/api/v1/task-packs/:id/run',
        handler: async (c) => {
          const who = await authenticate(c);
          const pack = await pool.query('SELECT id FROM task_packs WHERE id = $1', [c.params.id]);
          if (!pack.rows.length) throw new HttpError(404, `task pack ${c.params.id} not found`);
          const runId = randomUUID();
          const queued = await ctx.publish('stella.orchestrator.work', { runId, tenant: who.tenant, packId: c.params.id }, { msgId: `run:${runId}` });
          sendJson(c.res, 202, { runId, status: 'queued', seq: queued.seq });
        },
      },
    ];

    return {
      routes,
      start: config.bool('STELLA_MIGRATIONS_AUTO')
        ? () => prepare(ctx)
        : async () => {
            // Migrations belong to the chart's Job: wait (not ready) until the schema is current.
            const want = Math.max(...API_MIGRATIONS.map((m) => m.version));
            const r = await pool
              .query<{ v: number | null }>("SELECT max(version) AS v FROM stella_schema_migrations WHERE component = 'api'")
              .catch((e: { code?: string }) => {
                if (e.code === '42P01') return { rows: [{ v: null }] };
                throw e;
              });
            const have = r.rows[0]?.v ?? 0;
            if (have < want) throw new Error(`database schema is at api#${have}, this build needs api#${want}; STELLA_MIGRATIONS_AUTO=false, so run \`node main.js migrate\` (the chart's migration Job does)`);
          },
    };
  },
});
