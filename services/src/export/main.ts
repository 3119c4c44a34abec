/**
 * stella-export (Export Center worker): renders an export of a tenant's data requested on
 * `stella.export.work` and writes it as one object to the object store
 * (`exports/<tenant>/<id>.json`, SigV4-signed through the S3 client), recording it in
 * `export_jobs` (`object_key`, SHA-256, size). The export id makes a redelivery harmless:
 * the same key is written again and the row stays. A request of kind `task-pack` is rendered
 * as a Task Pack (taskPack below).
 */
import { runService } from '../runtime/service.ts';
import { BadWork } from '../runtime/queue.ts';
import { migrate } from '../shared/migrate.ts';
import { requireKeys } from '../shared/require.ts';
import { taskPack } from './pack.ts';

const MIGRATIONS = [
  {
    version: 1,
    name: 'export jobs',
    sql: `
CREATE TABLE export_jobs (
  id text PRIMARY KEY,
  tenant_id text NOT NULL,
  format text NOT NULL,
  object_url text NOT NULL,
  sha256 text NOT NULL,
  size_bytes integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now());`,
  },
  { version: 2, name: 'export object keys', sql: 'ALTER TABLE export_jobs ADD COLUMN object_key text;' },
];

/** Formats this build renders. */
const RENDERED = ['json'];

await runService({
  name: 'export',
  validate: (config) => requireKeys(config, 'export', ['STELLA_DATABASE_URL']),
  setup(ctx) {
    const pool = ctx.deps.postgres!;
    const formats = ctx.config.list('STELLA_EXPORT_FORMATS');
    const perMinute = ctx.config.int('STELLA_EXPORT_RATE_LIMIT');
    const recent = new Map<string, number[]>();

    ctx.work('stella.export.work', async (data) => {
      const d = (data ?? {}) as Record<string, unknown>;
      const id = typeof d.id === 'string' && /^[A-Za-z0-9-]{1,64}$/.test(d.id) ? d.id : undefined;
      if (!id) throw new BadWork('export request needs an id of letters, digits and dashes');
      const tenant = typeof d.tenant === 'string' && /^[A-Za-z0-9-]{1,64}$/.test(d.tenant) ? d.tenant : 'default';
      const format = typeof d.format === 'string' ? d.format : 'json';
      if (!formats.includes(format)) throw new BadWork(`export format ${format} is not enabled (STELLA_EXPORT_FORMATS=${formats.join(',')})`);
      if (!RENDERED.includes(format)) throw new BadWork(`export format ${format} is not rendered by this build (rendered: ${RENDERED.join(', ')})`);
      // Already written (a redelivery after a crash before the acknowledgement): the same answer, nothing rewritten.
      const done = await pool.query<{ object_key: string | null; sha256: string; size_bytes: number }>('SELECT object_key, sha256, size_bytes FROM export_jobs WHERE id = $1', [id]);
      if (done.rows[0]) return { id, key: done.rows[0].object_key ?? `exports/${tenant}/${id}.json`, sha256: done.rows[0].sha256, bytes: done.rows[0].size_bytes, duplicate: true };
      const now = Date.now();
      const times = (recent.get(tenant) ?? []).filter((t) => now - t < 60_000);
      if (times.length >= perMinute) throw new Error(`export rate limit reached for tenant ${tenant}: ${perMinute} per minute (STELLA_EXPORT_RATE_LIMIT)`);
      recent.set(tenant, [...times, now]);
      const os = ctx.deps.objectStore;
      if (!os) throw new Error('no object store configured (STELLA_OBJECT_STORE_ENDPOINT)');
      // The tenant's data, read from the shared database (the API's tables), as of now.
      const q = async (sql: string, params: unknown[] = []) => (await pool.query(sql, params).catch((e: { code?: string }) => (e.code === '42P01' ? { rows: [] } : Promise.reject(e)))).rows;
      const contents = {
        sboms: await q('SELECT id, name, format, document FROM sboms WHERE tenant_id = $1 ORDER BY id', [tenant]),
        findings: await q('SELECT sbom_id, advisory_id, component, severity, vex_status FROM findings WHERE tenant_id = $1 ORDER BY id', [tenant]),
        advisories: await q('SELECT id, severity, summary FROM advisories ORDER BY id'),
        vex: await q('SELECT id, vulnerability, product, status FROM vex_statements ORDER BY id'),
        policies: await q('SELECT version, name, document FROM policies ORDER BY version'),
        taskPacks: await q('SELECT id, name, version, document FROM task_packs ORDER BY id'),
      };
      const producedBy = { service: 'export', version: ctx.build.version };
      const doc = d.kind === 'task-pack' ? taskPack(id, tenant, typeof d.target === 'string' ? d.target : 'production', producedBy, contents) : { kind: 'stella-export', id, tenant, target: d.target ?? null, requested: d, producedBy, data: contents };
      const body = Buffer.from(`${JSON.stringify(doc, null, 2)}\n`);
      const key = `exports/${tenant}/${id}.json`;
      const put = await os.put(key, body, 'application/json');
      await pool.query('INSERT INTO export_jobs (id, tenant_id, format, object_url, object_key, sha256, size_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING', [id, tenant, format, put.url, key, put.sha256, body.length]);
      ctx.log.info('export written', { id, tenant, key, sha256: put.sha256, bytes: body.length });
      return { id, key, sha256: put.sha256, bytes: body.length };
    });
    return { start: async () => void (await migrate(pool, 'export', MIGRATIONS, ctx.log)) };
  },
});
