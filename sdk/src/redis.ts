import { Redis } from 'ioredis';
import type { RedisOptions } from './config';

/**
 * A Redis connection for BullMQ. `maxRetriesPerRequest: null` lets blocking worker commands wait
 * through a Redis restart instead of failing; BullMQ requires it for workers.
 *
 * `commandTimeoutMs` bounds every command of the connection (ioredis' commandTimeout): for callers
 * that answer someone who is waiting (the gateway), never for worker connections, whose blocking
 * commands wait on purpose.
 */
export function createRedis(
  opts: RedisOptions,
  connectionName = 'baton',
  extra: { commandTimeoutMs?: number } = {},
): Redis {
  return new Redis({
    host: opts.host,
    port: opts.port,
    db: opts.db,
    username: opts.username,
    password: opts.password,
    tls: opts.tls,
    connectionName,
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    retryStrategy: (times) => Math.min(times * 200, 2_000),
    // A server that vanished without closing the connection is noticed instead of waited for.
    keepAlive: 10_000,
    ...(extra.commandTimeoutMs ? { commandTimeout: extra.commandTimeoutMs } : {}),
  });
}

/** A Redis connection and the prefix of Baton's keys on it. */
export interface QueueContext {
  connection: Redis;
  prefix: string;
}
