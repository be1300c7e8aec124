import { defineFunction, pipelined, saveDefinition, type Pool, type PoolClient } from '@baton/engine';
import { z } from 'zod';
import { createTestEnv, type TestEnv } from '../support/env';
import { startEngine, type Engine } from '../support/engine';

/**
 * What a coordinator batch costs PostgreSQL: the statements each transaction sends and the round
 * trips they take (a statement sent while another of the same client is still unanswered shares its
 * round trip). Counted by wrapping the clients the pool hands out, on the real engine.
 */

interface Transaction {
  statements: string[];
  roundTrips: number;
}

/** Wraps every client `pool` hands out; returns the transactions they ran, BEGIN to COMMIT/ROLLBACK. */
function countTransactions(pool: Pool): Transaction[] {
  const done: Transaction[] = [];
  const connect = pool.connect.bind(pool) as (...args: unknown[]) => Promise<PoolClient>;
  (pool as unknown as { connect: (...args: unknown[]) => unknown }).connect = (...args: unknown[]) =>
    // pool.query checks clients out with a callback: not a transaction, left as it is.
    args.length ? connect(...args) : connect().then(wrap);
  const wrap = (client: PoolClient): PoolClient => {
    const wrapped = client as PoolClient & { __counted?: boolean };
    if (wrapped.__counted) return client;
    wrapped.__counted = true;
    const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
    let current: Transaction | undefined;
    let pending = 0;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      if (typeof args[args.length - 1] === 'function') return query(...args);
      const config = args[0] as string | { name?: string; text: string };
      const text = typeof config === 'string' ? config : (config.name ?? config.text);
      const label = text.trim().split(/\s+/).slice(0, 3).join(' ');
      if (label === 'BEGIN') current = { statements: [], roundTrips: 0 };
      const tx = current;
      if (tx) {
        tx.statements.push(label);
        if (pending === 0) tx.roundTrips += 1;
      }
      if (label === 'COMMIT' || label === 'ROLLBACK') {
        if (tx) done.push(tx);
        current = undefined;
      }
      pending += 1;
      const settled = () => {
        pending -= 1;
      };
      const result = query(...args);
      result.then(settled, settled);
      return result;
    };
    return client;
  };
  return done;
}

const noop = defineFunction({
  name: 'noop-step',
  input: z.object({ n: z.number() }),
  handler: async ({ n }) => ({ n: n + 1 }),
});

describe('coordinator batch: statements and round trips', () => {
  let env: TestEnv;
  let engine: Engine;
  let transactions: Transaction[];

  beforeAll(async () => {
    env = await createTestEnv('batch-round-trips');
    transactions = countTransactions(env.pool);
    // Counts the UPDATEs of each run (this suite's database only).
    await env.pool.query(`
      CREATE TABLE test_run_updates (run_id uuid NOT NULL, status text NOT NULL);
      CREATE FUNCTION test_count_run_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO test_run_updates VALUES (NEW.id, NEW.status); RETURN NEW; END $$;
      CREATE TRIGGER test_run_updates AFTER UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION test_count_run_update();`);
    await saveDefinition(env.pool, {
      name: 'chain4',
      steps: [
        { id: 's1', function: 'noop-step', input: { n: 0 } },
        { id: 's2', function: 'noop-step', input: { n: '{{ steps.s1.output.n }}' } },
        { id: 's3', function: 'noop-step', input: { n: '{{ steps.s2.output.n }}' } },
        { id: 's4', function: 'noop-step', input: { n: '{{ steps.s3.output.n }}' } },
      ],
    });
    engine = await startEngine(env, [noop]);
  });

  afterAll(async () => {
    await engine?.close();
    await env?.cleanup();
  });

  it('applies a batch of step reports in two round trips', async () => {
    const runIds = await Promise.all(Array.from({ length: 20 }, () => engine.start('chain4', {})));
    for (const id of runIds) expect((await engine.waitForRun(id)).status).toBe('succeeded');
    const batches = transactions.filter((t) => t.statements.includes('baton.lock_and_record'));
    const shapes = new Map<string, number>();
    for (const t of batches) {
      const shape = `${t.roundTrips} round trips: ${t.statements.join(' | ')}`;
      shapes.set(shape, (shapes.get(shape) ?? 0) + 1);
    }
    // Shown when the test fails or with --verbose: what each kind of batch sends.
    console.log([...shapes].map(([shape, n]) => `${n}× ${shape}`).join('\n'));
    expect(batches.length).toBeGreaterThan(0);
    for (const t of batches) {
      expect(t.roundTrips).toBeLessThanOrEqual(2);
      // One statement per kind of write at most (RunWrites.flush), never one per report or per run.
      expect(t.statements).toEqual([...new Set(t.statements)]);
    }
  });

  it('writes a run only when its status changes, not for each step report', async () => {
    const runId = await engine.start('chain4', {});
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('succeeded');
    expect(run.output.s4).toEqual({ n: 4 });
    const { rows } = await env.pool.query<{ status: string }>(
      'SELECT status FROM test_run_updates WHERE run_id = $1 ORDER BY ctid',
      [runId],
    );
    // Admitted (running), then finished: the three reports in between leave the row alone.
    expect(rows.map((r) => r.status)).toEqual(['running', 'succeeded']);
  });

  it('pipelined: a statement that fails aborts the transaction, the COMMIT behind it commits nothing', async () => {
    const client = await env.pool.connect();
    try {
      await client.query('CREATE TABLE test_pipelined (n int PRIMARY KEY)');
      await expect(
        pipelined(client, () => [
          client.query('BEGIN'),
          client.query('INSERT INTO test_pipelined VALUES (1)'),
          client.query('INSERT INTO test_pipelined VALUES (1)'),
          client.query('COMMIT'),
        ]),
      ).rejects.toThrow(/duplicate key/);
      // The client is back to one query at a time, outside any transaction, and nothing was kept.
      expect((client as unknown as { pipeline: boolean }).pipeline).toBe(false);
      const { rows } = await client.query('SELECT count(*)::int AS n FROM test_pipelined');
      expect(rows[0].n).toBe(0);
      const [, inserted, committed] = await pipelined(client, () => [
        client.query('BEGIN'),
        client.query('INSERT INTO test_pipelined VALUES (2) RETURNING n'),
        client.query('COMMIT'),
      ]);
      expect(inserted.rows).toEqual([{ n: 2 }]);
      expect(committed.command).toBe('COMMIT');
    } finally {
      client.release();
    }
  });

  it('pipelined: the queries of one call leave in one socket write', async () => {
    const client = await env.pool.connect();
    // Counted at the socket: each write(v) Node hands to the kernel, for this client only.
    const stream = (client as unknown as { connection: { stream: Record<string, (...args: unknown[]) => unknown> } })
      .connection.stream;
    const original = { _write: stream._write, _writev: stream._writev };
    let writes = 0;
    for (const name of ['_write', '_writev'] as const) {
      stream[name] = function (this: unknown, ...args: unknown[]) {
        writes += 1;
        return original[name].apply(this, args);
      };
    }
    try {
      await pipelined(client, () => [
        client.query('BEGIN'),
        client.query('SELECT 1 AS n'),
        client.query({ name: 'test.pipelined_write', text: 'SELECT $1::int AS n', values: [2] }),
        client.query('COMMIT'),
      ]);
      expect(writes).toBe(1);
    } finally {
      Object.assign(stream, original);
      client.release();
    }
  });
});
