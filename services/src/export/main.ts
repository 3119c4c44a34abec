/**
 * stella-export (Export Center worker): renders an export of a tenant's data requested on
 * `stella.export.work` and writes it as one object to the object store
 * (`exports/<tenant>/<id>.json`), recording it in `export_jobs`.
 */
import { runService } from '../runtime/service.ts';
import { migrate } from '../shared/migrate.ts';
import { putObject } from '../shared/objectstore.ts';
import { requireKeys } from '../shared/require.ts';

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
      if (!id) throw new Error('export request needs an id of letters, digits and dashes');
      const tenant = typeof d.tenant === 'string' && /^[A-Za-z0-9-]{1,64}$/.test(d.tenant) ? d.tenant : 'default';
      const format = typeof d.format === 'string' ? d.format : 'json';
      if (!formats.includes(format)) throw new Error(`export format ${format} is not enabled (STELLA_EXPORT_FORMATS=${formats.join(',')})`);
      if (!RENDERED.includes(format)) throw new Error(`export format ${format} is not rendered by this build (rendered: ${RENDERED.join(', ')})`);
      const now = Date.now();
      const times = (recent.get(tenant) ?? []).filter((t) => now - t < 60_000);
      if (times.length >= perMinute) throw new Error(`export rate limit reached for tenant ${tenant}: ${perMinute} per minute (STELLA_EXPORT_RATE_LIMIT)`);
      recent.set(tenant, [...times, now]);
      const os = ctx.deps.objectStore;
      if (!os) throw new Error('no object store configured (STELLA_OBJECT_STORE_ENDPOINT)');
      const doc = { kind: 'stella-export', id, tenant, target: d.target ?? null, requested: d, producedBy: { service: 'export', version: ctx.build.version } };
      const body = Buffer.from(`${JSON.stringify(doc, null, 2)}\n`);
      const key = `exports/${tenant}/${id}.json`;
      const put = await putObject(os, key, body, 'application/json');
      await pool.query('INSERT INTO export_jobs (id, tenant_id, format, object_url, sha256, size_bytes) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING', [id, tenant, format, put.url, put.sha256, body.length]);
      ctx.log.info('export written', { id, tenant, key, sha256: put.sha256, bytes: body.length });
      return { id, key, sha256: put.sha256, bytes: body.length };
    });
    return { start: async () => void (await migrate(pool, 'export', MIGRATIONS, ctx.log)) };
  },
});
