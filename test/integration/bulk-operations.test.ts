import { NonRetryableError } from '@baton/workflow';
import { createLogger, defineFunction, saveDefinition } from '@baton/engine';
import type { Express } from 'express';
import request from 'supertest';
import { z } from 'zod';
import { BulkOperations } from '../../services/coordinator/src';
import { testApp } from '../support/gateway';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';

/**
 * Bulk retry and cancel through the gateway, carried out by the coordinator's bulk pass, on real
 * Redis and PostgreSQL: every matched run re-driven once, paced (measured from the stored times of
 * the recorded requests), progress visible, a cancelled operation leaves the rest alone, a
 * coordinator restart mid-operation continues without a second retry of any run.
 */

/** `charge` fails while `broken` holds its batch; each call is counted per run. */
const broken = new Set<string>();
const calls = new Map<string, number>();

const charge = defineFunction({
  name: 'charge',
  input: z.object({ batch: z.string(), n: z.number() }),
  handler: async (input) => {
    const key = `${input.batch}:${input.n}`;
    calls.set(key, (calls.get(key) ?? 0) + 1);
    if (broken.has(input.batch)) throw new NonRetryableError('PAYMENT_API_DOWN', `batch ${input.batch} is broken`);
    return { charged: key };
  },
});

/** Holds until cancelled. */
const hold = defineFunction({
  name: 'hold',
  input: z.object({}).passthrough(),
  handler: async (_input, ctx) => {
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
    throw ctx.signal.reason;
  },
});

const NIGHTLY = {
  name: 'nightly',
  input: {
    type: 'object',
    required: ['batch', 'n'],
    properties: { batch: { type: 'string' }, n: { type: 'integer' } },
  },
  steps: [
    {
      id: 'charge',
      function: 'charge',
      retry: { attempts: 1 },
      input: { batch: '{{ input.batch }}', n: '{{ input.n }}' },
    },
  ],
};

const HOLDING = { name: 'holding', steps: [{ id: 'hold', function: 'hold', retry: { attempts: 1 } }] };

describe('bulk operations', () => {
  let env: TestEnv;
  let engine: Engine;
  let app: Express;

  const startRun = async (workflow: string, input: unknown, tags?: Record<string, string>) =>
    (
      await request(app)
        .post(`/v1/workflows/${workflow}/runs`)
        .send({ input, ...(tags ? { tags } : {}) })
        .expect(202)
    ).body.runId as string;

  /** N runs of `nightly` for the batch, failed (the batch broken), then the batch fixed. */
  const failedBatch = async (batch: string, n: number): Promise<string[]> => {
    broken.add(batch);
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push(await startRun('nightly', { batch, n: i }, { batch }));
    for (const id of ids) expect((await engine.waitForRun(id)).status).toBe('failed');
    broken.delete(batch);
    return ids;
  };

  const getOp = async (id: string) => (await request(app).get(`/v1/operations/${id}`).expect(200)).body;
  const opReaches = (id: string, statuses: string[]) =>
    waitFor(
      async () => {
        const op = await getOp(id);
        return statuses.includes(op.status) ? op : undefined;
      },
      60_000,
      `operation ${id} to reach ${statuses.join('|')}`,
    );

  /** Per run: its `retries` and the retry requests recorded for it (PostgreSQL). */
  const retriesOf = async (ids: string[]) => {
    const { rows } = await env.pool.query<{ id: string; retries: number; requests: number; status: string }>(
      `SELECT r.id, r.retries, r.status,
              (SELECT count(*)::int FROM control_requests c WHERE c.run_id = r.id AND c.type = 'run.retry') AS requests
         FROM runs r WHERE r.id = ANY($1::uuid[])`,
      [ids],
    );
    return new Map(rows.map((r) => [r.id, r]));
  };

  /** The stored times at which the operation recorded its requests, in handling order. */
  const processedTimes = async (operationId: string): Promise<number[]> => {
    const { rows } = await env.pool.query<{ t: Date }>(
      `SELECT processed_at AS t FROM bulk_operation_runs WHERE operation_id = $1 AND outcome = 'done' ORDER BY seq`,
      [operationId],
    );
    return rows.map((r) => r.t.getTime());
  };

  /** The most requests within any one-second window ending at a request. */
  const maxPerSecond = (times: number[]): number =>
    Math.max(0, ...times.map((t) => times.filter((u) => u > t - 1000 && u <= t).length));

  beforeAll(async () => {
    env = await createTestEnv('bulk');
    engine = await startEngine(env, [charge, hold], { bulkIntervalMs: 100 });
    app = testApp(env, engine.coordinatorQueue);
    await saveDefinition(env.pool, NIGHTLY);
    await saveDefinition(env.pool, HOLDING);
  });

  afterAll(async () => {
    await engine?.close();
    await env?.cleanup();
  });

  it('refuses a filter that is empty, names an unknown field or a status the operation does not apply to', async () => {
    const bad = async (path: string, body: object, field: string) => {
      const res = await request(app).post(path).send(body).expect(400);
      expect(res.body.error.code).toBe('INVALID_REQUEST');
      expect(res.body.error.details.map((d: { path: string }) => d.path)).toContain(field);
    };
    await bad('/v1/runs/bulk/retry', { filter: {} }, 'filter');
    await bad('/v1/runs/bulk/cancel', { filter: { tags: { batch: 'x' } } }, 'filter');
    await bad('/v1/runs/bulk/retry', {}, 'filter');
    await bad('/v1/runs/bulk/retry', { filter: { workflow: 'nightly', colour: 'red' } }, 'filter.colour');
    await bad('/v1/runs/bulk/retry', { filter: { status: 'succeeded' } }, 'filter.status');
    await bad('/v1/runs/bulk/cancel', { filter: { status: ['running', 'failed'] } }, 'filter.status');
    await bad('/v1/runs/bulk/retry', { filter: { status: 'bogus' } }, 'filter.status');
    await bad(
      '/v1/runs/bulk/retry',
      { filter: { workflow: 'nightly', createdAfter: 'yesterday' } },
      'filter.createdAfter',
    );
    await bad('/v1/runs/bulk/retry', { filter: { workflow: 'nightly' }, ratePerSec: 0 }, 'ratePerSec');
    await bad(
      '/v1/runs/bulk/retry',
      { filter: { workflow: 'nightly', createdAfter: '2026-01-02T00:00:00Z', createdBefore: '2026-01-01T00:00:00Z' } },
      'filter.createdBefore',
    );
    await request(app).get('/v1/operations/not-a-uuid').expect(400);
    await request(app).get('/v1/operations/00000000-0000-4000-8000-000000000000').expect(404);
    await request(app).post('/v1/operations/00000000-0000-4000-8000-000000000000/cancel').expect(404);
  });

  it('refuses read-only API keys on bulk operations (they may read operations)', async () => {
    const locked = testApp(env, engine.coordinatorQueue, {
      config: { apiKeys: ['full-key'], readOnlyApiKeys: ['ro-key'] },
    });
    const ro = { Authorization: 'Bearer ro-key' };
    for (const path of ['/v1/runs/bulk/retry', '/v1/runs/bulk/cancel']) {
      const res = await request(locked)
        .post(path)
        .set(ro)
        .send({ filter: { workflow: 'nightly' }, dryRun: true });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('FORBIDDEN');
    }
    await request(locked).get('/v1/operations').set(ro).expect(200);
    await request(locked)
      .post('/v1/runs/bulk/retry')
      .set({ Authorization: 'Bearer full-key' })
      .send({ filter: { workflow: 'nightly' }, dryRun: true })
      .expect(200);
  });

  it('dry run: counts the matching runs and stores nothing', async () => {
    const ids = await failedBatch('dry', 3);
    const res = await request(app)
      .post('/v1/runs/bulk/retry')
      .send({ filter: { workflow: 'nightly', tags: { batch: 'dry' } }, dryRun: true })
      .expect(200);
    expect(res.body).toEqual({ dryRun: true, matched: 3 });
    const { rows } = await env.pool.query('SELECT count(*)::int AS n FROM bulk_operations');
    expect(rows[0].n).toBe(0);
    // Created-time bounds narrow it: nothing was created after now.
    const later = await request(app)
      .post('/v1/runs/bulk/retry')
      .send({ filter: { workflow: 'nightly', createdAfter: new Date().toISOString() }, dryRun: true })
      .expect(200);
    expect(later.body.matched).toBe(0);
    for (const [, run] of await retriesOf(ids)) expect(run.retries).toBe(0);
  });

  it('retries N failed runs paced at ratePerSec, each once, with visible progress', async () => {
    const ids = await failedBatch('paced', 6);
    const res = await request(app)
      .post('/v1/runs/bulk/retry')
      .send({ filter: { workflow: 'nightly', status: 'failed', tags: { batch: 'paced' } }, ratePerSec: 2 })
      .expect(202);
    expect(res.body).toMatchObject({ matched: 6, statusUrl: `/v1/operations/${res.body.operationId}` });
    const opId = res.body.operationId as string;

    // Progress: seen part-way (some done, some remaining) before the end.
    const partWay = await waitFor(
      async () => {
        const op = await getOp(opId);
        return op.done > 0 && op.remaining > 0 ? op : undefined;
      },
      30_000,
      'the operation part-way',
    );
    expect(partWay).toMatchObject({ kind: 'retry', status: 'running', matched: 6, ratePerSec: 2 });
    expect(partWay.done + partWay.skipped + partWay.failed + partWay.remaining).toBe(6);
    const op = await opReaches(opId, ['succeeded']);
    expect(op).toMatchObject({ done: 6, skipped: 0, failed: 0, remaining: 0, problems: [] });
    expect(op.finishedAt).not.toBeNull();

    for (const id of ids) expect((await engine.waitForRun(id, ['succeeded'])).status).toBe('succeeded');
    for (const [, run] of await retriesOf(ids)) expect([run.retries, run.requests]).toEqual([1, 1]);
    for (let i = 0; i < 6; i++) expect(calls.get(`paced:${i}`)).toBe(2);

    // Pacing from the stored times: never more than 2 in a second, so 6 span at least 2 seconds.
    const times = await processedTimes(opId);
    expect(times).toHaveLength(6);
    expect(maxPerSecond(times)).toBeLessThanOrEqual(2);
    expect(times[5] - times[0]).toBeGreaterThanOrEqual(2000);

    const list = await request(app).get('/v1/operations').expect(200);
    expect(list.body.operations.map((o: { id: string }) => o.id)).toContain(opId);
  });

  it('a cancelled operation stops: the runs it had not reached stay as they were', async () => {
    const ids = await failedBatch('halted', 6);
    const res = await request(app)
      .post('/v1/runs/bulk/retry')
      .send({ filter: { status: 'failed', tags: { batch: 'halted' } }, ratePerSec: 1 })
      .expect(202);
    const opId = res.body.operationId as string;
    await waitFor(async () => ((await getOp(opId)).done >= 1 ? true : undefined), 30_000, 'a first retry');
    const cancelled = await request(app).post(`/v1/operations/${opId}/cancel`).expect(200);
    expect(cancelled.body.status).toBe('cancelled');
    const handled = cancelled.body.done as number;
    expect(handled).toBeLessThan(6);
    expect(cancelled.body.remaining).toBe(6 - handled);
    await request(app).post(`/v1/operations/${opId}/cancel`).expect(409);

    // Proof the bulk pass had its chances after the cancel: a later operation ran to its end.
    const [other] = await failedBatch('after-halt', 1);
    const next = await request(app)
      .post('/v1/runs/bulk/retry')
      .send({ filter: { status: 'failed', tags: { batch: 'after-halt' } }, ratePerSec: 10 })
      .expect(202);
    await opReaches(next.body.operationId, ['succeeded']);
    await engine.waitForRun(other, ['succeeded']);

    const after = await getOp(opId);
    expect(after).toMatchObject({ status: 'cancelled', done: handled, remaining: 6 - handled });
    const runs = await retriesOf(ids);
    // Runs are handled oldest first: the first `handled` retried once, the rest untouched.
    ids.forEach((id, i) => {
      const run = runs.get(id)!;
      if (i < handled) expect([run.retries, run.requests]).toEqual([1, 1]);
      else expect([run.retries, run.requests, run.status]).toEqual([0, 0, 'failed']);
    });
  });

  it('continues after a coordinator restart mid-operation without retrying any run twice', async () => {
    const ids = await failedBatch('restart', 8);
    const res = await request(app)
      .post('/v1/runs/bulk/retry')
      .send({ filter: { workflow: 'nightly', tags: { batch: 'restart' } }, ratePerSec: 2 })
      .expect(202);
    const opId = res.body.operationId as string;
    await waitFor(async () => ((await getOp(opId)).done >= 2 ? true : undefined), 30_000, 'two retries');
    await engine.close();
    const stopped = await getOp(opId);
    expect(stopped.status).toBe('running');
    expect(stopped.remaining).toBeGreaterThan(0);
    // Two replicas take over: each run still gets one request, whichever records it.
    const replica = await startEngine(env, [charge, hold], { bulkIntervalMs: 100 });
    engine = await startEngine(env, [charge, hold], { bulkIntervalMs: 100 });
    app = testApp(env, engine.coordinatorQueue);
    try {
      const op = await opReaches(opId, ['succeeded']);
      expect(op).toMatchObject({ done: 8, skipped: 0, failed: 0 });
      for (const id of ids) await engine.waitForRun(id, ['succeeded']);
    } finally {
      await replica.close();
    }
    for (const [, run] of await retriesOf(ids)) expect([run.retries, run.requests]).toEqual([1, 1]);
    // Attempts per run in PostgreSQL: the failed execution and its one retry.
    const { rows } = await env.pool.query<{ run_id: string; n: number }>(
      `SELECT run_id, count(*)::int AS n FROM step_executions WHERE run_id = ANY($1::uuid[]) GROUP BY run_id`,
      [ids],
    );
    expect(rows.map((r) => r.n)).toEqual(ids.map(() => 2));
    expect(maxPerSecond(await processedTimes(opId))).toBeLessThanOrEqual(2);
  });

  it('bulk cancel: stops the running runs it matched, skips one that finished first, with the reason', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await startRun('holding', {}, { group: 'c1' }));
    for (const id of ids) await engine.waitForRun(id, ['running']);
    const res = await request(app)
      .post('/v1/runs/bulk/cancel')
      .send({ filter: { workflow: 'holding', tags: { group: 'c1' } }, ratePerSec: 1 })
      .expect(202);
    expect(res.body.matched).toBe(3);
    // The newest is handled last (at least 2 s later at 1/s): cancelled on its own first.
    await request(app).post(`/v1/runs/${ids[2]}/cancel`).send({}).expect(202);
    const op = await opReaches(res.body.operationId, ['succeeded']);
    expect(op).toMatchObject({ kind: 'cancel', done: 2, skipped: 1, failed: 0, params: { compensate: false } });
    expect(op.problems).toEqual([
      expect.objectContaining({ runId: ids[2], outcome: 'skipped', reason: expect.stringMatching(/cancel/) }),
    ]);
    for (const id of ids) expect((await engine.waitForRun(id)).status).toBe('cancelled');
  });

  it('deletes an operation 30 days after it ended, with its runs; keeps newer ones', async () => {
    const insert = (status: string, endedDaysAgo: number | null) =>
      env.pool
        .query<{ id: string }>(
          `WITH op AS (
             INSERT INTO bulk_operations (id, kind, status, filter, rate_per_sec, matched, finished_at)
             VALUES (gen_random_uuid(), 'retry', $1, '{}', 1, 1,
                     CASE WHEN $2::int IS NULL THEN NULL ELSE now() - make_interval(days => $2::int) END)
             RETURNING id)
           INSERT INTO bulk_operation_runs (operation_id, seq, run_id) SELECT id, 1, gen_random_uuid() FROM op
           RETURNING operation_id AS id`,
          [status, endedDaysAgo],
        )
        .then((r) => r.rows[0].id);
    const old = await insert('succeeded', 31);
    const recent = await insert('cancelled', 29);
    // A fresh pass purges at once (then once a minute).
    const pass = new BulkOperations({
      pool: env.pool,
      coordinator: engine.coordinatorQueue,
      logger: createLogger('test', 'silent'),
      intervalMs: 100,
    });
    // (The engine's own pass may have been first: either way, the old one is gone, the recent kept.)
    expect((await pass.passOnce()).purged).toBeLessThanOrEqual(1);
    const left = await env.pool.query<{ id: string }>('SELECT id FROM bulk_operations WHERE id = ANY($1::uuid[])', [
      [old, recent],
    ]);
    expect(left.rows.map((r) => r.id)).toEqual([recent]);
    const runs = await env.pool.query('SELECT 1 FROM bulk_operation_runs WHERE operation_id = $1', [old]);
    expect(runs.rowCount).toBe(0);
    await request(app).get(`/v1/operations/${old}`).expect(404);
  });
});
