import net from 'node:net';
import crypto from 'node:crypto';
import pg from 'pg';
import { startPgBouncer, type PgBouncer } from './pgbouncer';
import {
  DEFAULT_PG_LIMITS,
  createPool,
  createRedis,
  type RedisConnection,
  deleteKeysWithPrefix,
  migrate,
  queueContext,
  redisOptionsFrom,
  seedDemoData,
  type BaseConfig,
  type DatabaseSettings,
  type Pool,
  type QueueContext,
} from '@baton/engine';

/**
 * Isolation for integration suites: each gets a fresh database (migrated and seeded) and a Redis
 * key prefix of its own, both removed by `cleanup()`. The servers come from TEST_DATABASE_URL /
 * TEST_REDIS_URL, defaulting to the local ones.
 *
 * Through a pooler (`opts.pooler`, or TEST_PGBOUNCER=1 for a private PgBouncer in transaction mode
 * per suite, test/support/pgbouncer.ts): migrations and seeds go to the server directly
 * (`directDatabaseUrl`, as BATON_MIGRATION_DATABASE_URL does), everything else — `pool`,
 * `databaseUrl`, the engine built on them — through the pooler, without named statements.
 */
export interface TestEnv {
  /** The URL the components use: the pooler's when pooled. */
  databaseUrl: string;
  /** The server itself (migrations, admin work). */
  directDatabaseUrl: string;
  /** The pooler in between, when there is one. */
  pooler?: PgBouncer;
  pool: Pool;
  redis: RedisConnection;
  config: BaseConfig;
  queues: QueueContext;
  /**
   * What is still running on this env (an engine from test/support/engine.ts adds itself until it is
   * closed). `cleanup()` fails while anything is: ending the pool and quitting Redis under a running
   * coordinator or reconciler makes errors that land in whatever test runs next, keys written after
   * the prefix was deleted, and a database dropped under live connections.
   */
  readonly running: Set<string>;
  cleanup(): Promise<void>;
}

const SERVER_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';

/** The same server URL, naming another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: withDatabase(SERVER_URL, 'postgres') });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface TestEnvOptions {
  /** REDIS_CLUSTER_NODES of a Redis Cluster (test/support/redis-cluster.ts) instead of the local Redis. */
  redisClusterNodes?: string;
  /** BATON_INBOX_SHARDS (default 1). */
  inboxShards?: number;
  /** A pooler (test/support/pgbouncer.ts) between the suite and PostgreSQL; TEST_PGBOUNCER=1 starts one. */
  pooler?: PgBouncer;
}

export async function createTestEnv(suite: string, opts: TestEnvOptions = {}): Promise<TestEnv> {
  const id = crypto.randomBytes(4).toString('hex');
  const database = `baton_test_${suite.replace(/[^a-z0-9]/gi, '_').toLowerCase()}_${id}`;
  await admin((c) => c.query(`CREATE DATABASE ${c.escapeIdentifier(database)}`));
  const directDatabaseUrl = withDatabase(SERVER_URL, database);
  await migrate(directDatabaseUrl);
  await seedDemoData(directDatabaseUrl);
  const ownPooler = !opts.pooler && process.env.TEST_PGBOUNCER === '1' ? await startPgBouncer() : undefined;
  const pooler = opts.pooler ?? ownPooler;
  let settings: DatabaseSettings | undefined;
  if (pooler) {
    // The pooler drops the session bounds sent as startup parameters; its connect_query sets them.
    settings = { ...DEFAULT_PG_LIMITS, namedStatements: false };
  }
  const databaseUrl = pooler ? pooler.url(database) : directDatabaseUrl;
  const config: BaseConfig = {
    databaseUrl,
    ...(settings ? { database: settings } : {}),
    redis: redisOptionsFrom({
      REDIS_URL: opts.redisClusterNodes ? undefined : REDIS_URL,
      REDIS_HOST: '127.0.0.1',
      REDIS_PORT: 6379,
      REDIS_CLUSTER_NODES: opts.redisClusterNodes,
    }),
    queuePrefix: `baton-test-${suite}-${id}`,
    ...(opts.inboxShards ? { inboxShards: opts.inboxShards } : {}),
    logLevel: (process.env.TEST_LOG_LEVEL as BaseConfig['logLevel']) ?? 'silent',
  };
  const pool = createPool(databaseUrl, {
    max: 10,
    applicationName: `test-${suite}`,
    ...(settings ? { database: settings } : {}),
  });
  const redis = createRedis(config.redis, `test-${suite}`);
  const running = new Set<string>();
  return {
    databaseUrl,
    directDatabaseUrl,
    ...(pooler ? { pooler } : {}),
    pool,
    redis,
    config,
    queues: queueContext(config, redis),
    running,
    async cleanup() {
      const early = running.size
        ? new Error(`cleanup() ran while ${[...running].join(', ')} still ran on the env: close it first`)
        : undefined;
      await pool.end();
      await deleteKeysWithPrefix(redis, config.queuePrefix);
      await redis.quit();
      await ownPooler?.stop();
      await admin((c) => c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(database)} WITH (FORCE)`));
      if (early) throw early;
    },
  };
}

/** A port nothing listens on (free at the moment of asking). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 20_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}
