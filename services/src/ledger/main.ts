/**
 * stella-ledger (Findings Ledger worker): appends each findings event from
 * `stella.ledger.work` as a row of the append-only `ledger_events` table, in
 * batches of STELLA_LEDGER_BATCH_SIZE; the buffer is flushed on shutdown.
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
];

interface Pending {
  tenant: string;
  kind: string;
  payload: string;
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
          const r = await client.query<{ id: string }>('INSERT INTO ledger_events (tenant_id, kind, payload, payload_sha256) VALUES ($1, $2, $3, $4) RETURNING id', [p.tenant, p.kind, p.payload, sha]);
          p.done(String(r.rows[0]!.id));
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

    ctx.work('stella.ledger.work', (data) => {
      const d = (data ?? {}) as Record<string, unknown>;
      const tenant = typeof d.tenant === 'string' ? d.tenant : 'default';
      const kind = typeof d.kind === 'string' ? d.kind : 'event';
      return new Promise((resolve, reject) => {
        buffer.push({ tenant, kind, payload: JSON.stringify(d), done: (id) => resolve({ eventId: id }), fail: reject });
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
