import pg from 'pg';
import { DEFAULT_PG_LIMITS, type DatabaseSettings } from '../config';

// BIGINT (row ids, counts) as JS numbers: none of Baton's values come near 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

export interface PoolOptions {
  /** The component's default pool size; `database.poolMax` (DATABASE_POOL_MAX) overrides it. */
  max?: number;
  applicationName?: string;
  database?: DatabaseSettings;
}

export function createPool(databaseUrl: string, opts: PoolOptions = {}): pg.Pool {
  const limits = { ...DEFAULT_PG_LIMITS, ...opts.database };
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: opts.database?.poolMax ?? opts.max ?? 10,
    application_name: opts.applicationName ?? 'baton',
    // Fail fast instead of hanging when PostgreSQL is down: callers retry or report not-ready.
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
    // Session bounds (config.ts, PgSessionLimits), sent as startup parameters: no statement, lock
    // wait or abandoned transaction lasts for ever, so a frozen process cannot freeze its runs.
    statement_timeout: limits.statementTimeoutMs,
    lock_timeout: limits.lockTimeoutMs,
    idle_in_transaction_session_timeout: limits.idleInTransactionTimeoutMs,
    // A peer that vanished without a FIN (a node lost, a partition) is noticed by TCP keepalives
    // instead of a socket that waits for ever.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    // Named statements keep their parse, but are planned on every execution: a generic plan cached
    // while a fresh database's tables were nearly empty kept scanning them whole once they had grown
    // (measured: 10 ms per coordinator batch of one after 10 000 steps; docs/PERFORMANCE.md).
    options: '-c plan_cache_mode=force_custom_plan',
  });
  // Behind a transaction-mode pooler each transaction may land on another server connection, where a
  // statement this client prepared under a name does not exist (or one of that name does, from
  // another client): the stores' named statements are sent unnamed instead (parsed every time).
  if (opts.database?.namedStatements === false) pool.on('connect', unnameStatements);
  // An idle client losing its connection (server restart, pg_terminate_backend) must not crash the
  // process; the pool drops it and the next query opens a new one.
  pool.on('error', () => undefined);
  // A checked-out client has no pool listener: one whose backend is terminated between two queries
  // of a transaction would emit an unhandled 'error' and kill the process. Its next query fails
  // instead, and the pool drops it on release.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/** Drops `name` from every query config the client sends, keeping text, values and row mode. */
function unnameStatements(client: pg.PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const [config, ...rest] = args;
    if (config && typeof config === 'object' && 'name' in config) {
      const { name: _name, ...unnamed } = config as { name?: string };
      return query(unnamed, ...rest);
    }
    return query(...args);
  };
}

/** Runs `fn` in a transaction, rolling back on any error. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * Sends the queries `send` issues on `client` back to back, without waiting for each answer (pg's
 * pipeline mode, on for this call only): one round trip instead of one per query. PostgreSQL runs
 * them in order, each with its own Sync, so their meaning is what it would be one by one; inside a
 * transaction a failed query aborts it and the ones behind it fail too (a COMMIT behind it answers
 * ROLLBACK). Waits for every answer, then throws the first failure.
 *
 * `client` must be checked out and idle (nothing in flight), as a transaction's client is between
 * its statements.
 */
export async function pipelined<T extends readonly unknown[]>(
  client: pg.PoolClient,
  send: () => { [K in keyof T]: Promise<T[K]> },
): Promise<T> {
  const mode = client as unknown as { pipeline?: boolean; connection?: { stream?: Partial<CorkableStream> } };
  const was = mode.pipeline ?? false;
  mode.pipeline = true;
  // pg writes each query as it is sent (a syscall each); corked, they leave in one write. On this
  // 2-core VM a write to PostgreSQL's socket cost 0.1–0.4 ms of the coordinator's CPU (profile,
  // docs/PERFORMANCE.md), and a batch sent three and two.
  const stream = mode.connection?.stream;
  const corkable = typeof stream?.cork === 'function' && typeof stream.uncork === 'function';
  if (corkable) stream.cork!();
  let sent: { [K in keyof T]: Promise<T[K]> };
  try {
    sent = send();
  } catch (err) {
    mode.pipeline = was;
    throw err;
  } finally {
    if (corkable) stream.uncork!();
  }
  // Back off only once every answer is in: pg matches answers to the queries sent in pipeline mode
  // only while it is on.
  try {
    const settled = await Promise.allSettled(sent as readonly Promise<unknown>[]);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as unknown as T;
  } finally {
    mode.pipeline = was;
  }
}

/** The part of a socket `pipelined` uses to send its queries in one write. */
interface CorkableStream {
  cork(): void;
  uncork(): void;
}

/**
 * A transaction whose `fn` sends BEGIN and COMMIT itself, each pipelined with a statement of its own
 * (`pipelined`): two round trips fewer than withTransaction. Anything `fn` throws rolls it back.
 */
export async function withOwnTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await fn(client);
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
