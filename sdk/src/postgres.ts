import type { EventEmitter } from 'node:events';
import { z } from 'zod';
import { parseEnv } from './config';

/**
 * For functions that keep data of their own in PostgreSQL (the runtime never opens a connection:
 * workflow state is the coordinator's). The function depends on `pg` itself and passes its `Pool`
 * class in, so the SDK carries no database driver:
 *
 *   import pg from 'pg';
 *   const pool = createPostgresPool(pg.Pool, { applicationName: 'fn.fetch-orders', max: 2 });
 *
 * It reads DATABASE_URL (required), DATABASE_POOL_MAX (overrides `max`; the chart sets it) and the
 * session bounds BATON_PG_STATEMENT_TIMEOUT_MS, BATON_PG_LOCK_TIMEOUT_MS, BATON_PG_IDLE_TX_TIMEOUT_MS
 * (30 s, 10 s, 30 s; 0 turns one off): no statement, lock wait or abandoned transaction lasts for ever.
 */
export interface PostgresPoolConfig {
  connectionString: string;
  max: number;
  application_name: string;
  connectionTimeoutMillis: number;
  idleTimeoutMillis: number;
  statement_timeout: number;
  lock_timeout: number;
  idle_in_transaction_session_timeout: number;
  keepAlive: boolean;
  keepAliveInitialDelayMillis: number;
}

const postgresEnv = z.object({
  DATABASE_URL: z.string().url(),
  DATABASE_POOL_MAX: z.coerce.number().int().min(1).max(1000).optional(),
  BATON_PG_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(0).default(30_000),
  BATON_PG_LOCK_TIMEOUT_MS: z.coerce.number().int().min(0).default(10_000),
  BATON_PG_IDLE_TX_TIMEOUT_MS: z.coerce.number().int().min(0).default(30_000),
});

/** The pool settings from the environment; throws ConfigError (one line, exit 1 in `build`) when DATABASE_URL is missing or bad. */
export function postgresPoolConfig(
  opts: { applicationName: string; max?: number },
  env: NodeJS.ProcessEnv = process.env,
): PostgresPoolConfig {
  const parsed = parseEnv(postgresEnv, env);
  return {
    connectionString: parsed.DATABASE_URL,
    max: parsed.DATABASE_POOL_MAX ?? opts.max ?? 2,
    application_name: opts.applicationName,
    // Fail fast instead of hanging when PostgreSQL is down: the step's retry policy takes over.
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: parsed.BATON_PG_STATEMENT_TIMEOUT_MS,
    lock_timeout: parsed.BATON_PG_LOCK_TIMEOUT_MS,
    idle_in_transaction_session_timeout: parsed.BATON_PG_IDLE_TX_TIMEOUT_MS,
    // A peer that vanished without a FIN is noticed by TCP keepalives instead of waited for.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  };
}

/**
 * `new Pool(postgresPoolConfig(opts))`, with the error listeners a long-lived process needs: an idle
 * client losing its connection (a server restart) and a checked-out client whose backend is
 * terminated between two queries must not crash the process; the pool drops them and the next query
 * opens a new connection.
 */
export function createPostgresPool<P>(
  Pool: new (config: PostgresPoolConfig) => P,
  opts: { applicationName: string; max?: number },
  env: NodeJS.ProcessEnv = process.env,
): P {
  const pool = new Pool(postgresPoolConfig(opts, env));
  const emitter = pool as unknown as EventEmitter;
  emitter.on('error', () => undefined);
  emitter.on('connect', (client: EventEmitter) => client.on('error', () => undefined));
  return pool;
}
