import { createRedis, type RedisConnection } from '@baton/engine';
import { DEFAULT_REDIS_COMMAND_TIMEOUT_MS, type GatewayConfig } from './config';

/**
 * The gateway's Redis connection. Every command on it (the inbox append after a run is committed,
 * cancel and retry notifications, the rate limiter, queue reads, the discovery heartbeat) gives up
 * after BATON_REDIS_COMMAND_TIMEOUT_MS: the gateway answers someone who is waiting, so a frozen or
 * failing-over Redis must cost a request a bounded delay, never hang it. The gateway runs no
 * BullMQ worker, whose blocking commands would need an unbounded connection.
 */
export function createGatewayRedis(config: Pick<GatewayConfig, 'redis' | 'redisCommandTimeoutMs'>): RedisConnection {
  return createRedis(config.redis, 'baton:gateway', {
    commandTimeoutMs: config.redisCommandTimeoutMs ?? DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
  });
}
