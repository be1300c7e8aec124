import type { Redis } from 'ioredis';
import { appendEncodedToInbox, INBOX_MESSAGE_FIELD } from '@baton/sdk';
import { redisKeys } from './keys';
import type { CoordinatorMessage } from './protocol';

/**
 * The coordinator's inbox: a Redis stream for the messages of the hot path — function reports and run
 * starts. Coordinators read it in batches through one consumer group, apply a whole batch in one
 * PostgreSQL transaction, then acknowledge and delete the entries (docs/PERFORMANCE.md).
 *
 * Why a stream and not BullMQ jobs: a report is appended with one XADD, and a coordinator takes up to
 * hundreds per XREADGROUP, where a BullMQ job costs one script call to add and one to finish per
 * message. Delivery is at least once: an entry read by a coordinator that dies before acknowledging
 * it is claimed by another after `claimIdleMs`; applying a message twice changes nothing.
 *
 * Delayed messages (timers, deadlines), schedule ticks and control requests stay on the BullMQ
 * coordinator queue, which has delays and job schedulers.
 */

/** The stream's key; the `{coordinator}` hash tag keeps it in the coordinator queue's cluster slot. */
export function inboxKey(prefix: string): string {
  return redisKeys(prefix).inbox;
}

/**
 * Entries that failed `maxDeliveries` times (or are no coordinator message) go here, with the reason
 * they were set aside, for a person to look at; each failure's error is in the coordinator's log.
 */
export function deadInboxKey(prefix: string): string {
  return redisKeys(prefix).deadInbox;
}

export const INBOX_GROUP = 'coordinators';

/** The message types that travel through the inbox. */
export type InboxMessage = Extract<
  CoordinatorMessage,
  { type: 'run.start' | 'step.started' | 'step.retrying' | 'step.succeeded' | 'step.failed' }
>;

export function isInboxMessage(message: CoordinatorMessage): message is InboxMessage {
  return (
    message.type === 'run.start' ||
    message.type === 'step.started' ||
    message.type === 'step.retrying' ||
    message.type === 'step.succeeded' ||
    message.type === 'step.failed'
  );
}

/** A message as its stream entry carries it (field `m`). Throws when JSON cannot encode it (a BigInt, a cycle). */
export function encodeInboxMessage(message: InboxMessage): string {
  return JSON.stringify(message);
}

/**
 * Appends one message already encoded with `encodeInboxMessage` (the SDK's: function processes
 * append their reports with it).
 */
export { appendEncodedToInbox, INBOX_MESSAGE_FIELD };

/** Appends messages in one round trip (a pipeline of XADDs). */
export async function appendToInbox(redis: Redis, prefix: string, messages: InboxMessage[]): Promise<void> {
  if (!messages.length) return;
  const key = inboxKey(prefix);
  if (messages.length === 1) {
    await redis.xadd(key, '*', INBOX_MESSAGE_FIELD, encodeInboxMessage(messages[0]));
    return;
  }
  const pipeline = redis.pipeline();
  for (const message of messages) pipeline.xadd(key, '*', INBOX_MESSAGE_FIELD, encodeInboxMessage(message));
  const results = (await pipeline.exec()) ?? [];
  const failed = results.find(([err]) => err);
  if (failed) throw failed[0];
}
