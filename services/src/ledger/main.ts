/**
 * stella-ledger (Findings Ledger worker): appends each findings event from
 * `stella.ledger.work` as a row of the append-only `ledger_events` table, in
 * batches of STELLA_LEDGER_BATCH_SIZE; the buffer is flushed on shutdown. Each row
 * carries the work item's id (`work_id`, unique): a redelivered item appends nothing.
 */
import { createHash } from 'node:crypto';
import { runService } from '../runtime/service.ts';
import { migrate } from '../shared/migrate.ts';
import { requireKeys } from '../shared/require.ts';

const MIGRATIONS = [
  {
    version: 1,
    name: 'append-only ledger events',
    sql: `
CREATE TABLE ledger_events (
  id bigserial PRIMARY KEY,
  tenant_id text NOT NULL,
  kind text NOT NULL,
  payload jsonb NOT NULL,
  payload_sha256 text NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now());
CREATE FUNCTION ledger_reject_mutation() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION '% on ledger_events rejected: the findings ledger is append-only', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$fn$;
CREATE TRIGGER ledger_events_append_only BEFORE UPDATE OR DELETE ON ledger_events FOR EACH ROW EXECUTE FUNCTION ledger_reject_mutation();`,
  },
  { version: 2, name: 'work item ids (exactly-once appends)', sql: 'ALTER TABLE ledger_events ADD COLUMN work_id text UNIQUE;' },
];

interface Pending {
  tenant: string;
  kind: string;
  payload: string;
  workId: string;
  done: (id: string) => void;
  fail: (e: unknown) => void;
}

await runService({
  name: 'ledger',
  validate: (config) => requireKeys(config, 'ledger', ['STELLA_DATABASE_URL']),
  setup(ctx) {
    const pool = ctx.deps.postgres!;
    const batchSize = ctx.config.int('STELLA_LEDGER_BATCH_SIZE');
    let buffer: Pending[] = [];
    let timer: NodeJS.Timeout | undefined;

    const flush = async (): Promise<void> => {
      if (timer) clearTimeout(timer);
      timer = undefined;
      const batch = buffer;
      buffer = [];
      if (!batch.length) return;
      const client = await pool.connect().catch((e) => {
        for (const p of batch) p.fail(e);
        return undefined;
      });
      if (!client) return;
      try {
        await client.query('BEGIN');
        for (const p of batch) {
          const sha = createHash('sha256').update(p.payload).digest('hex');
          const r = await client.query<{ id: string }>('INSERT INTO ledger_events (tenant_id, kind, payload, payload_sha256, work_id) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (work_id) DO NOTHING RETURNING id', [p.tenant, p.kind, p.payload, sha, p.workId]);
          const id = r.rows[0]?.id ?? (await client.query<{ id: string }>('SELECT id FROM ledger_events WHERE work_id = $1', [p.workId])).rows[0]!.id;
          p.done(String(id));
        }
        await client.query('COMMIT');
        ctx.log.info('ledger batch appended', { events: batch.length });
      } catch (e) {
        await client.query('ROLLBACK').catch(() => undefined);
        for (const p of batch) p.fail(e);
      } finally {
        client.release();
      }
    };

    ctx.work('stella.ledger.work', (data, item) => {
      const d = (data ?? {}) as Record<string, unknown>;
      const tenant = typeof d.tenant === 'string' ? d.tenant : 'default';
      const kind = typeof d.kind === 'string' ? d.kind : 'event';
      return new Promise((resolve, reject) => {
        buffer.push({ tenant, kind, payload: JSON.stringify(d), workId: item.id, done: (id) => resolve({ eventId: id }), fail: reject });
        if (buffer.length >= batchSize) void flush();
        else timer ??= setTimeout(() => void flush(), 100);
      });
    });

    return {
      start: async () => void (await migrate(pool, 'ledger', MIGRATIONS, ctx.log)),
      stop: flush,
    };
  },
});
