/**
 * Queueing work the way the services do: a JetStream publish to the STELLA_WORK stream
 * (which a service creates when it connects). `askWork` also sets the Stella-Reply-To
 * header and waits for the worker's { ok, result | error }, sent once the item is acked.
 */
import { randomUUID } from 'node:crypto';
import { createInbox, headers, type NatsConnection, type PubAck } from 'nats';

export type WorkReply = { ok: boolean; result?: Record<string, unknown>; error?: string };

export async function queueWork(nc: NatsConnection, subject: string, data: unknown, msgId: string = randomUUID()): Promise<PubAck> {
  return nc.jetstream().publish(subject, Buffer.from(JSON.stringify(data)), { msgID: msgId });
}

export async function askWork(nc: NatsConnection, subject: string, data: unknown, timeoutMs = 15_000): Promise<WorkReply> {
  const inbox = createInbox();
  const sub = nc.subscribe(inbox, { max: 1, timeout: timeoutMs });
  await nc.flush();
  const h = headers();
  h.set('Stella-Reply-To', inbox);
  await nc.jetstream().publish(subject, Buffer.from(JSON.stringify(data)), { msgID: randomUUID(), headers: h });
  for await (const m of sub) return JSON.parse(Buffer.from(m.data).toString()) as WorkReply;
  throw new Error(`no reply on ${subject} within ${timeoutMs} ms`);
}
