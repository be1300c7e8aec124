import path from 'node:path';
import {
  DEFAULT_PG_LIMITS,
  createPool,
  deleteKeysWithPrefix,
  loadDefinitionsFromDir,
  saveDefinition,
  type Pool,
} from '@baton/engine';
import pg from 'pg';
import { createPostgresPool } from '@baton/sdk';
import { startEngine, type Engine } from '../support/engine';
import * as scenarios from '../support/engine-scenarios';
import { createTestEnv, waitFor, withDatabase, type TestEnv } from '../support/env';
import { startPgBouncer, type PgBouncer } from '../support/pgbouncer';

/**
 * Issue #17: PgBouncer (Debian's 1.18) in TRANSACTION pooling mode between every component and
 * PostgreSQL. A private pgbouncer per suite (test/support/pgbouncer.ts), `default_pool_size` 3, so the
 * coordinator, reconciler, function pools and the test's own queries share three server connections
 * transaction by transaction. Migrations go to the server directly (BATON_MIGRATION_DATABASE_URL's
 * role); everything else goes through the pooler with `namedStatements: false`.
 */

type PoolRow = { database: string; pool_mode: string; sv_active: number; sv_idle: number; sv_used: number };

const serversOf = (row: PoolRow) => Number(row.sv_active) + Number(row.sv_idle) + Number(row.sv_used);

describe('PgBouncer 1.18 in transaction mode: the pooler itself', () => {
  let pooler: PgBouncer;
  let env: TestEnv;
  const pools: Pool[] = [];

  beforeAll(async () => {
    // One server connection: every transaction of every client runs on it, so session state left by
    // one client is seen by the next.
    pooler = await startPgBouncer({ poolSize: 1 });
    env = await createTestEnv('pgbouncer_one', { pooler });
  });

  afterAll(async () => {
    await Promise.all(pools.map((p) => p.end()));
    await env?.cleanup();
    await pooler?.stop();
  });

  const database = () => new URL(env.databaseUrl).pathname.slice(1);
  const pool = (namedStatements: boolean) => {
    const p = createPool(env.databaseUrl, {
      max: 1,
      applicationName: 'test-pgbouncer',
      database: { ...DEFAULT_PG_LIMITS, namedStatements },
    });
    pools.push(p);
    return p;
  };
  const named = { name: 'baton.probe', text: 'SELECT $1::int AS n', values: [7] };

  it('is in transaction mode with the configured pool size, and shares its server connection', async () => {
    // Two clients, one backend.
    const [a, b] = [pool(false), pool(false)];
    const pids = await Promise.all(
      [a, b].map(async (p) => (await p.query('SELECT pg_backend_pid() AS pid')).rows[0].pid),
    );
    expect(pids[0]).toBe(pids[1]);
    // The database's pool exists once a client has used it.
    const rows = await pooler.admin<PoolRow>('SHOW POOLS');
    expect(rows.find((r) => r.database === database())).toMatchObject({ pool_mode: 'transaction' });
    const config = await pooler.admin<{ key: string; value: string }>('SHOW CONFIG');
    expect(config.find((c) => c.key === 'pool_mode')?.value).toBe('transaction');
    expect(config.find((c) => c.key === 'default_pool_size')?.value).toBe('1');
  });

  it('breaks named prepared statements (the failure Baton avoids behind it)', async () => {
    const [a, b] = [pool(true), pool(true)];
    await expect(a.query(named)).resolves.toMatchObject({ rows: [{ n: 7 }] });
    // b believes it has not prepared `baton.probe` yet and sends Parse: the server connection a used
    // already holds a statement of that name.
    await expect(b.query(named)).rejects.toThrow(/prepared statement "baton.probe" already exists/);
  });

  it('passes the same statements sent unnamed (BATON_PG_NAMED_STATEMENTS=false)', async () => {
    const [a, b] = [pool(false), pool(false)];
    for (let i = 0; i < 3; i += 1) {
      await expect(a.query(named)).resolves.toMatchObject({ rows: [{ n: 7 }] });
      await expect(b.query(named)).resolves.toMatchObject({ rows: [{ n: 7 }] });
    }
  });

  it("serves a function's own pool (the SDK's createPostgresPool, startup parameters and all)", async () => {
    const fnPool = createPostgresPool(
      pg.Pool,
      { applicationName: 'fn.pgbouncer-test' },
      {
        DATABASE_URL: env.databaseUrl,
      },
    );
    try {
      const { rows } = await fnPool.query(
        "SELECT count(*)::int AS n, current_setting('lock_timeout') AS lt FROM customers",
      );
      expect(rows).toEqual([{ n: 5, lt: '10s' }]);
    } finally {
      await fnPool.end();
    }
  });

  it('keeps the session bounds: the pooler drops startup parameters, its connect_query sets them', async () => {
    const { rows } = await env.pool.query(
      "SELECT current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt, current_setting('idle_in_transaction_session_timeout') AS it",
    );
    expect(rows[0]).toEqual({ st: '30s', lt: '10s', it: '30s' });
  });
});

// --- The engine through a pooler of three server connections ---

const fns = scenarios.scenarioFunctions();

describe('the engine through PgBouncer in transaction mode (default_pool_size 3)', () => {
  let pooler: PgBouncer;
  let env: TestEnv;
  let engine: Engine;
  let mail: scenarios.InvoiceMail;

  beforeAll(async () => {
    pooler = await startPgBouncer({ poolSize: 3 });
    env = await createTestEnv('pgbouncer', { pooler });
    await loadDefinitionsFromDir(env.pool, path.join(__dirname, '../../workflows'));
    await scenarios.saveScenarioWorkflows(env.pool);
    mail = await scenarios.startInvoiceMail({ refuse: ['edsger@example.com'] });
    engine = await startEngine(env, [...scenarios.invoiceFunctions(env.pool, mail.transport), ...fns.all]);
  });

  afterAll(async () => {
    await engine?.close();
    await mail?.close();
    await env?.cleanup();
    await pooler?.stop();
  });

  it('runs the invoice workflow end to end', async () => {
    await scenarios.expectInvoiceEndToEnd(env, engine, mail.smtp);
  });

  it('voids the invoice when the e-mail is refused for good (compensation of a real function)', async () => {
    const run = await engine.waitForRun(await engine.start('invoice', { customerId: 'cust-05' }));
    expect(run.status).toBe('compensated');
    const invoice = await env.pool.query('SELECT status FROM invoices WHERE run_id = $1', [run.id]);
    expect(invoice.rows).toEqual([{ status: 'void' }]);
  });

  it('runs a DAG: a fork, two parallel steps and a join', async () => {
    await scenarios.expectDiamonds(engine, env, [{ tag: 'pgb', x: 5 }]);
  });

  it('retries a failing step and records every attempt', async () => {
    await scenarios.expectRetriedToSuccess(engine, env, fns, 'pgb');
  });

  it('compensates the done step when a later one fails for good', async () => {
    await scenarios.expectCompensated(engine, env, fns, { permanent: false });
  });

  it('finishes every run after the Redis keys are wiped mid-run (reconciler), each step once', async () => {
    await scenarios.expectRunsFinishAfterWipe(engine, env, fns, () =>
      deleteKeysWithPrefix(env.redis, env.config.queuePrefix),
    );
  });

  it('starts scheduled runs, one per tick', async () => {
    await saveDefinition(env.pool, {
      name: 'ticker',
      triggers: [{ schedule: { cron: '* * * * * *', input: { x: 1 } } }],
      steps: [{ id: 'tick', function: 'record', input: { tag: 'tick' } }],
    });
    // The reconciler (every 250 ms here) brings the coordinator's job schedulers in step.
    const ticked = await waitFor(
      async () => {
        const { rows } = await env.pool.query<{ idempotency_key: string }>(
          "SELECT idempotency_key FROM runs WHERE workflow_name = 'ticker' AND status = 'succeeded'",
        );
        return rows.length >= 2 ? rows : undefined;
      },
      60_000,
      'two scheduled runs',
    );
    expect(new Set(ticked.map((r) => r.idempotency_key)).size).toBe(ticked.length);
    // Stop ticking: the next version has no trigger.
    await saveDefinition(env.pool, {
      name: 'ticker',
      steps: [{ id: 'tick', function: 'record', input: { tag: 'tick' } }],
    });
  });

  it('multiplexed every client over at most three server connections', async () => {
    const database = new URL(env.databaseUrl).pathname.slice(1);
    const clients = await pooler.admin<{ database: string }>('SHOW CLIENTS');
    const servers = await pooler.admin<{ database: string }>('SHOW SERVERS');
    const row = (await pooler.admin<PoolRow>('SHOW POOLS')).find((r) => r.database === database)!;
    expect(row.pool_mode).toBe('transaction');
    expect(servers.filter((s) => s.database === database).length).toBeLessThanOrEqual(3);
    expect(serversOf(row)).toBeLessThanOrEqual(3);
    expect(clients.filter((c) => c.database === database).length).toBeGreaterThan(3);
    // The pooled URL really is the pooler's, not the server's.
    expect(env.databaseUrl).not.toBe(env.directDatabaseUrl);
    expect(withDatabase(env.directDatabaseUrl, 'postgres')).not.toContain(`:${pooler.port}/`);
  });
});
