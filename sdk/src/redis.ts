import { Cluster, Redis } from 'ioredis';
import type { RedisOptions } from './config';

/**
 * A Redis connection: one server (`Redis`) or a Redis Cluster (`Cluster`, when
 * `REDIS_CLUSTER_NODES` is set). BullMQ takes either; every key Baton names carries the hash tag of
 * what it belongs to (keys.ts), so each command, MULTI and pipeline stays in one slot.
 */
export type RedisConnection = Redis | Cluster;

/**
 * A Redis connection for BullMQ. `maxRetriesPerRequest: null` lets blocking worker commands wait
 * through a Redis restart instead of failing; BullMQ requires it for workers.
 *
 * `commandTimeoutMs` bounds every command of the connection (ioredis' commandTimeout): for callers
 * that answer someone who is waiting (the gateway), never for worker connections, whose blocking
 * commands wait on purpose.
 *
 * With `opts.cluster` (REDIS_CLUSTER_NODES) it is an ioredis Cluster on those seed nodes, each node
 * connection made with the same credentials, TLS and bounds.
 */
export function createRedis(
  opts: RedisOptions,
  connectionName = 'baton',
  extra: { commandTimeoutMs?: number } = {},
): RedisConnection {
  const node = {
    username: opts.username,
    password: opts.password,
    tls: opts.tls,
    connectionName,
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    // A server that vanished without closing the connection is noticed instead of waited for.
    keepAlive: 10_000,
    ...(extra.commandTimeoutMs ? { commandTimeout: extra.commandTimeoutMs } : {}),
  };
  if (opts.cluster?.length) {
    return new Cluster(opts.cluster, {
      redisOptions: node,
      enableReadyCheck: true,
      clusterRetryStrategy: (times) => Math.min(times * 200, 2_000),
      // A MOVED or ASK during a resharding or failover is followed; a refused slot is tried again.
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 500,
      retryDelayOnTryAgain: 200,
      ...(opts.tls
        ? { dnsLookup: (address: string, done: (err: null, a: string) => void) => done(null, address) }
        : {}),
    });
  }
  return new Redis({
    host: opts.host,
    port: opts.port,
    db: opts.db,
    ...node,
    retryStrategy: (times) => Math.min(times * 200, 2_000),
  });
}

/** Whether the connection is a Redis Cluster. */
export function isCluster(redis: RedisConnection): redis is Cluster {
  return (redis as Cluster).isCluster === true;
}

/** A new connection like `redis` (its cluster's seed nodes and options), named `connectionName`. */
export function duplicateRedis(redis: RedisConnection, connectionName?: string): RedisConnection {
  if (isCluster(redis)) {
    return redis.duplicate(undefined, {
      redisOptions: { ...redis.options.redisOptions, ...(connectionName ? { connectionName } : {}) },
    });
  }
  return redis.duplicate(connectionName ? { connectionName } : {});
}

/** The connection's command timeout (ms), when it was created with one. */
export function commandTimeoutOf(redis: RedisConnection): number | undefined {
  const timeout = isCluster(redis) ? redis.options.redisOptions?.commandTimeout : redis.options.commandTimeout;
  return typeof timeout === 'number' && timeout > 0 ? timeout : undefined;
}

/**
 * The servers holding keys: the one server, or every master of the cluster (a SCAN on a cluster
 * connection sees one node's keys only).
 */
export function keyServers(redis: RedisConnection): Redis[] {
  return isCluster(redis) ? redis.nodes('master') : [redis];
}

/** A Redis connection and the prefix of Baton's keys on it. */
export interface QueueContext {
  connection: RedisConnection;
  prefix: string;
  /**
   * Streams of the coordinator inbox (BATON_INBOX_SHARDS; absent: 1): a run's messages go to the
   * shard of its id (keys.ts `inboxShardOf`).
   */
  inboxShards?: number;
}
