/**
 * Every Redis key and channel Baton names, built here and nowhere else (as BullMQ's queue-keys.ts
 * does for a queue's own keys; `@baton/shared` re-exports them, so the function runtime and the
 * engine agree on every name). All live under the prefix (`BATON_QUEUE_PREFIX`, default `baton`).
 *
 * Queue names carry their own Redis Cluster hash tag: with prefix `baton`, the function queue
 * `{fn.generate-pdf}` keeps its keys under `baton:{fn.generate-pdf}:…` (BullMQ builds those from the
 * prefix and the name), so one queue lives in one slot and different queues spread over shards. The
 * coordinator inbox and its dead letters share the coordinator queue's tag, so its slot.
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

export interface RedisKeys {
  /** The coordinator inbox stream (run starts and step reports). */
  inbox: string;
  /** Inbox entries set aside after too many failed deliveries. */
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
    inbox: `${prefix}:${COORDINATOR_QUEUE}:inbox`,
    deadInbox: `${prefix}:${COORDINATOR_QUEUE}:inbox:dead`,
    cancel: `${prefix}:cancel`,
    targets: `${prefix}:targets`,
    rateLimit: `${prefix}:ratelimit:`,
    all: `${prefix}:*`,
  };
}
