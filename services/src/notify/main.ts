/**
 * stella-notify (Notifications Studio worker): collects events from `stella.notify.work`
 * for STELLA_NOTIFY_BATCH_WINDOW and delivers them together to the configured sinks.
 * This build delivers to the `log` sink (a structured log line per batch); the batch
 * in hand is delivered on shutdown.
 */
import { runService } from '../runtime/service.ts';

const AVAILABLE_SINKS = ['log'];

await runService({
  name: 'notify',
  validate(config) {
    const bad = config.list('STELLA_NOTIFY_SINKS').filter((s) => !AVAILABLE_SINKS.includes(s));
    return bad.length ? [`STELLA_NOTIFY_SINKS=${JSON.stringify(config.list('STELLA_NOTIFY_SINKS').join(','))} names sink(s) ${bad.join(', ')} not available in this build (available: ${AVAILABLE_SINKS.join(', ')})`] : [];
  },
  setup(ctx) {
    const windowMs = ctx.config.ms('STELLA_NOTIFY_BATCH_WINDOW');
    const sinks = ctx.config.list('STELLA_NOTIFY_SINKS');
    let batch: unknown[] = [];
    let timer: NodeJS.Timeout | undefined;

    const deliver = async (): Promise<void> => {
      if (timer) clearTimeout(timer);
      timer = undefined;
      const events = batch;
      batch = [];
      if (!events.length) return;
      for (const sink of sinks) {
        if (sink === 'log') ctx.log.info('notification', { sink, events: events.length, notifications: events });
      }
    };

    ctx.work('stella.notify.work', async (data) => {
      batch.push(data);
      timer ??= setTimeout(() => void deliver(), windowMs);
      return { queued: true, batchWindowMs: windowMs };
    });
    return { stop: deliver };
  },
});
