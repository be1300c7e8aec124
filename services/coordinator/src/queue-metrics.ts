import { Queue } from 'bullmq';
import client from 'prom-client';
import {
  COORDINATOR_QUEUE,
  deadInboxKey,
  inboxKey,
  INBOX_GROUP,
  functionQueueName,
  knownFunctions,
  registry,
  type Pool,
  type QueueContext,
} from '@baton/engine';

export const QUEUE_STATES = ['waiting', 'prioritized', 'active', 'delayed', 'failed'] as const;

/** How the coordinator inbox stream appears in `baton_queue_jobs`. */
export const INBOX_QUEUE_LABEL = `${COORDINATOR_QUEUE}:inbox`;

/**
 * waiting: appended, not yet read; active: read by a coordinator, not yet applied; failed: dead
 * letters. Summed over the inbox shards (BATON_INBOX_SHARDS).
 */
export async function inboxDepth(queues: QueueContext): Promise<{ waiting: number; active: number; failed: number }> {
  const shards = Array.from({ length: queues.inboxShards ?? 1 }, (_, shard) => shard);
  const depths = await Promise.all(
    shards.map(async (shard) => {
      const key = inboxKey(queues.prefix, shard);
      const [length, pending, dead] = await Promise.all([
        queues.connection.xlen(key),
        queues.connection
          .xpending(key, INBOX_GROUP)
          .then((summary) => Number((summary as [number])[0] ?? 0))
          .catch(() => 0),
        queues.connection.xlen(deadInboxKey(queues.prefix, shard)),
      ]);
      // Applied entries are deleted, so the stream holds the unread and the pending ones.
      return { waiting: Math.max(0, length - pending), active: pending, failed: dead };
    }),
  );
  return depths.reduce(
    (sum, d) => ({ waiting: sum.waiting + d.waiting, active: sum.active + d.active, failed: sum.failed + d.failed }),
    { waiting: 0, active: 0, failed: 0 },
  );
}

/** Refreshing the list of queues is a DB query: do it at most this often, not per scrape. */
const QUEUE_LIST_TTL_MS = 30_000;

/**
 * `baton_queue_jobs{queue,state}`: read from Redis when Prometheus scrapes the coordinator (and only
 * the coordinator, so a job is counted once).
 */
export function exportQueueDepths(pool: Pool, queues: QueueContext): { close(): Promise<void> } {
  const open = new Map<string, Queue>();
  let names: string[] = [];
  let listedAt = 0;
  const queueFor = (name: string): Queue => {
    let queue = open.get(name);
    if (!queue) {
      queue = new Queue(name, { connection: queues.connection, prefix: queues.prefix });
      open.set(name, queue);
    }
    return queue;
  };
  // Workers connected to each queue (BullMQ names its worker connections), for "work but no worker".
  const workers = new client.Gauge({
    name: 'baton_queue_workers',
    help: 'Workers connected to each BullMQ queue',
    labelNames: ['queue'] as const,
    registers: [registry],
  });
  new client.Gauge({
    name: 'baton_queue_jobs',
    help: 'Jobs in each BullMQ queue by state',
    labelNames: ['queue', 'state'] as const,
    registers: [registry],
    async collect() {
      if (Date.now() - listedAt > QUEUE_LIST_TTL_MS) {
        names = [COORDINATOR_QUEUE, ...(await knownFunctions(pool)).map((f) => functionQueueName(f.name))];
        listedAt = Date.now();
      }
      this.reset();
      workers.reset();
      await Promise.all(
        names.map(async (name) => {
          const queue = queueFor(name);
          const [counts, workerCount] = await Promise.all([
            queue.getJobCounts(...QUEUE_STATES),
            queue.getWorkersCount(),
          ]);
          for (const state of QUEUE_STATES) this.set({ queue: name, state }, counts[state] ?? 0);
          workers.set({ queue: name }, workerCount);
        }),
      );
      // The inbox stream in the same terms: entries not yet read, read but not yet applied, dead.
      const inbox = await inboxDepth(queues);
      for (const [state, n] of Object.entries(inbox)) this.set({ queue: INBOX_QUEUE_LABEL, state }, n);
    },
  });
  return {
    async close() {
      registry.removeSingleMetric('baton_queue_jobs');
      registry.removeSingleMetric('baton_queue_workers');
      await Promise.all([...open.values()].map((q) => q.close()));
    },
  };
}
