/**
 * Every Redis key and channel Baton names, built here and nowhere else (as BullMQ's queue-keys.ts
 * does for a queue's own keys; `@baton/engine` re-exports them, so the function runtime and the
 * engine agree on every name). All live under the prefix (`BATON_QUEUE_PREFIX`, default `baton`).
 *
 * Queue names carry their own Redis Cluster hash tag: with prefix `baton`, the function queue
 * `{fn.generate-pdf}` keeps its keys under `baton:{fn.generate-pdf}:…` (BullMQ builds those from the
 * prefix and the name), so one queue lives in one slot and different queues spread over shards. The
 * coordinator inbox may be sharded (BATON_INBOX_SHARDS): shard 0 and its dead letters share the
 * coordinator queue's tag (the key of an unsharded inbox, unchanged), shard n > 0 has its own tag
 * `{inbox.<n>}` for it and its dead letters, so shards spread over cluster nodes. Keys of no queue
 * or stream (cancel channel, discovery hash, rate-limit windows) are single-key each: they need no
 * shared tag.
 */

/** The coordinator's BullMQ queue: timers, schedule ticks, control requests. */
export const COORDINATOR_QUEUE = '{coordinator}';

/** The queue of a step function. */
export function functionQueueName(functionName: string): string {
  return `{fn.${functionName}}`;
}

/** The function name behind a queue name, or undefined when it is no function queue. */
export function functionNameOfQueue(queueName: string): string | undefined {
  const match = /^\{fn\.(.+)\}$/.exec(queueName);
  return match?.[1];
}

/** The hash tag of an inbox shard: the coordinator queue's for shard 0, `{inbox.<n>}` for the others. */
function inboxTag(shard: number): string {
  return shard === 0 ? COORDINATOR_QUEUE : `{inbox.${shard}}`;
}

/** The stream of inbox shard `shard` (0: the key an unsharded inbox has always had). */
export function inboxShardKey(prefix: string, shard: number): string {
  return `${prefix}:${inboxTag(shard)}:inbox`;
}

/** The dead letters of inbox shard `shard`, in its slot (they are written in one MULTI with its ack). */
export function deadInboxShardKey(prefix: string, shard: number): string {
  return `${prefix}:${inboxTag(shard)}:inbox:dead`;
}

/**
 * The inbox shard of a run: a stable hash (FNV-1a, 32 bits) of its id modulo `shards`, so all of a
 * run's messages go to one stream, in order.
 */
export function inboxShardOf(runId: string, shards = 1): number {
  if (shards <= 1) return 0;
  let hash = 0x811c9dc5;
  for (let i = 0; i < runId.length; i += 1) {
    hash ^= runId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % shards;
}

export interface RedisKeys {
  /** The coordinator inbox stream (run starts and step reports); shard 0 of a sharded one. */
  inbox: string;
  /** Inbox entries set aside after too many failed deliveries (shard 0's). */
  deadInbox: string;
  /** Pub/sub channel of cancelled step executions (the function runtimes abort them). */
  cancel: string;
  /** Hash of the processes Prometheus scrapes (discovery.ts). */
  targets: string;
  /** Key prefix of the gateway's shared rate-limit windows (one key per client after it). */
  rateLimit: string;
  /** SCAN pattern of every key under the prefix. */
  all: string;
}

export function redisKeys(prefix: string): RedisKeys {
  return {
    inbox: inboxShardKey(prefix, 0),
    deadInbox: deadInboxShardKey(prefix, 0),
    cancel: `${prefix}:cancel`,
    targets: `${prefix}:targets`,
    rateLimit: `${prefix}:ratelimit:`,
    all: `${prefix}:*`,
  };
}
