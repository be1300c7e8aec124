import { DEFAULT_MAX_OUTPUT_BYTES } from './storable';
import { z } from 'zod';
import { ConfigError } from './errors';

/**
 * Environment parsing. Each deployable extends `baseEnv` with its own keys and calls
 * `loadConfig` once at start: a missing or bad value becomes one clear line and exit code 1.
 */
const port = z.coerce.number().int().min(0).max(65535);

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
}

/**
 * Hard bounds of the expression sandbox (workflow/expressions.ts): the time one evaluation (an `if:`,
 * a whole template) may run, the memory of the process it runs in, the size of a result. JSONata's
 * own guard (1 s per expression, checked between steps) applies too, whatever `timeoutMs` is.
 */
export interface ExpressionSandboxLimits {
  timeoutMs: number;
  maxMemoryMb: number;
  maxResultBytes: number;
}

export const DEFAULT_EXPRESSION_LIMITS: ExpressionSandboxLimits = {
  timeoutMs: 1_000,
  maxMemoryMb: 128,
  maxResultBytes: 4 * 1024 * 1024,
};

/**
 * BATON_MAX_OUTPUT_BYTES: the largest step output (with its emitted events), read by the function
 * runtime (refused before it reaches Redis) and the coordinator (refused before PostgreSQL).
 */
export const outputLimitEnv = z.object({
  BATON_MAX_OUTPUT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .max(64 * 1024 * 1024)
    .default(DEFAULT_MAX_OUTPUT_BYTES),
});

/** Read by every process that evaluates expressions; part of `baseEnv` so a bad value stops the start. */
export const expressionEnv = z.object({
  BATON_EXPRESSION_TIMEOUT_MS: z.coerce.number().int().min(10).max(60_000).default(DEFAULT_EXPRESSION_LIMITS.timeoutMs),
  BATON_EXPRESSION_MAX_MB: z.coerce.number().int().min(16).max(4_096).default(DEFAULT_EXPRESSION_LIMITS.maxMemoryMb),
  BATON_EXPRESSION_MAX_RESULT_BYTES: z.coerce
    .number()
    .int()
    .min(1_024)
    .default(DEFAULT_EXPRESSION_LIMITS.maxResultBytes),
});

export function expressionLimitsFrom(env: z.infer<typeof expressionEnv>): ExpressionSandboxLimits {
  return {
    timeoutMs: env.BATON_EXPRESSION_TIMEOUT_MS,
    maxMemoryMb: env.BATON_EXPRESSION_MAX_MB,
    maxResultBytes: env.BATON_EXPRESSION_MAX_RESULT_BYTES,
  };
}

export const baseEnv = z.object({
  DATABASE_URL: z.string().url().default('postgres://postgres@127.0.0.1:5432/baton'),
  REDIS_URL: z.string().url().optional(),
  REDIS_HOST: z.string().min(1).default('127.0.0.1'),
  REDIS_PORT: port.default(6379),
  /** Prefix of every Redis key Baton writes; lets several installs (or test suites) share a Redis. */
  BATON_QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, dot, dash and underscore only')
    .default('baton'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Port of the /metrics endpoint of processes that serve no HTTP API; 0 picks a free one. */
  METRICS_PORT: port.optional(),
  /** Most PostgreSQL connections this process opens (each component has its own default). */
  DATABASE_POOL_MAX: z.coerce.number().int().min(1).max(1000).optional(),
  /** Server-side bounds of every pooled session (docs/SCALING.md); 0 turns one off. */
  BATON_PG_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(0).default(DEFAULT_PG_LIMITS.statementTimeoutMs),
  BATON_PG_LOCK_TIMEOUT_MS: z.coerce.number().int().min(0).default(DEFAULT_PG_LIMITS.lockTimeoutMs),
  BATON_PG_IDLE_TX_TIMEOUT_MS: z.coerce.number().int().min(0).default(DEFAULT_PG_LIMITS.idleInTransactionTimeoutMs),
  ...expressionEnv.shape,
});

export type BaseEnv = z.infer<typeof baseEnv>;

export interface RedisOptions {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls?: object;
}

export interface BaseConfig {
  databaseUrl: string;
  /** Pool size and session bounds; DEFAULT_PG_LIMITS when absent. */
  database?: DatabaseSettings;
  redis: RedisOptions;
  queuePrefix: string;
  logLevel: BaseEnv['LOG_LEVEL'];
  metricsPort?: number;
}

export function redisOptionsFrom(env: Pick<BaseEnv, 'REDIS_URL' | 'REDIS_HOST' | 'REDIS_PORT'>): RedisOptions {
  if (!env.REDIS_URL) return { host: env.REDIS_HOST, port: env.REDIS_PORT, db: 0 };
  const url = new URL(env.REDIS_URL);
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new ConfigError(`REDIS_URL must start with redis:// or rediss://, got '${url.protocol}'`);
  }
  const dbPath = url.pathname.replace(/^\//, '');
  const db = dbPath === '' ? 0 : Number(dbPath);
  if (!Number.isInteger(db) || db < 0)
    throw new ConfigError(`REDIS_URL database index must be a number, got '${dbPath}'`);
  return {
    host: url.hostname,
    port: url.port ? Number(url.port) : 6379,
    db,
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

export function toBaseConfig(env: BaseEnv): BaseConfig {
  return {
    databaseUrl: env.DATABASE_URL,
    database: {
      ...(env.DATABASE_POOL_MAX === undefined ? {} : { poolMax: env.DATABASE_POOL_MAX }),
      statementTimeoutMs: env.BATON_PG_STATEMENT_TIMEOUT_MS,
      lockTimeoutMs: env.BATON_PG_LOCK_TIMEOUT_MS,
      idleInTransactionTimeoutMs: env.BATON_PG_IDLE_TX_TIMEOUT_MS,
    },
    redis: redisOptionsFrom(env),
    queuePrefix: env.BATON_QUEUE_PREFIX,
    logLevel: env.LOG_LEVEL,
    ...(env.METRICS_PORT === undefined ? {} : { metricsPort: env.METRICS_PORT }),
  };
}

/** Parses `env` with `schema`; throws a ConfigError naming every bad variable on one line. */
export function parseEnv<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const name = issue.path.join('.') || '(environment)';
    const value = env[name];
    return value === undefined
      ? `${name} is missing (${issue.message})`
      : `${name}=${JSON.stringify(maskCredentials(value))} is invalid: ${issue.message}`;
  });
  throw new ConfigError(`Invalid configuration: ${problems.join('; ')}`);
}

/** Hides `user:password@` in URL-shaped values, so a rejected DATABASE_URL never prints its password. */
export function maskCredentials(value: string): string {
  return value.replace(/\/\/[^/@\s]*@/, '//***@');
}

/** For entry points: parse, or print one line to stderr and exit 1. */
export function loadConfigOrExit<T>(load: () => T): T {
  try {
    return load();
  } catch (err) {
    exitOnConfigError(err);
  }
}

/** The async form, for set-up that opens resources while it reads its configuration. */
export async function loadConfigOrExitAsync<T>(load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    exitOnConfigError(err);
  }
}

function exitOnConfigError(err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
  throw err;
}
