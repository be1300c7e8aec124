import crypto from 'node:crypto';
import request from 'supertest';
import { z } from 'zod';
import { NonRetryableError } from '@baton/workflow';
import { defineFunction, metrics, saveDefinition } from '@baton/engine';
import { RetentionSweeper, type SweepResult } from '../../services/coordinator/src/retention';
import { startEngine, type Engine } from '../support/engine';
import { waitFor } from '../support/env';
import { useGatewaySuite } from '../support/gateway-suite';

/**
 * Retention on real PostgreSQL, Redis and the real coordinator: finished runs past their retention
 * are deleted with every row they own, by two sweepers at once, each run exactly once; runs within
 * their retention and active runs stay; a workflow's own retention overrides the global default; a
 * deleted run is a 404 and its parent still reads. Sweeps are called directly (never a timer), so
 * what is kept is checked after a sweep that deleted the others.
 */

const work = defineFunction({
  name: 'ret-work',
  input: z.object({ value: z.number(), fail: z.boolean().default(false) }),
  handler: async ({ value, fail }, ctx) => {
    ctx.log.info('working', { value });
    if (fail) throw new NonRetryableError('RET_BROKEN', 'broken on purpose');
    return { value };
  },
});

const fast = { attempts: 1 };
const oneSecond = { succeeded: '1s', failed: '1s', cancelled: '1s' };

/** Rows of each table a run owns. */
async function ownedRows(pool: import('@baton/engine').Pool, runIds: string[]): Promise<Record<string, number>> {
  const { rows } = await pool.query<Record<string, number>>(
    `SELECT (SELECT count(*)::int FROM runs WHERE id = ANY($1::uuid[])) AS runs,
            (SELECT count(*)::int FROM step_executions WHERE run_id = ANY($1::uuid[])) AS step_executions,
            (SELECT count(*)::int FROM step_executions WHERE run_id = ANY($1::uuid[]) AND parent_execution_id IS NOT NULL) AS items,
            (SELECT count(*)::int FROM step_attempts a JOIN step_executions e ON e.id = a.step_execution_id
              WHERE e.run_id = ANY($1::uuid[])) AS step_attempts,
            (SELECT count(*)::int FROM run_logs WHERE run_id = ANY($1::uuid[])) AS run_logs,
            (SELECT count(*)::int FROM documents WHERE run_id = ANY($1::uuid[])) AS documents,
            (SELECT count(*)::int FROM step_fanouts WHERE run_id = ANY($1::uuid[])) AS step_fanouts,
            (SELECT count(*)::int FROM control_requests WHERE run_id = ANY($1::uuid[])) AS control_requests`,
    [runIds],
  );
  return rows[0];
}

async function deletedByMetric(): Promise<number> {
  const { values } = await metrics.retentionDeletedTotal.get();
  return values.reduce((sum, v) => sum + v.value, 0);
}

describe('retention', () => {
  const suite = useGatewaySuite('retention');
  let engine: Engine;
  const sweepers: RetentionSweeper[] = [];

  /** A sweeper as the coordinator makes it, with BATON_RETENTION=succeeded=1s and tiny batches. */
  const sweeper = (): RetentionSweeper => {
    const s = new RetentionSweeper({
      pool: suite.env.pool,
      logger: { info: () => undefined, warn: () => undefined } as never,
      global: { succeeded: 1 },
      intervalMs: 3_600_000,
      batchSize: 2,
    });
    sweepers.push(s);
    return s;
  };

  beforeAll(async () => {
    engine = await startEngine(suite.env, [work]);
    const pool = suite.env.pool;
    await saveDefinition(pool, {
      name: 'ret-short',
      retention: oneSecond,
      steps: [
        { id: 'each', forEach: '{{ [1, 2] }}', function: 'ret-work', input: { value: '{{ item }}' }, retry: fast },
        { id: 'last', function: 'ret-work', input: { value: 3, fail: '{{ input.fail }}' }, retry: fast },
      ],
    });
    // No retention of its own: the global default (succeeded after 1 s) applies.
    await saveDefinition(pool, {
      name: 'ret-default',
      steps: [{ id: 'one', function: 'ret-work', input: { value: 1 }, retry: fast }],
    });
    // Its own succeeded retention overrides the global default.
    await saveDefinition(pool, {
      name: 'ret-long',
      retention: { succeeded: '1h' },
      steps: [{ id: 'one', function: 'ret-work', input: { value: 1 }, retry: fast }],
    });
    await saveDefinition(pool, {
      name: 'ret-wait',
      retention: oneSecond,
      steps: [{ id: 'nap', sleep: { durationMs: 3_600_000 } }],
    });
    await saveDefinition(pool, {
      name: 'ret-child',
      retention: { succeeded: '1s' },
      steps: [{ id: 'one', function: 'ret-work', input: { value: 7 }, retry: fast }],
    });
    await saveDefinition(pool, {
      name: 'ret-parent',
      retention: { succeeded: '12h' },
      steps: [{ id: 'call', workflow: 'ret-child', input: {} }],
    });
  });

  suite.beforeCleanup(async () => {
    await Promise.all(sweepers.map((s) => s.stop()));
    await engine?.close();
  });

  it('PUT /v1/workflows refuses a bad duration with a 400 naming its path', async () => {
    const res = await request(suite.app)
      .put('/v1/workflows/ret-bad')
      .send({ name: 'ret-bad', retention: { failed: '7 days' }, steps: [{ id: 'a', function: 'ret-work' }] })
      .expect(400);
    expect(JSON.stringify(res.body)).toContain('retention.failed');
  });

  it('deletes finished runs past their retention with all they own, exactly once across two sweepers', async () => {
    const pool = suite.env.pool;
    const succeeded = await engine.start('ret-short', { fail: false });
    const failed = await engine.start('ret-short', { fail: true });
    const byDefault = await engine.start('ret-default', {});
    const overridden = await engine.start('ret-long', {});
    const active = await engine.start('ret-wait', {});
    const cancelled = await engine.start('ret-wait', {});
    const parent = await engine.start('ret-parent', {});
    await engine.waitForRun(succeeded, ['succeeded']);
    await engine.waitForRun(failed, ['failed', 'compensated']);
    await engine.waitForRun(byDefault, ['succeeded']);
    await engine.waitForRun(overridden, ['succeeded']);
    await engine.waitForRun(parent, ['succeeded']);
    await engine.waitForRun(active, ['running']);
    await engine.waitForRun(cancelled, ['running']);
    await request(suite.app).post(`/v1/runs/${cancelled}/cancel`).send({}).expect(202);
    await engine.waitForRun(cancelled, ['cancelled']);
    const child = (await pool.query<{ id: string }>('SELECT id FROM runs WHERE parent_run_id = $1', [parent])).rows[0]
      .id;
    await pool.query(
      `INSERT INTO documents (id, run_id, idempotency_key, filename, content_type, size_bytes, content)
       VALUES ($1, $2, $3, 'a.pdf', 'application/pdf', 3, '\\x010203')`,
      [crypto.randomUUID(), succeeded, `${succeeded}:each`],
    );

    const doomed = [succeeded, failed, byDefault, cancelled, child];
    const kept = [overridden, active, parent];
    const before = await ownedRows(pool, doomed);
    // Every owned table has rows, so the counts after prove they went.
    for (const [table, n] of Object.entries(before)) expect([table, n > 0]).toEqual([table, true]);
    const keptBefore = await ownedRows(pool, kept);

    // Two replicas sweeping at once, in batches of 2, until the expired runs are gone.
    const [a, b] = [sweeper(), sweeper()];
    const metricBefore = await deletedByMetric();
    const totals: SweepResult[] = [];
    await waitFor(
      async () => {
        totals.push(...(await Promise.all([a.sweepOnce(), b.sweepOnce()])));
        return (await ownedRows(pool, doomed)).runs === 0 ? true : undefined;
      },
      15_000,
      'the expired runs to be deleted',
    );
    expect(totals.reduce((n, t) => n + t.runs, 0)).toBe(doomed.length);
    expect(totals.reduce((n, t) => n + t.documents, 0)).toBe(1);
    expect((await deletedByMetric()) - metricBefore).toBe(doomed.length);
    const { values } = await metrics.retentionDeletedTotal.get();
    expect(values).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ labels: { workflow: 'ret-short', status: 'failed' }, value: 1 }),
        expect.objectContaining({ labels: { workflow: 'ret-wait', status: 'cancelled' }, value: 1 }),
        expect.objectContaining({ labels: { workflow: 'ret-child', status: 'succeeded' }, value: 1 }),
      ]),
    );

    expect(await ownedRows(pool, doomed)).toEqual({
      runs: 0,
      step_executions: 0,
      items: 0,
      step_attempts: 0,
      run_logs: 0,
      documents: 0,
      step_fanouts: 0,
      control_requests: 0,
    });
    // Within retention (a workflow's own over the default), active, or a parent: all still there.
    expect(await ownedRows(pool, kept)).toEqual(keptBefore);

    // A deleted run is a 404; a parent whose child is gone still reads, naming the child's id.
    await request(suite.app).get(`/v1/runs/${succeeded}`).expect(404);
    await request(suite.app).get(`/v1/runs/${child}`).expect(404);
    const res = await request(suite.app).get(`/v1/runs/${parent}`).expect(200);
    expect(res.body.status).toBe('succeeded');
    expect(res.body.steps).toEqual([
      expect.objectContaining({ id: 'call', status: 'succeeded', childRunId: child, childRunDeleted: true }),
    ]);
  });

  it('purges control requests done more than a day ago, and only those', async () => {
    const pool = suite.env.pool;
    const run = await engine.start('ret-long', {});
    await engine.waitForRun(run, ['succeeded']);
    const [old, recent, pending] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
    await pool.query(
      `INSERT INTO control_requests (id, run_id, type, created_at, done_at) VALUES
         ($1, $4, 'run.cancel', now() - interval '3 days', now() - interval '25 hours'),
         ($2, $4, 'run.cancel', now() - interval '2 hours', now() - interval '1 hour'),
         ($3, $4, 'run.cancel', now() - interval '3 days', NULL)`,
      [old, recent, pending, run],
    );
    const result = await sweeper().sweepOnce();
    expect(result.controlRequests).toBe(1);
    const { rows } = await pool.query<{ id: string }>('SELECT id FROM control_requests WHERE id = ANY($1::uuid[])', [
      [old, recent, pending],
    ]);
    expect(rows.map((r) => r.id).sort()).toEqual([recent, pending].sort());
  });

  it('deletes delivered events past BATON_EVENT_RETENTION, keeping any a parked wait could still match', async () => {
    const pool = suite.env.pool;
    await saveDefinition(pool, {
      name: 'ret-listen',
      steps: [{ id: 'gate', waitForEvent: { name: 'ret.ping', timeoutMs: 3_600_000 } }],
    });
    const run = await engine.start('ret-listen', {});
    const wait = await waitFor(
      async () =>
        (
          await pool.query<{ id: string }>(
            "SELECT id FROM step_executions WHERE run_id = $1 AND step_id = 'gate' AND status = 'running'",
            [run],
          )
        ).rows[0],
      10_000,
      'the wait to park',
    );
    // Parked an hour ago: events of its name stored since then are in its window.
    await pool.query("UPDATE step_executions SET queued_at = now() - interval '1 hour' WHERE id = $1", [wait.id]);
    const ids = {
      old: crypto.randomUUID(),
      undelivered: crypto.randomUUID(),
      recent: crypto.randomUUID(),
      inWindow: crypto.randomUUID(),
      beforeWindow: crypto.randomUUID(),
    };
    await pool.query(
      `INSERT INTO events (id, name, payload, created_at, delivered_at) VALUES
         ($1, 'ret.other', '{}', now() - interval '10 minutes', now() - interval '10 minutes'),
         ($2, 'ret.other', '{}', now() - interval '10 minutes', NULL),
         ($3, 'ret.other', '{}', now(), now()),
         ($4, 'ret.ping', '{}', now() - interval '10 minutes', now() - interval '10 minutes'),
         ($5, 'ret.ping', '{}', now() - interval '2 hours', now() - interval '2 hours')`,
      [ids.old, ids.undelivered, ids.recent, ids.inWindow, ids.beforeWindow],
    );
    const remaining = async () =>
      (await pool.query<{ id: string }>('SELECT id FROM events WHERE id = ANY($1::uuid[])', [Object.values(ids)])).rows
        .map((r) => r.id)
        .sort();

    // Without an event retention (BATON_EVENT_RETENTION=forever) nothing goes.
    expect((await sweeper().sweepOnce()).events).toBe(0);
    expect(await remaining()).toHaveLength(5);

    const withEvents = new RetentionSweeper({
      pool,
      logger: { info: () => undefined, warn: () => undefined } as never,
      global: {},
      intervalMs: 3_600_000,
      batchSize: 1,
      eventRetentionSecs: 1,
    });
    sweepers.push(withEvents);
    const total = async () => (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM events')).rows[0].n;
    const before = await total();
    const result = await withEvents.sweepOnce();
    // Delivered more than a second ago: `old`, and the ping stored before the wait parked. Kept: the
    // undelivered one (the reconciler may deliver it meanwhile, which starts its retention now), the
    // recent one, and the ping inside the parked wait's window.
    expect(await remaining()).toEqual([ids.undelivered, ids.recent, ids.inWindow].sort());
    // Counted as deleted (batches of one: the sweep went on until a batch came back short), the
    // suite's earlier events included.
    expect(result.events).toBeGreaterThanOrEqual(2);
    expect(before - (await total())).toBe(result.events);
  });
});
