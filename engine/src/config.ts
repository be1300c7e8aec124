import { redisEnv, redisOptionsFrom, type LogLevel, type RedisOptions } from '@baton/sdk';
import { expressionEnv } from '@baton/workflow';
import { z } from 'zod';

/**
 * What function processes read too is the SDK's (sdk/src/config.ts): the Redis settings, the output
 * limit, and the parsing helpers. Re-exported for the engine's entry points.
 */
export {
  loadConfigOrExit,
  loadConfigOrExitAsync,
  maskCredentials,
  outputLimitEnv,
  parseEnv,
  redisOptionsFrom,
  type RedisOptions,
} from '@baton/sdk';

/**
 * Environment parsing. Each deployable extends `baseEnv` with its own keys and calls
 * `loadConfig` once at start: a missing or bad value becomes one clear line and exit code 1.
 */
/**
 * Bounds on every pooled PostgreSQL session, so no process can hold locks or a connection forever:
 * a statement runs at most `statementTimeoutMs`; a lock is waited for at most `lockTimeoutMs` (the
 * transaction fails and its message is retried, instead of a whole coordinator blocking behind a
 * peer); a transaction left idle (its process frozen: SIGSTOP, a GC pause, a network partition)
 * is ended by the server after `idleInTransactionTimeoutMs`, which releases its row locks.
 * Coordinator transactions take milliseconds, so these leave ample room.
 */
export interface PgSessionLimits {
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
}

export const DEFAULT_PG_LIMITS: PgSessionLimits = {
  statementTimeoutMs: 30_000,
  lockTimeoutMs: 10_000,
  idleInTransactionTimeoutMs: 30_000,
};

/** How a process connects to PostgreSQL: its pool size (when set) and its session bounds. */
export interface DatabaseSettings extends PgSessionLimits {
  poolMax?: number;
  /**
   * Hot statements are prepared once per connection under a name (true, the default). False sends
   * every statement unnamed: required behind PgBouncer in transaction mode (1.18 does not keep a
   * named statement across transactions; docs/SCALING.md, PgBouncer).
   */
  namedStatements?: boolean;
}

export const baseEnv = z.object({
  DATABASE_URL: z.string().url().default('postgres://postgres@127.0.0.1:5432/baton'),
  /**
   * Where migrations run (scripts/migrate.js, the chart's migration Job, `npm run setup`): a direct
   * connection when DATABASE_URL is a transaction-mode pooler, since postgrator holds a session
   * advisory lock. Default: DATABASE_URL.
   */
  BATON_MIGRATION_DATABASE_URL: z.string().url().optional(),
  // REDIS_URL / REDIS_HOST / REDIS_PORT, BATON_QUEUE_PREFIX, LOG_LEVEL, METRICS_PORT: as functions read them.
  ...redisEnv.shape,
  /** Most PostgreSQL connections this process opens (each component has its own default). */
  DATABASE_POOL_MAX: z.coerce.number().int().min(1).max(1000).optional(),
  /** Server-side bounds of every pooled session (docs/SCALING.md); 0 turns one off. */
  BATON_PG_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(0).default(DEFAULT_PG_LIMITS.statementTimeoutMs),
  BATON_PG_LOCK_TIMEOUT_MS: z.coerce.number().int().min(0).default(DEFAULT_PG_LIMITS.lockTimeoutMs),
  BATON_PG_IDLE_TX_TIMEOUT_MS: z.coerce.number().int().min(0).default(DEFAULT_PG_LIMITS.idleInTransactionTimeoutMs),
  /** `false` behind a transaction-mode pooler (PgBouncer 1.18): no named prepared statements. */
  BATON_PG_NAMED_STATEMENTS: z.enum(['true', 'false']).default('true'),
  ...expressionEnv.shape,
  /**
   * Streams of the coordinator inbox (docs/SCALING.md): a run's messages go to the shard of its id.
   * 1 is the single stream `<prefix>:{coordinator}:inbox` of an unsharded install.
   */
  BATON_INBOX_SHARDS: z.coerce.number().int().min(1).max(1024).default(1),
});

export type BaseEnv = z.infer<typeof baseEnv>;

/** The URL migrations use: BATON_MIGRATION_DATABASE_URL, else DATABASE_URL. */
export function migrationDatabaseUrl(env: Pick<BaseEnv, 'DATABASE_URL' | 'BATON_MIGRATION_DATABASE_URL'>): string {
  return env.BATON_MIGRATION_DATABASE_URL ?? env.DATABASE_URL;
}

export interface BaseConfig {
  databaseUrl: string;
  /** Pool size and session bounds; DEFAULT_PG_LIMITS when absent. */
  database?: DatabaseSettings;
  redis: RedisOptions;
  queuePrefix: string;
  /** BATON_INBOX_SHARDS (absent: 1). */
  inboxShards?: number;
  logLevel: LogLevel;
  metricsPort?: number;
}

export function toBaseConfig(env: BaseEnv): BaseConfig {
  return {
    databaseUrl: env.DATABASE_URL,
    database: {
      ...(env.DATABASE_POOL_MAX === undefined ? {} : { poolMax: env.DATABASE_POOL_MAX }),
      statementTimeoutMs: env.BATON_PG_STATEMENT_TIMEOUT_MS,
      lockTimeoutMs: env.BATON_PG_LOCK_TIMEOUT_MS,
      idleInTransactionTimeoutMs: env.BATON_PG_IDLE_TX_TIMEOUT_MS,
      namedStatements: env.BATON_PG_NAMED_STATEMENTS === 'true',
    },
    redis: redisOptionsFrom(env),
    queuePrefix: env.BATON_QUEUE_PREFIX,
    inboxShards: env.BATON_INBOX_SHARDS,
    logLevel: env.LOG_LEVEL,
    ...(env.METRICS_PORT === undefined ? {} : { metricsPort: env.METRICS_PORT }),
  };
}
