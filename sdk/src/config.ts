import { z } from 'zod';
import { ConfigError } from './errors';

/**
 * Environment parsing for function processes. `runFunctionMain` reads what the runtime needs (Redis,
 * key prefix, log level, metrics port, step lock, output limit, concurrency); a function reads its
 * own variables with `parseEnv` in its `build` callback: a missing or bad value becomes one clear
 * line and exit code 1. Nothing here reads DATABASE_URL: a function with a database of its own reads
 * it itself.
 */
const port = z.coerce.number().int().min(0).max(65535);

/**
 * Largest step output (with its emitted events) Baton stores, by default (BATON_MAX_OUTPUT_BYTES):
 * the function runtime refuses a larger one before it travels through Redis, the coordinator before
 * it reaches PostgreSQL. Large results belong in a documents store, with their id in the output.
 */
export const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024;

/** Bytes of `value` as JSON (what a report carries and PostgreSQL receives), or 0 for undefined. */
export function jsonByteLength(value: unknown): number {
  const text = JSON.stringify(value);
  return text === undefined ? 0 : Buffer.byteLength(text, 'utf8');
}

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

/**
 * A function's rate limit: at most `max` attempts start per `durationMs`, counted across every
 * worker of its queue (BullMQ's global limiter: fixed windows of `durationMs` kept in Redis).
 */
export interface RateLimit {
  max: number;
  durationMs: number;
}

const RATE_LIMIT_PATTERN = /^(\d+)\s*\/\s*(\d*)\s*(ms|s|m|h)$/;
const RATE_LIMIT_UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
const RATE_LIMIT_MAX_DURATION_MS = 24 * 3_600_000;

/**
 * `<max>/<duration>`: `100/1s`, `10/500ms`, `600/m` (a missing count means 1), units ms, s, m, h.
 * max 1..1 000 000 per window, the window 1 ms..24 h. The problem, as a string, when invalid.
 */
export function parseRateLimit(text: string): RateLimit | string {
  const match = RATE_LIMIT_PATTERN.exec(text.trim());
  if (!match) return "expected '<max>/<duration>', e.g. 100/1s, 10/500ms, 600/m (units ms, s, m, h)";
  const max = Number(match[1]);
  const durationMs = Number(match[2] || 1) * RATE_LIMIT_UNIT_MS[match[3] as keyof typeof RATE_LIMIT_UNIT_MS];
  if (!Number.isSafeInteger(max) || max < 1 || max > 1_000_000) return 'max must be 1 to 1000000';
  if (durationMs < 1 || durationMs > RATE_LIMIT_MAX_DURATION_MS) return 'the duration must be 1ms to 24h';
  return { max, durationMs };
}

/** A rate limit in the environment (`<FUNCTION>_RATE_LIMIT`, `BATON_FUNCTION_RATE_LIMIT`). */
export const rateLimitSetting = z.string().transform((text, ctx): RateLimit => {
  const parsed = parseRateLimit(text);
  if (typeof parsed === 'string') {
    ctx.addIssue({ code: 'custom', message: parsed });
    return z.NEVER;
  }
  return parsed;
});

/** Where Redis is and what Baton's keys start with: every process reads these. */
export const redisEnv = z.object({
  REDIS_URL: z.string().url().optional(),
  /**
   * A Redis Cluster's seed nodes, `host:port,host:port,…` (ioredis discovers the others); set, it
   * wins over REDIS_URL / REDIS_HOST, whose credentials and TLS (`rediss://user:pass@…`) apply to
   * every node.
   */
  REDIS_CLUSTER_NODES: z
    .string()
    .regex(
      /^\s*[^\s,:]+:\d{1,5}\s*(,\s*[^\s,:]+:\d{1,5}\s*)*$/,
      'a comma-separated list of host:port (e.g. redis-0:6379,redis-1:6379)',
    )
    .optional(),
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
});

export type RedisEnv = z.infer<typeof redisEnv>;
export type LogLevel = RedisEnv['LOG_LEVEL'];

export interface RedisOptions {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls?: object;
  /** Seed nodes of a Redis Cluster (REDIS_CLUSTER_NODES): then `host`, `port` and `db` are unused. */
  cluster?: { host: string; port: number }[];
}

/** What a function process is configured with (runFunctionMain passes it to `build`). */
export interface FunctionConfig {
  redis: RedisOptions;
  queuePrefix: string;
  logLevel: LogLevel;
  metricsPort?: number;
}

export function redisOptionsFrom(
  env: Pick<RedisEnv, 'REDIS_URL' | 'REDIS_HOST' | 'REDIS_PORT'> & Partial<Pick<RedisEnv, 'REDIS_CLUSTER_NODES'>>,
): RedisOptions {
  if (env.REDIS_CLUSTER_NODES) {
    const cluster = parseClusterNodes(env.REDIS_CLUSTER_NODES);
    // A cluster has one database: credentials and TLS come from REDIS_URL, its host is not used.
    const single: Partial<RedisOptions> = env.REDIS_URL
      ? redisOptionsFrom({ ...env, REDIS_CLUSTER_NODES: undefined })
      : {};
    const { username, password, tls } = single;
    if (single.db)
      throw new ConfigError('REDIS_URL must name database 0 (or none) with REDIS_CLUSTER_NODES: a cluster has one');
    return {
      ...cluster[0],
      db: 0,
      cluster,
      ...(username ? { username } : {}),
      ...(password ? { password } : {}),
      ...(tls ? { tls } : {}),
    };
  }
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

/** `host:port,host:port` (REDIS_CLUSTER_NODES) as ioredis Cluster seed nodes. */
export function parseClusterNodes(value: string): { host: string; port: number }[] {
  return value
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean)
    .map((entry) => {
      const at = entry.lastIndexOf(':');
      const port = Number(entry.slice(at + 1));
      if (at <= 0 || !Number.isInteger(port) || port < 1 || port > 65535)
        throw new ConfigError(`REDIS_CLUSTER_NODES: '${entry}' is not host:port`);
      return { host: entry.slice(0, at), port };
    });
}

export function toFunctionConfig(env: RedisEnv): FunctionConfig {
  return {
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
