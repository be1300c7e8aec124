import { createLogger, createPool, defineFunction, saveDefinition, type Pool } from '@baton/engine';
import { z } from 'zod';
import { Coordinator } from '../../services/coordinator/src';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';
import { startEngine, type Engine } from '../support/engine';

/**
 * Issue #12, defect 6: PostgreSQL sessions had no statement, lock or idle-in-transaction bounds, so a
 * coordinator frozen inside a transaction (SIGSTOP, a partition) held its runs' row locks for ever and
 * every other coordinator waiting for them froze too. Baton's pools now bound every session
 * (engine/src/db/pool.ts, BATON_PG_* settings).
 */
const noop = defineFunction({
  name: 'bounds-noop',
  input: z.object({}).passthrough(),
  handler: async () => ({ ok: true }),
});

describe('PostgreSQL session bounds', () => {
  let env: TestEnv;
  let engine: Engine;
  let frozen: Pool;

  beforeAll(async () => {
    env = await createTestEnv('session-bounds');
    await saveDefinition(env.pool, {
      name: 'bounds',
      steps: [{ id: 'only', function: 'bounds-noop' }],
    });
    engine = await startEngine(env, [noop]);
  });

  afterAll(async () => {
    await engine.close();
    await frozen?.end().catch(() => undefined);
    await env.cleanup();
  });

  it('a transaction abandoned while holding a run lock is ended by the server, and another coordinator then advances the run', async () => {
    // A "coordinator" that froze mid-transaction: Baton's own pool, with short bounds so the test
    // does not wait 30 s, holding the run's row lock and sending nothing more.
    frozen = createPool(env.databaseUrl, {
      max: 1,
      applicationName: 'frozen-coordinator',
      database: { statementTimeoutMs: 0, lockTimeoutMs: 1_000, idleInTransactionTimeoutMs: 1_500 },
    });
    const runId = await engine.start('bounds', {});
    const holder = await frozen.connect();
    await holder.query('BEGIN');
    await holder.query('SELECT id FROM runs WHERE id = $1 FOR UPDATE', [runId]);

    // The live coordinator, with the same short lock bound: its attempts fail fast while the lock is
    // held (instead of blocking) and succeed once the server has ended the frozen session.
    const live = new Coordinator({
      pool: createPool(env.databaseUrl, {
        max: 2,
        applicationName: 'live-coordinator',
        database: { statementTimeoutMs: 0, lockTimeoutMs: 500, idleInTransactionTimeoutMs: 1_500 },
      }),
      queues: env.queues,
      logger: createLogger('test', 'silent'),
    });
    let lockTimeouts = 0;
    try {
      await waitFor(
        async () => {
          try {
            await live.advance(runId);
            return true;
          } catch (err) {
            if ((err as { code?: string }).code === '55P03') lockTimeouts += 1;
            throw err;
          }
        },
        20_000,
        'the live coordinator to take the run lock',
      );
    } finally {
      await live.close();
    }
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('succeeded');
    // The wait was bounded by lock_timeout (55P03), not an indefinite block.
    expect(lockTimeouts).toBeGreaterThan(0);
    // The frozen session was ended by the server (25P03 idle_in_transaction_session_timeout).
    await expect(holder.query('SELECT 1')).rejects.toThrow();
    holder.release(true);
  });

  it('a statement that runs longer than the statement bound is cancelled (57014)', async () => {
    const bounded = createPool(env.databaseUrl, {
      max: 1,
      database: { statementTimeoutMs: 300, lockTimeoutMs: 0, idleInTransactionTimeoutMs: 0 },
    });
    try {
      await expect(bounded.query('SELECT pg_sleep(5)')).rejects.toMatchObject({ code: '57014' });
    } finally {
      await bounded.end();
    }
  });
});
