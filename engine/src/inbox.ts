import {
  appendEncodedToInbox,
  deadInboxShardKey,
  inboxShardKey,
  inboxShardOf,
  INBOX_MESSAGE_FIELD,
  type RedisConnection,
} from '@baton/sdk';
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
 *
 * Sharding (BATON_INBOX_SHARDS): the inbox may be several streams, each with a hash tag of its own
 * so they spread over a Redis Cluster's nodes. A run's messages all go to the shard of its id
 * (`inboxShardOf`), so they stay in order; every coordinator replica reads every shard
 * (inbox-consumer.ts). Shard 0 is the key an unsharded inbox has always had.
 */

/**
 * The key of inbox shard `shard` (0: `<prefix>:{coordinator}:inbox`, the coordinator queue's slot;
 * n: `<prefix>:{inbox.<n>}:inbox`).
 */
export function inboxKey(prefix: string, shard = 0): string {
  return inboxShardKey(prefix, shard);
}

export { inboxShardOf };

/**
 * Entries that failed `maxDeliveries` times (or are no coordinator message) go here, with the reason
 * they were set aside, for a person to look at; each failure's error is in the coordinator's log.
 */
export function deadInboxKey(prefix: string, shard = 0): string {
  return deadInboxShardKey(prefix, shard);
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

/**
 * Appends messages, each to the shard of its run (of `shards`), in one round trip per shard (a
 * pipeline of XADDs: a pipeline stays in one cluster slot).
 */
export async function appendToInbox(
  redis: RedisConnection,
  prefix: string,
  messages: InboxMessage[],
  shards = 1,
): Promise<void> {
  if (!messages.length) return;
  const byShard = new Map<number, InboxMessage[]>();
  for (const message of messages) {
    const shard = inboxShardOf(message.runId, shards);
    const list = byShard.get(shard);
    if (list) list.push(message);
    else byShard.set(shard, [message]);
  }
  await Promise.all(
    [...byShard].map(async ([shard, list]) => {
      const key = inboxKey(prefix, shard);
      if (list.length === 1) {
        await redis.xadd(key, '*', INBOX_MESSAGE_FIELD, encodeInboxMessage(list[0]));
        return;
      }
      const pipeline = redis.pipeline();
      for (const message of list) pipeline.xadd(key, '*', INBOX_MESSAGE_FIELD, encodeInboxMessage(message));
      const results = (await pipeline.exec()) ?? [];
      const failed = results.find(([err]) => err);
      if (failed) throw failed[0];
    }),
  );
}
