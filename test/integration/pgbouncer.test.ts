import path from 'node:path';
import {
  DEFAULT_PG_LIMITS,
  createPool,
  defineFunction,
  deleteKeysWithPrefix,
  loadDefinitionsFromDir,
  saveDefinition,
  type Pool,
} from '@baton/shared';
import pg from 'pg';
import { createPostgresPool } from '@baton/sdk';
import nodemailer, { type Transporter } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';
import { z } from 'zod';
import { createCreateInvoice } from '../../functions/create-invoice/src/index';
import { createFetchOrders } from '../../functions/fetch-orders/src/index';
import { createGeneratePdf } from '../../functions/generate-pdf/src/index';
import { createSendEmail } from '../../functions/send-email/src/index';
import { createVoidInvoice } from '../../functions/void-invoice/src/index';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, waitFor, withDatabase, type TestEnv } from '../support/env';
import { startSmtp, type TestSmtp } from '../support/mail';
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

const calls: Record<string, number> = {};
const completions: string[] = [];

const flaky = defineFunction({
  name: 'flaky',
  input: z.object({ key: z.string(), failTimes: z.number().int() }),
  handler: async ({ key, failTimes }, ctx) => {
    calls[key] = (calls[key] ?? 0) + 1;
    if (ctx.attempt <= failTimes) throw new Error(`planned failure ${ctx.attempt}`);
    return { key, attempt: ctx.attempt };
  },
});

const record = defineFunction({
  name: 'record',
  input: z.object({ tag: z.string(), value: z.number().optional(), delayMs: z.number().optional() }),
  handler: async ({ tag, value, delayMs }, ctx) => {
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    completions.push(`${ctx.kind}:${tag}`);
    return { tag, value };
  },
});

const broken = defineFunction({
  name: 'broken',
  input: z.object({}).passthrough(),
  handler: async () => {
    throw new Error('still broken');
  },
});

const fast = { backoff: { delayMs: 20, maxDelayMs: 50, jitter: 0 } };

describe('the engine through PgBouncer in transaction mode (default_pool_size 3)', () => {
  let pooler: PgBouncer;
  let env: TestEnv;
  let engine: Engine;
  let smtp: TestSmtp;
  let transport: Transporter<SMTPTransport.SentMessageInfo>;

  beforeAll(async () => {
    pooler = await startPgBouncer({ poolSize: 3 });
    env = await createTestEnv('pgbouncer', { pooler });
    await loadDefinitionsFromDir(env.pool, path.join(__dirname, '../../workflows'));
    await saveDefinition(env.pool, {
      name: 'retrying',
      steps: [
        {
          id: 'only',
          function: 'flaky',
          input: { key: '{{ input.key }}', failTimes: 2 },
          retry: { attempts: 3, ...fast },
        },
      ],
    });
    await saveDefinition(env.pool, {
      name: 'diamond',
      steps: [
        { id: 'a', function: 'record', input: { tag: 'a', value: '{{ input.x }}' } },
        { id: 'b', function: 'record', needs: ['a'], input: { tag: 'b', value: '{{ steps.a.output.value * 2 }}' } },
        { id: 'c', function: 'record', needs: ['a'], input: { tag: 'c', value: '{{ steps.a.output.value * 3 }}' } },
        {
          id: 'd',
          function: 'record',
          needs: ['b', 'c'],
          input: { tag: 'd', value: '{{ steps.b.output.value + steps.c.output.value }}' },
        },
      ],
      output: '{{ steps.d.output.value }}',
    });
    await saveDefinition(env.pool, {
      name: 'saga',
      steps: [
        {
          id: 'one',
          function: 'record',
          input: { tag: 'one' },
          compensate: { function: 'record', input: { tag: 'undo-one' } },
        },
        { id: 'two', function: 'broken', needs: ['one'], retry: { attempts: 2, ...fast } },
      ],
    });
    await saveDefinition(env.pool, {
      name: 'slow-chain',
      steps: [
        { id: 's1', function: 'record', input: { tag: '{{ input.tag }}-1', delayMs: 150 } },
        { id: 's2', function: 'record', needs: ['s1'], input: { tag: '{{ input.tag }}-2', delayMs: 150 } },
        { id: 's3', function: 'record', needs: ['s2'], input: { tag: '{{ input.tag }}-3', delayMs: 150 } },
      ],
    });
    smtp = await startSmtp({ rejectRecipientsWith: 550, rejectOnly: ['edsger@example.com'] });
    transport = nodemailer.createTransport({ url: `smtp://127.0.0.1:${smtp.port}`, connectionTimeout: 5_000 });
    const { pool } = env;
    engine = await startEngine(env, [
      createFetchOrders({ pool }),
      createCreateInvoice({ pool }),
      createVoidInvoice({ pool }),
      createGeneratePdf({ pool }),
      createSendEmail({ pool, transport, from: 'Baton Invoices <invoices@baton.test>' }),
      flaky,
      record,
      broken,
    ]);
  });

  afterAll(async () => {
    await engine?.close();
    transport?.close();
    await smtp?.close();
    await env?.cleanup();
    await pooler?.stop();
  });

  it('runs the invoice workflow end to end', async () => {
    const run = await engine.waitForRun(await engine.start('invoice', { customerId: 'cust-01' }));
    expect(run.status).toBe('succeeded');
    const invoice = await env.pool.query('SELECT customer_id, status, total_cents FROM invoices WHERE run_id = $1', [
      run.id,
    ]);
    expect(invoice.rows).toEqual([{ customer_id: 'cust-01', status: 'issued', total_cents: 123598 }]);
    expect(smtp.received.some((m) => m.envelope.to.includes('ada@example.com'))).toBe(true);
  });

  it('voids the invoice when the e-mail is refused for good (compensation of a real function)', async () => {
    const run = await engine.waitForRun(await engine.start('invoice', { customerId: 'cust-05' }));
    expect(run.status).toBe('compensated');
    const invoice = await env.pool.query('SELECT status FROM invoices WHERE run_id = $1', [run.id]);
    expect(invoice.rows).toEqual([{ status: 'void' }]);
  });

  it('runs a DAG: a fork, two parallel steps and a join', async () => {
    const run = await engine.waitForRun(await engine.start('diamond', { x: 5 }));
    expect(run.status).toBe('succeeded');
    expect(run.output).toBe(25);
  });

  it('retries a failing step and records every attempt', async () => {
    const run = await engine.waitForRun(await engine.start('retrying', { key: 'pgb' }));
    expect(run.status).toBe('succeeded');
    expect(calls.pgb).toBe(3);
    const attempts = await env.pool.query(
      `SELECT a.attempt, a.status FROM step_attempts a JOIN step_executions e ON e.id = a.step_execution_id
        WHERE e.run_id = $1 ORDER BY a.attempt`,
      [run.id],
    );
    expect(attempts.rows).toEqual([
      { attempt: 1, status: 'failed' },
      { attempt: 2, status: 'failed' },
      { attempt: 3, status: 'succeeded' },
    ]);
  });

  it('compensates the done step when a later one fails for good', async () => {
    completions.length = 0;
    const run = await engine.waitForRun(await engine.start('saga', {}));
    expect(run.status).toBe('compensated');
    expect(completions).toEqual(['action:one', 'compensation:undo-one']);
  });

  it('finishes every run after the Redis keys are wiped mid-run (reconciler), each step once', async () => {
    completions.length = 0;
    const runIds = await Promise.all(
      Array.from({ length: 10 }, (_, i) => engine.start('slow-chain', { tag: `w${i}` })),
    );
    await waitFor(async () => (completions.length >= 4 ? true : undefined), 20_000, 'some steps to complete');
    await deleteKeysWithPrefix(env.redis, env.config.queuePrefix);
    const runs = await Promise.all(runIds.map((id) => engine.waitForRun(id, ['succeeded', 'failed'], 60_000)));
    expect(runs.map((r) => r.status)).toEqual(Array(10).fill('succeeded'));
    const { rows } = await env.pool.query(
      `SELECT run_id, step_id, count(*)::int AS n FROM step_executions
        WHERE run_id = ANY($1) AND status = 'succeeded' GROUP BY 1, 2`,
      [runIds],
    );
    expect(rows).toHaveLength(30);
    for (const row of rows) expect(row.n).toBe(1);
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
