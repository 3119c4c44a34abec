/**
 * stella-task-runner: runs task-pack steps from `stella.task-runner.work`. Step kinds:
 * `echo` (returns its text), `fetch` (an outbound HTTP GET: egress) and `export` (hands
 * an export request to the Export Center). With STELLA_EGRESS_POLICY=deny or
 * STELLA_OFFLINE=true an egress step fails at once with an explicit error, never a hang.
 * STELLA_TASK_SANDBOX=process runs each step in a child process with a scrubbed environment.
 */
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { runService, type ServiceContext } from '../runtime/service.ts';
import { BadWork } from '../runtime/queue.ts';

interface Step {
  id?: string;
  kind: string;
  text?: string;
  url?: string;
  format?: string;
}

export class EgressDenied extends BadWork {
  constructor(step: Step, reason: string) {
    super(`egress denied: step ${step.id ?? '(unnamed)'} wants ${step.url ?? 'the network'}, but ${reason}`);
    this.name = 'EgressDenied';
  }
}

/** The part of a step that may run in the sandbox (no queue, no secrets). */
async function execute(step: Step): Promise<unknown> {
  switch (step.kind) {
    case 'echo':
      return { output: step.text ?? '' };
    case 'fetch': {
      const res = await fetch(step.url!, { signal: AbortSignal.timeout(30_000) });
      const body = await res.text();
      return { status: res.status, bytes: Buffer.byteLength(body) };
    }
    default:
      throw new Error(`unknown step kind ${JSON.stringify(step.kind)} (expected echo, fetch or export)`);
  }
}

/** Runs `execute` in a child process of this same main.js with an empty environment. */
function inSandbox(step: Step, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = fork(process.argv[1]!, ['run-step'], { env: { STELLA_CONFIG_DIR: '/nonexistent', STELLA_LOG_LEVEL: 'error' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`step ${step.id ?? '(unnamed)'} exceeded ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('message', (m: { ok: boolean; result?: unknown; error?: string }) => {
      clearTimeout(timer);
      if (m.ok) resolve(m.result);
      else reject(new Error(m.error));
    });
    child.send(step);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sandbox process exited with code ${code} before answering`));
    });
  });
}

function runStep(ctx: ServiceContext, step: Step, tenant: string, workId: string): Promise<unknown> {
  if (!['echo', 'fetch', 'export'].includes(step.kind)) return Promise.reject(new BadWork(`unknown step kind ${JSON.stringify(step.kind)} (expected echo, fetch or export)`));
  if (step.kind === 'fetch') {
    if (!step.url) return Promise.reject(new BadWork('fetch step has no url'));
    if (ctx.config.bool('STELLA_OFFLINE')) return Promise.reject(new EgressDenied(step, 'STELLA_OFFLINE=true (air-gapped mode)'));
    if (ctx.config.str('STELLA_EGRESS_POLICY') === 'deny') return Promise.reject(new EgressDenied(step, 'STELLA_EGRESS_POLICY=deny'));
  }
  if (step.kind === 'export') {
    // Derived from the work item: a redelivered step queues the same export (deduplicated), not a second one.
    const id = createHash('sha256').update(workId).digest('hex').slice(0, 32);
    return ctx.publish('stella.export.work', { id, tenant, format: step.format ?? 'json', target: 'production' }, { msgId: `export:${id}` }).then(() => ({ exportQueued: true, exportId: id }));
  }
  return ctx.config.str('STELLA_TASK_SANDBOX') === 'process' ? inSandbox(step, 60_000) : execute(step);
}

await runService({
  name: 'task-runner',
  commands: {
    /** Internal: the sandbox side of STELLA_TASK_SANDBOX=process. */
    async 'run-step'() {
      if (!process.send) throw new Error('run-step is internal: it runs only as the sandbox child of the task runner');
      const step = await new Promise<Step>((resolve, reject) => {
        process.once('message', (m) => resolve(m as Step));
        process.once('disconnect', () => reject(new Error('the task runner went away')));
      });
      const send = process.send.bind(process);
      let answer: { ok: boolean; result?: unknown; error?: string };
      try {
        answer = { ok: true, result: await execute(step) };
      } catch (e) {
        answer = { ok: false, error: (e as Error).message };
      }
      // Wait until the answer is handed over before the runtime exits.
      await new Promise<void>((resolve) => send(answer, undefined, {}, () => resolve()));
      return 0;
    },
  },
  setup(ctx) {
    ctx.work(
      'stella.task-runner.work',
      async (data, item) => {
        const d = (data ?? {}) as { runId?: string; tenant?: string; step?: Step };
        const step = d.step;
        if (!step || typeof step.kind !== 'string') throw new BadWork('work item has no step {kind, ...}');
        try {
          const result = await runStep(ctx, step, typeof d.tenant === 'string' ? d.tenant : 'default', item.id);
          ctx.log.info('task step done', { runId: d.runId, step: step.id, kind: step.kind });
          await ctx.publish('stella.task-runner.results', { runId: d.runId, step: step.id, ok: true, result }).catch(() => undefined);
          return result;
        } catch (e) {
          ctx.log.warn('task step failed', { runId: d.runId, step: step.id, kind: step.kind, error: e });
          await ctx.publish('stella.task-runner.results', { runId: d.runId, step: step.id, ok: false, error: (e as Error).message }).catch(() => undefined);
          throw e;
        }
      },
      { concurrency: ctx.config.int('STELLA_TASK_RUNNER_CONCURRENCY') },
    );
    return {};
  },
});
