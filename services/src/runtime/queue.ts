/**
 * Durable work queues on NATS JetStream. One stream, STELLA_WORK, holds every
 * `stella.<service>.work` subject with work-queue retention: a message stays (on disk)
 * until a worker acknowledges it, at most STELLA_QUEUE_RETENTION. Each worker kind reads
 * through its own durable pull consumer (`stella-<service>-work`, explicit acks), so work
 * queued while every worker is down is done once one comes back.
 *
 * Publishing sets `Nats-Msg-Id` (the stream drops a duplicate within its window), and
 * handlers get that id to make their effect idempotent: together, each item is done once.
 * A caller wanting the outcome sets the `Stella-Reply-To` header to an inbox; the worker
 * publishes { ok, result | error } there once it has acknowledged the item.
 */
import { AckPolicy, DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, nanos, type JetStreamManager, type StreamConfig } from 'nats';

export const WORK_STREAM = 'STELLA_WORK';
export const WORK_SUBJECTS = 'stella.*.work';
export const REPLY_HEADER = 'Stella-Reply-To';
/** Deliveries of one item before it is given up (terminated) after failures. */
export const MAX_DELIVER = 5;
/** A worker holding an item longer than this without acknowledging it loses it to another. */
export const ACK_WAIT_MS = 60_000;

export function isWorkSubject(subject: string): boolean {
  return /^stella\.[a-z-]+\.work$/.test(subject);
}

/** The durable consumer of a work subject: `stella.task-runner.work` → `stella-task-runner-work`. */
export function consumerName(subject: string): string {
  return subject.replace(/\./g, '-');
}

/** Creates the work stream, or brings its retention to `retentionMs` (idempotent; replicas race safely). */
export async function ensureWorkStream(jsm: JetStreamManager, retentionMs: number): Promise<StreamConfig> {
  const want: Partial<StreamConfig> = {
    name: WORK_STREAM,
    subjects: [WORK_SUBJECTS],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_age: nanos(retentionMs),
    duplicate_window: nanos(Math.min(retentionMs, 2 * 60_000)),
  };
  try {
    const info = await jsm.streams.info(WORK_STREAM);
    if (info.config.max_age !== want.max_age || info.config.duplicate_window !== want.duplicate_window) {
      return (await jsm.streams.update(WORK_STREAM, { ...info.config, max_age: want.max_age!, duplicate_window: want.duplicate_window! })).config;
    }
    return info.config;
  } catch (e) {
    if (!/stream not found/i.test((e as Error).message)) throw e;
    try {
      return (await jsm.streams.add(want)).config;
    } catch (e2) {
      // Another replica created it in between.
      if (/already in use|already exists/i.test((e2 as Error).message)) return (await jsm.streams.info(WORK_STREAM)).config;
      throw e2;
    }
  }
}

/** Creates (or keeps) the durable consumer of `subject`. */
export async function ensureConsumer(jsm: JetStreamManager, subject: string, maxAckPending: number): Promise<string> {
  const name = consumerName(subject);
  const cfg = {
    durable_name: name,
    filter_subject: subject,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(ACK_WAIT_MS),
    max_deliver: MAX_DELIVER,
    max_ack_pending: maxAckPending,
  };
  try {
    await jsm.consumers.info(WORK_STREAM, name);
    await jsm.consumers.update(WORK_STREAM, name, { ack_wait: cfg.ack_wait, max_deliver: cfg.max_deliver, max_ack_pending: cfg.max_ack_pending });
  } catch (e) {
    if (!/consumer not found/i.test((e as Error).message)) throw e;
    await jsm.consumers.add(WORK_STREAM, cfg);
  }
  return name;
}

/** A work item the handler rejects for good (bad input): not retried. */
export class BadWork extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BadWork';
  }
}
