/**
 * stella-orchestrator: schedules task-pack runs. A run request on `stella.orchestrator.work`
 * ({ runId, tenant, packId, steps? }) is recorded in `orchestrator_jobs` and each pack step
 * is handed to the task runner on `stella.task-runner.work`.
 */
import { randomUUID } from 'node:crypto';
import { runService } from '../runtime/service.ts';
import { BadWork } from '../runtime/queue.ts';
import { migrate } from '../shared/migrate.ts';
import { requireKeys } from '../shared/require.ts';

const MIGRATIONS = [
  {
    version: 1,
    name: 'orchestrator jobs',
    sql: `
CREATE TABLE orchestrator_jobs (
  run_id text PRIMARY KEY,
  tenant_id text NOT NULL,
  pack_id text NOT NULL,
  steps integer NOT NULL,
  scheduled_at timestamptz NOT NULL DEFAULT now());`,
  },
];

await runService({
  name: 'orchestrator',
  validate: (config) => requireKeys(config, 'orchestrator', ['STELLA_DATABASE_URL']),
  setup(ctx) {
    const pool = ctx.deps.postgres!;
    ctx.work(
      'stella.orchestrator.work',
      async (data) => {
        const d = (data ?? {}) as Record<string, unknown>;
        const runId = typeof d.runId === 'string' ? d.runId : randomUUID();
        const tenant = typeof d.tenant === 'string' ? d.tenant : 'default';
        const packId = typeof d.packId === 'string' ? d.packId : undefined;
        if (!packId) throw new BadWork('run request has no packId');
        let steps = Array.isArray(d.steps) ? (d.steps as unknown[]) : undefined;
        if (!steps) {
          // The pack store is the API's task_packs table (the built-in pack store).
          const r = await pool.query<{ document: { steps?: unknown[] } }>('SELECT document FROM task_packs WHERE id = $1', [packId]).catch(() => ({ rows: [] as { document: { steps?: unknown[] } }[] }));
          steps = r.rows[0]?.document.steps;
        }
        if (!steps?.length) throw new BadWork(`task pack ${packId} has no steps (or is not in the pack store)`);
        const ins = await pool.query('INSERT INTO orchestrator_jobs (run_id, tenant_id, pack_id, steps) VALUES ($1, $2, $3, $4) ON CONFLICT (run_id) DO NOTHING RETURNING run_id', [runId, tenant, packId, steps.length]);
        // Step ids derived from the run: a redelivered request (a crash between the insert and the
        // publishes) publishes the same messages again, which the stream drops as duplicates.
        for (const [i, step] of steps.entries()) await ctx.publish('stella.task-runner.work', { runId, tenant, packId, step }, { msgId: `${runId}:step:${i}` });
        if (!ins.rows.length) return { runId, scheduled: 0, duplicate: true };
        ctx.log.info('task pack run scheduled', { runId, packId, steps: steps.length });
        return { runId, scheduled: steps.length, duplicate: false };
      },
      { concurrency: ctx.config.int('STELLA_ORCHESTRATOR_CONCURRENCY') },
    );
    return { start: async () => void (await migrate(pool, 'orchestrator', MIGRATIONS, ctx.log)) };
  },
});
