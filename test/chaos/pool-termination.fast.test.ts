import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createPool, withTransaction } from '@baton/engine';

/**
 * Found by the chaos suite ("PostgreSQL connections terminated"): a pool client that is checked out
 * — inside a transaction, between two queries — when its backend is terminated emitted 'error' with
 * no listener, and the coordinator process died (57P01 admin_shutdown). The pool must absorb it:
 * the transaction fails, the dead client is dropped, the next query gets a fresh connection.
 */
const SERVER_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

describe('a terminated PostgreSQL connection', () => {
  const pool = createPool(withDatabase(SERVER_URL, 'postgres'), { max: 2, applicationName: 'chaos-pool-test' });
  afterAll(() => pool.end());

  it('between two queries of a transaction fails that transaction, not the process', async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    try {
      const admin = new pg.Client({ connectionString: withDatabase(SERVER_URL, 'postgres') });
      await admin.connect();
      const outcome = withTransaction(pool, async (client) => {
        const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        // No query in flight while the backend goes away: the client itself gets the error.
        await admin.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
        await admin.end();
        await sleep(300);
        await client.query('SELECT 1');
      });
      await expect(outcome).rejects.toThrow();
      expect(uncaught).toEqual([]);
      // The pool replaced the dead client.
      await expect(pool.query('SELECT 1 AS ok')).resolves.toMatchObject({ rows: [{ ok: 1 }] });
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });
});
