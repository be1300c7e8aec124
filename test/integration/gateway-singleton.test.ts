import request from 'supertest';
import { z } from 'zod';
import { defineFunction, saveDefinition } from '@baton/engine';
import { startEngine, type Engine } from '../support/engine';
import { UUID, useGatewaySuite } from '../support/gateway-suite';

/**
 * Singleton workflows through the gateway, with the real coordinator and function runtime: `skip`
 * answers 200 with the key's active run, `cancelRunning` cancels it (through the cancel outbox) and
 * starts anew, concurrent starts of one key leave one active run (the index runs_singleton, not a
 * read-then-insert), different keys are independent, and bad definitions or keys are 400s naming
 * the field.
 */

/** Keys whose `sg-hold` steps may finish: a run stays running until the test releases its key. */
const released = new Set<string>();
const hold = defineFunction({
  name: 'sg-hold',
  input: z.object({ key: z.string() }),
  handler: async ({ key }, ctx) => {
    while (!released.has(key)) {
      if (ctx.signal.aborted) throw new Error('cancelled');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return { key };
  },
});

const fast = { attempts: 1 };
const ACTIVE = ['pending', 'running', 'compensating'];

describe('gateway: singleton workflows', () => {
  const suite = useGatewaySuite('gateway-singleton');
  let engine: Engine;

  beforeAll(async () => {
    engine = await startEngine(suite.env, [hold]);
    await saveDefinition(suite.env.pool, {
      name: 'sg-skip',
      singleton: { key: 'input.customer', mode: 'skip' },
      steps: [{ id: 'hold', function: 'sg-hold', input: { key: '{{ input.customer }}' }, retry: fast }],
    });
    await saveDefinition(suite.env.pool, {
      name: 'sg-replace',
      singleton: { mode: 'cancelRunning' },
      steps: [{ id: 'hold', function: 'sg-hold', input: { key: '{{ input.customer }}' }, retry: fast }],
    });
  });

  suite.beforeCleanup(() => engine?.close());

  const start = (workflow: string, input: unknown) =>
    request(suite.app).post(`/v1/workflows/${workflow}/runs`).send({ input });

  const activeRuns = async (workflow: string, key?: string): Promise<string[]> => {
    const { rows } = await suite.env.pool.query<{ id: string }>(
      `SELECT id FROM runs WHERE workflow_name = $1 AND status = ANY($2) AND ($3::text IS NULL OR input->>'customer' = $3)`,
      [workflow, ACTIVE, key ?? null],
    );
    return rows.map((r) => r.id);
  };

  it('skip: a second start of a key returns its active run with 200; other keys start their own', async () => {
    const first = await start('sg-skip', { customer: 'c1' }).expect(202);
    expect(first.body).toMatchObject({
      runId: expect.stringMatching(UUID),
      status: 'pending',
      started: true,
      singleton: { key: 'c1', mode: 'skip' },
    });
    await engine.waitForRun(first.body.runId, ['running']);

    const second = await start('sg-skip', { customer: 'c1' }).expect(200);
    expect(second.body).toMatchObject({
      runId: first.body.runId,
      status: 'running',
      statusUrl: `/v1/runs/${first.body.runId}`,
      started: false,
      singleton: { key: 'c1', mode: 'skip', skipped: true },
    });
    expect(second.headers.location).toBe(`/v1/runs/${first.body.runId}`);

    const other = await start('sg-skip', { customer: 'c2' }).expect(202);
    expect(other.body.runId).not.toBe(first.body.runId);

    // Once the run has ended, the key is free again: the next start is a new run.
    released.add('c1');
    released.add('c2');
    await engine.waitForRun(first.body.runId, ['succeeded']);
    await engine.waitForRun(other.body.runId, ['succeeded']);
    const third = await start('sg-skip', { customer: 'c1' }).expect(202);
    expect(third.body.runId).not.toBe(first.body.runId);
    await engine.waitForRun(third.body.runId, ['succeeded']);
  });

  it('skip: 20 concurrent starts of one key, over two gateways, give one run; all 20 answer it', async () => {
    const apps = [suite.app, suite.appWith()];
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        request(apps[i % 2])
          .post('/v1/workflows/sg-skip/runs')
          .send({ input: { customer: 'c3' } }),
      ),
    );
    const created = answers.filter((a) => a.status === 202);
    expect(created).toHaveLength(1);
    expect(answers.filter((a) => a.status === 200)).toHaveLength(19);
    expect(new Set(answers.map((a) => a.body.runId))).toEqual(new Set([created[0].body.runId]));
    const { rows } = await suite.env.pool.query(
      `SELECT count(*)::int AS n FROM runs WHERE workflow_name = 'sg-skip' AND input->>'customer' = 'c3'`,
    );
    expect(rows[0].n).toBe(1);
    released.add('c3');
    await engine.waitForRun(created[0].body.runId, ['succeeded']);
  });

  it('cancelRunning: a new start cancels the active run and runs itself', async () => {
    const first = await start('sg-replace', { customer: 'r1' }).expect(202);
    await engine.waitForRun(first.body.runId, ['running']);

    const second = await start('sg-replace', { customer: 'r2' }).expect(202);
    expect(second.body).toMatchObject({
      status: 'pending',
      started: true,
      singleton: { key: '', mode: 'cancelRunning', cancelled: [first.body.runId] },
    });
    const cancelled = await engine.waitForRun(first.body.runId, ['cancelled']);
    expect(cancelled.status).toBe('cancelled');
    released.add('r2');
    await engine.waitForRun(second.body.runId, ['succeeded']);
    // The cancel went through the outbox like POST /v1/runs/:id/cancel.
    const { rows } = await suite.env.pool.query(
      `SELECT type, done_at IS NOT NULL AS done FROM control_requests WHERE run_id = $1`,
      [first.body.runId],
    );
    expect(rows).toEqual([{ type: 'run.cancel', done: true }]);
  });

  it('cancelRunning: 10 concurrent starts leave exactly one active run, the others cancelled', async () => {
    const apps = [suite.app, suite.appWith()];
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        request(apps[i % 2])
          .post('/v1/workflows/sg-replace/runs')
          .send({ input: { customer: `burst-${i}` } }),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(202));
    const ids = answers.map((a) => a.body.runId as string);
    expect(new Set(ids).size).toBe(10);
    // At every moment at most one run holds the key; once the cancels are applied, one is active.
    const { rows: holders } = await suite.env.pool.query(
      `SELECT id FROM runs WHERE workflow_name = 'sg-replace' AND singleton_key IS NOT NULL AND status = ANY($1)`,
      [ACTIVE],
    );
    expect(holders).toHaveLength(1);
    const survivor = holders[0].id as string;
    for (const id of ids.filter((id) => id !== survivor)) await engine.waitForRun(id, ['cancelled']);
    expect(await activeRuns('sg-replace')).toEqual([survivor]);
    released.add(`burst-${ids.indexOf(survivor)}`);
    await engine.waitForRun(survivor, ['succeeded']);
  });

  it('a retried run gives its key up instead of colliding with the run that holds it now', async () => {
    const first = await start('sg-skip', { customer: 'c4' }).expect(202);
    await engine.waitForRun(first.body.runId, ['running']);
    await request(suite.app).post(`/v1/runs/${first.body.runId}/cancel`).send({}).expect(202);
    await engine.waitForRun(first.body.runId, ['cancelled']);
    const second = await start('sg-skip', { customer: 'c4' }).expect(202);
    await engine.waitForRun(second.body.runId, ['running']);
    await request(suite.app).post(`/v1/runs/${first.body.runId}/retry`).send({}).expect(202);
    await engine.waitForRun(first.body.runId, ['running']);
    const { rows } = await suite.env.pool.query(
      'SELECT id, singleton_key FROM runs WHERE id = ANY($1::uuid[]) ORDER BY created_at',
      [[first.body.runId, second.body.runId]],
    );
    expect(rows).toEqual([
      { id: first.body.runId, singleton_key: null },
      { id: second.body.runId, singleton_key: 'c4' },
    ]);
    released.add('c4');
    await engine.waitForRun(first.body.runId, ['succeeded']);
    await engine.waitForRun(second.body.runId, ['succeeded']);
  });

  it('events start singleton runs under the same rule', async () => {
    await saveDefinition(suite.env.pool, {
      name: 'sg-event',
      triggers: [{ event: { name: 'sg.ping' } }],
      singleton: { key: 'input.customer', mode: 'skip' },
      steps: [{ id: 'hold', function: 'sg-hold', input: { key: '{{ input.customer }}' }, retry: fast }],
    });
    const first = await request(suite.app)
      .post('/v1/events/sg.ping')
      .send({ payload: { customer: 'e1' } })
      .expect(202);
    const second = await request(suite.app)
      .post('/v1/events/sg.ping')
      .send({ payload: { customer: 'e1' } })
      .expect(202);
    expect(second.body.runIds).toEqual(first.body.runIds);
    expect(await activeRuns('sg-event', 'e1')).toEqual(first.body.runIds);
    released.add('e1');
    await engine.waitForRun(first.body.runIds[0], ['succeeded']);
  });

  it('refuses bad definitions with 400 naming the field', async () => {
    const steps = [{ id: 'a', function: 'sg-hold' }];
    const cases: [unknown, string][] = [
      [{ singleton: { mode: 'sometimes' } }, 'singleton.mode'],
      [{ singleton: { mode: 'skip', key: '(' } }, 'singleton.key'],
      [{ singleton: { mode: 'skip', extra: 1 } }, 'singleton'],
      [{ debounce: { periodMs: 0 } }, 'debounce.periodMs'],
      [{ debounce: { periodMs: 1000, maxWaitMs: 500 } }, 'debounce.maxWaitMs'],
      [{ debounce: { periodMs: 1000, key: 'input.(' } }, 'debounce.key'],
      [{ debounce: { periodMs: 1000 }, singleton: { mode: 'skip' } }, 'debounce'],
    ];
    for (const [extra, path] of cases) {
      const res = await request(suite.app)
        .put('/v1/workflows/sg-bad')
        .send({ steps, ...(extra as object) })
        .expect(400);
      expect(res.body.error.code).toBe('INVALID_DEFINITION');
      expect(res.body.error.details.map((d: { path: string }) => d.path)).toContain(path);
    }
  });

  it('a key that fails on the input is a 400 naming singleton.key; nothing is started', async () => {
    await saveDefinition(suite.env.pool, {
      name: 'sg-badkey',
      singleton: { key: '$error("no key")', mode: 'skip' },
      steps: [{ id: 'hold', function: 'sg-hold', input: { key: 'x' }, retry: fast }],
    });
    const res = await start('sg-badkey', {}).expect(400);
    expect(res.body.error).toMatchObject({ code: 'INVALID_INPUT', details: [{ path: 'singleton.key' }] });
    expect(await activeRuns('sg-badkey')).toEqual([]);
  });
});
