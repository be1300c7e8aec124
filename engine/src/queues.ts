import type { JobsOptions } from 'bullmq';
import { commandTimeoutOf, keyServers, type QueueContext, type RedisConnection } from '@baton/sdk';
import type { BaseConfig } from './config';
import { RedisUnavailableError } from '@baton/workflow';
import { redisKeys } from './keys';

/** Queue names, like every other key, are built in keys.ts. */
export { COORDINATOR_QUEUE, functionNameOfQueue, functionQueueName } from './keys';

/**
 * Connections are the SDK's (sdk/src/redis.ts), the one place they are made: function processes
 * open them the same way, one server or a Redis Cluster (REDIS_CLUSTER_NODES).
 */
export {
  commandTimeoutOf,
  createRedis,
  duplicateRedis,
  isCluster,
  keyServers,
  type QueueContext,
  type RedisConnection,
} from '@baton/sdk';

/**
 * Runs `call` (commands on `redis`, directly or through BullMQ) within `timeoutMs`, by default the
 * connection's command timeout (no bound when it has none), and turns any failure into a
 * RedisUnavailableError naming `what`. The command timeout bounds each command; this bounds the
 * rest too: BullMQ waiting for its connection to be ready, several commands in a row. A command
 * already sent may still be applied after the caller was told it failed (a frozen server resumes).
 */
export async function boundedRedisCall<T>(
  redis: RedisConnection,
  what: string,
  call: () => Promise<T>,
  timeoutMs: number | undefined = commandTimeoutOf(redis),
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const running = Promise.resolve().then(call);
  try {
    if (timeoutMs === undefined) return await running;
    running.catch(() => undefined);
    return await Promise.race([
      running,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    if (err instanceof RedisUnavailableError) throw err;
    throw new RedisUnavailableError(`Redis is unavailable (${what}: ${(err as Error)?.message ?? String(err)})`, {
      cause: err,
    });
  } finally {
    clearTimeout(timer);
  }
}

export function queueContext(
  config: Pick<BaseConfig, 'queuePrefix'> & Partial<Pick<BaseConfig, 'inboxShards'>>,
  connection: RedisConnection,
): QueueContext {
  return {
    connection,
    prefix: config.queuePrefix,
    ...(config.inboxShards && config.inboxShards > 1 ? { inboxShards: config.inboxShards } : {}),
  };
}

/** Completed and failed jobs stay a while: the reconciler reads a finished job's result from them. */
export const KEEP_FINISHED_JOBS = { age: 24 * 3600, count: 50_000 } as const;

/** Retries of the coordinator's own messages (a DB hiccup while applying a report). */
export const COORDINATOR_JOB_OPTIONS: JobsOptions = {
  attempts: 20,
  backoff: { type: 'exponential', delay: 250 },
  removeOnComplete: { age: 3600, count: 10_000 },
  removeOnFail: KEEP_FINISHED_JOBS,
};

/**
 * Deletes every key under `prefix` (test suites clean up their own prefix with it). On a cluster
 * each master is scanned, and each key deleted on its own (a DEL of several keys must stay in one
 * slot).
 */
export async function deleteKeysWithPrefix(redis: RedisConnection, prefix: string): Promise<number> {
  let deleted = 0;
  for (const server of keyServers(redis)) {
    let cursor = '0';
    do {
      const [next, keys] = await server.scan(cursor, 'MATCH', redisKeys(prefix).all, 'COUNT', 500);
      cursor = next;
      if (keys.length) {
        const pipeline = server.pipeline();
        for (const key of keys) pipeline.unlink(key);
        const replies = (await pipeline.exec()) ?? [];
        for (const [err, count] of replies) {
          if (err) throw err;
          deleted += Number(count);
        }
      }
    } while (cursor !== '0');
  }
  return deleted;
}

/**
 * Cancellation crosses processes over Redis pub/sub: the coordinator publishes the execution ids it
 * cancelled, every function runtime aborts the attempts it is running for them.
 */
export function cancelChannel(prefix: string): string {
  return redisKeys(prefix).cancel;
}

export async function publishCancellation(
  redis: RedisConnection,
  prefix: string,
  stepExecutionIds: string[],
): Promise<void> {
  if (stepExecutionIds.length) await redis.publish(cancelChannel(prefix), JSON.stringify(stepExecutionIds));
}
