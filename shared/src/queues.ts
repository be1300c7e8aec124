import type { JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { QueueContext } from '@baton/sdk';
import type { BaseConfig } from './config';
import { RedisUnavailableError } from './errors';
import { redisKeys } from './keys';

/** Queue names, like every other key, are built in keys.ts. */
export { COORDINATOR_QUEUE, functionNameOfQueue, functionQueueName } from './keys';

/** Connections are the SDK's (sdk/src/redis.ts): function processes open them the same way. */
export { createRedis, type QueueContext } from '@baton/sdk';

/** The connection's command timeout (ms), when it was created with one. */
export function commandTimeoutOf(redis: Redis): number | undefined {
  const timeout = redis.options.commandTimeout;
  return typeof timeout === 'number' && timeout > 0 ? timeout : undefined;
}

/**
 * Runs `call` (commands on `redis`, directly or through BullMQ) within `timeoutMs`, by default the
 * connection's command timeout (no bound when it has none), and turns any failure into a
 * RedisUnavailableError naming `what`. The command timeout bounds each command; this bounds the
 * rest too: BullMQ waiting for its connection to be ready, several commands in a row. A command
 * already sent may still be applied after the caller was told it failed (a frozen server resumes).
 */
export async function boundedRedisCall<T>(
  redis: Redis,
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

export function queueContext(config: Pick<BaseConfig, 'queuePrefix'>, connection: Redis): QueueContext {
  return { connection, prefix: config.queuePrefix };
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

/** Deletes every key under `prefix` (test suites clean up their own prefix with it). */
export async function deleteKeysWithPrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', redisKeys(prefix).all, 'COUNT', 500);
    cursor = next;
    if (keys.length) deleted += await redis.del(...keys);
  } while (cursor !== '0');
  return deleted;
}

/**
 * Cancellation crosses processes over Redis pub/sub: the coordinator publishes the execution ids it
 * cancelled, every function runtime aborts the attempts it is running for them.
 */
export function cancelChannel(prefix: string): string {
  return redisKeys(prefix).cancel;
}

export async function publishCancellation(redis: Redis, prefix: string, stepExecutionIds: string[]): Promise<void> {
  if (stepExecutionIds.length) await redis.publish(cancelChannel(prefix), JSON.stringify(stepExecutionIds));
}
