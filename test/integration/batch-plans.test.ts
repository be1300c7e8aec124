import crypto from 'node:crypto';
import { lockAndRecord, loadExecutionsOf, RunWrites } from '../../services/coordinator/src/run-store';
import { createPool, type PoolClient } from '@baton/engine';
import { createTestEnv, type TestEnv } from '../support/env';

/** Sequential scans so far of the tables the coordinator's batch statements read, by table. */
async function seqScansIn(env: TestEnv): Promise<Record<string, number>> {
  const client = await env.pool.connect();
  try {
    // A fresh read of the statistics, not the snapshot this backend took at its first look.
    await client.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await client.query(
      `SELECT relname, seq_scan FROM pg_stat_user_tables WHERE relname IN ('runs', 'step_executions', 'step_attempts')`,
    );
    return Object.fromEntries(rows.map((r) => [r.relname, Number(r.seq_scan)]));
  } finally {
    client.release();
  }
}

/**
 * The coordinator's bulk statements must find their rows through indexes once the tables are big:
 * a batch that scans step_executions whole gets slower with every step ever run. PostgreSQL plans a
 * join with jsonb_to_recordset() as a hash join over a sequential scan unless the statement also
 * gives the keys as an array (run-store.ts). Counted with pg_stat_user_tables.seq_scan.
 */
describe('coordinator batch statements on grown tables', () => {
  let env: TestEnv;
  const runId = crypto.randomUUID();
  const queuedId = crypto.randomUUID();
  const runningId = crypto.randomUUID();

  beforeAll(async () => {
    env = await createTestEnv('batch-plans');
    // One connection, whose statistics are published before the test reads them.
    const setup = await env.pool.connect();
    try {
      await setup.query(
        `INSERT INTO workflow_definitions (name, version, spec, spec_hash) VALUES ('plans', 1, '{"steps":[]}', 'x')`,
      );
      // 4 000 finished runs of 3 steps each, then the run the batch is about.
      await setup.query(`
        INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger)
        SELECT gen_random_uuid(), 'plans', 1, 'succeeded', '{}', '{}' FROM generate_series(1, 4000)`);
      await setup.query(`
        INSERT INTO step_executions (id, run_id, step_id, kind, function_name, status, max_attempts, retry_policy)
        SELECT gen_random_uuid(), r.id, 's' || g, 'action', 'f', 'succeeded', 1, '{}'
          FROM runs r, generate_series(1, 3) g`);
      await setup.query(
        `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger)
         VALUES ($1, 'plans', 1, 'running', '{}', '{}')`,
        [runId],
      );
      await setup.query(
        `INSERT INTO step_executions (id, run_id, step_id, kind, function_name, status, max_attempts, retry_policy)
         VALUES ($2, $1, 'a', 'action', 'f', 'queued', 1, '{}'), ($3, $1, 'b', 'action', 'f', 'running', 1, '{}')`,
        [runId, queuedId, runningId],
      );
      await setup.query('ANALYZE runs, step_executions, step_attempts');
      await setup.query('SELECT pg_stat_force_next_flush()');
    } finally {
      setup.release();
    }
  });

  afterAll(async () => {
    await env?.cleanup();
  });

  const seqScans = () => seqScansIn(env);

  it('sees a sequential scan when one happens (the counter this suite relies on works here)', async () => {
    const before = await seqScans();
    const client = await env.pool.connect();
    try {
      await client.query('BEGIN');
      // A filter no index serves, with index paths off: PostgreSQL must read step_executions whole.
      await client.query('SET LOCAL enable_indexscan = off');
      await client.query('SET LOCAL enable_indexonlyscan = off');
      await client.query('SET LOCAL enable_bitmapscan = off');
      const { rows } = await client.query(`SELECT count(*)::int AS n FROM step_executions WHERE function_name = 'f'`);
      expect(rows[0].n).toBeGreaterThan(12_000);
      await client.query('SELECT pg_stat_force_next_flush()');
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const after = await seqScans();
    expect(after.step_executions - before.step_executions).toBe(1);
    expect(after.runs).toBe(before.runs);
  });

  it('locks, records, loads and writes a batch without scanning runs or step_executions', async () => {
    const before = await seqScans();
    const client = await env.pool.connect();
    try {
      await client.query('BEGIN');
      const at = new Date().toISOString();
      const { runs, recorded } = await lockAndRecord(
        client,
        [runId],
        [{ type: 'step.succeeded', runId, stepExecutionId: queuedId, attempt: 1, workerId: 'w', at, output: 1 }],
      );
      expect([...runs.keys()]).toEqual([runId]);
      expect([...recorded.keys()]).toEqual([queuedId]);
      const executions = await loadExecutionsOf(client, [runId]);
      expect(
        executions
          .get(runId)
          ?.map((e) => e.status)
          .sort(),
      ).toEqual(['running', 'succeeded']);
      const writes = new RunWrites();
      writes.cancel([runningId], 'test');
      writes.insertExecutions(runId, [
        {
          id: crypto.randomUUID(),
          stepId: 'c',
          kind: 'compensation',
          function: 'f',
          input: null,
          retry: { attempts: 1 } as never,
        },
      ]);
      writes.changeRun(runId, { status: 'compensating', terminal: false });
      await writes.flush(client);
      // Publish this backend's counters now rather than up to a second later.
      await client.query('SELECT pg_stat_force_next_flush()');
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const after = await seqScans();
    expect(after).toEqual(before);
    // The writes happened: the running step was cancelled, the run is compensating.
    const { rows } = await env.pool.query(
      `SELECT (SELECT status FROM runs WHERE id = $1) AS run, (SELECT status FROM step_executions WHERE id = $2) AS step`,
      [runId, runningId],
    );
    expect(rows[0]).toEqual({ run: 'compensating', step: 'cancelled' });
  });
  it('writes a batch that only starts the next steps with one INSERT, no statement of the other kinds', async () => {
    // PostgreSQL plans every part of a statement at each execution (custom plans), so the usual batch
    // of a workflow in progress must not pay for the cancel, compensation, skip and run-update parts it
    // does not use (run-store.ts, RunWrites.flush). A connection of its own to the server itself
    // (never a pooler's), whose prepared statements are only this batch's.
    const pool = createPool(env.directDatabaseUrl, { max: 1 });
    const client = await pool.connect();
    const nextId = crypto.randomUUID();
    try {
      await client.query('BEGIN');
      const writes = new RunWrites();
      writes.insertExecutions(runId, [
        { id: nextId, stepId: 'next', kind: 'action', function: 'f', input: { n: 1 }, retry: { attempts: 2 } as never },
      ]);
      await writes.flush(client, { commit: true });
      const { rows } = await client.query<{ name: string }>(
        `SELECT name FROM pg_prepared_statements WHERE name LIKE 'baton.%' ORDER BY name`,
      );
      expect(rows.map((r) => r.name)).toEqual(['baton.insert_executions']);
    } finally {
      client.release();
      await pool.end();
    }
    const { rows } = await env.pool.query('SELECT status, input, max_attempts FROM step_executions WHERE id = $1', [
      nextId,
    ]);
    expect(rows).toEqual([{ status: 'queued', input: { n: 1 }, max_attempts: 2 }]);
  });
});

/**
 * A named statement PostgreSQL has run five times may get a generic plan, made once for any
 * parameters. Made while a fresh database's tables were empty, the coordinator's write statement's
 * generic plan scans runs and step_executions whole, and keeps doing so as they grow until an
 * ANALYZE invalidates it (seen with plan_cache_mode=auto: one sequential scan of each per batch).
 * So connections plan per execution (engine/src/db/pool.ts). Autovacuum is off for these tables
 * here: what a connection cached is what runs.
 */
describe('coordinator batch statements with plans cached while the tables were empty', () => {
  let env: TestEnv;

  beforeAll(async () => {
    env = await createTestEnv('batch-generic-plans');
    await env.pool.query(`ALTER TABLE runs SET (autovacuum_enabled = false)`);
    await env.pool.query(`ALTER TABLE step_executions SET (autovacuum_enabled = false)`);
    await env.pool.query(`ALTER TABLE step_attempts SET (autovacuum_enabled = false)`);
    await env.pool.query(
      `INSERT INTO workflow_definitions (name, version, spec, spec_hash) VALUES ('plans', 1, '{"steps":[]}', 'x')`,
    );
  });

  afterAll(async () => {
    await env?.cleanup();
  });

  type TestRun = { runId: string; queuedId: string; runningId: string };

  /** A running run with a queued and a running step, on `client`'s connection. */
  async function newRun(client: PoolClient): Promise<TestRun> {
    const ids = { runId: crypto.randomUUID(), queuedId: crypto.randomUUID(), runningId: crypto.randomUUID() };
    await client.query(
      `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger) VALUES ($1, 'plans', 1, 'running', '{}', '{}')`,
      [ids.runId],
    );
    await client.query(
      `INSERT INTO step_executions (id, run_id, step_id, kind, function_name, status, max_attempts, retry_policy)
       VALUES ($2, $1, 'a', 'action', 'f', 'queued', 1, '{}'), ($3, $1, 'b', 'action', 'f', 'running', 1, '{}')`,
      [ids.runId, ids.queuedId, ids.runningId],
    );
    return ids;
  }

  /** One coordinator batch for `run` on `client`: BEGIN, lock and record a success, load, write, COMMIT. */
  async function batch(client: PoolClient, { runId, queuedId, runningId }: TestRun): Promise<void> {
    const at = new Date().toISOString();
    const { recorded } = await lockAndRecord(
      client,
      [runId],
      [{ type: 'step.succeeded', runId, stepExecutionId: queuedId, attempt: 1, workerId: 'w', at, output: 1 }],
      { begin: true },
    );
    expect([...recorded.keys()]).toEqual([queuedId]);
    await loadExecutionsOf(client, [runId]);
    const writes = new RunWrites();
    writes.cancel([runningId], 'test');
    writes.changeRun(runId, { status: 'succeeded', terminal: true });
    await writes.flush(client);
    await client.query('SELECT pg_stat_force_next_flush()');
    await client.query('COMMIT');
  }

  /** How many times each of the client's named statements has run (generic and custom plans). */
  async function executions(client: PoolClient): Promise<Record<string, number>> {
    const { rows } = await client.query<{ name: string; n: number }>(
      `SELECT name, generic_plans + custom_plans AS n FROM pg_prepared_statements WHERE name LIKE 'baton.%'`,
    );
    return Object.fromEntries(rows.map((r) => [r.name, Number(r.n)]));
  }

  const seqScans = () => seqScansIn(env);

  /**
   * `runs` finished runs of 3 steps each, with no ANALYZE after them. The inserts' own scans are
   * counted before they return (a backend reports its counters at most once a second unless told).
   */
  async function finishedRuns(runs: number): Promise<void> {
    const client = await env.pool.connect();
    try {
      await client.query(
        `WITH r AS (
           INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger)
           SELECT gen_random_uuid(), 'plans', 1, 'succeeded', '{}', '{}' FROM generate_series(1, $1::int)
           RETURNING id)
         INSERT INTO step_executions (id, run_id, step_id, kind, function_name, status, max_attempts, retry_policy)
         SELECT gen_random_uuid(), r.id, 's' || g, 'action', 'f', 'succeeded', 1, '{}' FROM r, generate_series(1, 3) g`,
        [runs],
      );
      await client.query('SELECT pg_stat_force_next_flush()');
      await client.query('SELECT 1');
    } finally {
      client.release();
    }
  }

  it('keeps finding rows by index after eight batches on empty tables and growth without ANALYZE', async () => {
    const client = await env.pool.connect();
    try {
      for (let i = 0; i < 8; i++) await batch(client, await newRun(client));
      // Every batch statement has run eight times on this connection: enough for PostgreSQL to
      // switch a named statement to a generic plan, were it allowed to.
      expect(await executions(client)).toEqual(
        expect.objectContaining({
          'baton.lock_and_record': 8,
          'baton.load_executions': 8,
          'baton.cancel_executions': 8,
          'baton.update_runs': 8,
        }),
      );

      // 4 000 finished runs of 3 steps each arrive, with no ANALYZE after them.
      await finishedRuns(4_000);

      const run = await newRun(client);
      const before = await seqScans();
      await batch(client, run);
      const after = await seqScans();
      expect(after).toEqual(before);
    } finally {
      client.release();
    }
  });
});
