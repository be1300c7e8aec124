import { Coordinator, Reconciler } from '../../services/coordinator/src';
import { createLogger, defineFunction, saveDefinition } from '@baton/engine';
import type { Express } from 'express';
import request from 'supertest';
import { z } from 'zod';
import { testApp } from '../support/gateway';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';

/**
 * Schedules, events, ctx.emit, sleep and waitForEvent on real Redis and PostgreSQL, through the
 * gateway's public API.
 */

const seen: { workflow: string; input: unknown }[] = [];

const note = defineFunction({
  name: 'note',
  input: z.object({ workflow: z.string(), value: z.unknown().optional() }),
  handler: async (input) => {
    seen.push({ workflow: input.workflow, input: input.value });
    return { noted: input.value ?? null };
  },
});

const placeOrder = defineFunction({
  name: 'place-order',
  input: z.object({ orderId: z.string() }),
  handler: async ({ orderId }, ctx) => {
    ctx.emit('order.placed', { orderId, total: 42 });
    return { orderId };
  },
});

const logger = createLogger('test', 'silent');

describe('triggers and waiting steps', () => {
  let env: TestEnv;
  let engine: Engine;
  let app: Express;

  const runsOf = async (workflow: string) =>
    (
      await env.pool.query(
        'SELECT id, status, input, output, trigger, idempotency_key FROM runs WHERE workflow_name = $1 ORDER BY created_at',
        [workflow],
      )
    ).rows;
  const getRun = async (id: string) => (await request(app).get(`/v1/runs/${id}`).expect(200)).body;

  beforeAll(async () => {
    env = await createTestEnv('triggers');
    engine = await startEngine(env, [note, placeOrder]);
    app = testApp(env, engine.coordinatorQueue);
  });

  afterAll(async () => {
    await engine?.close();
    await env?.cleanup();
  });

  it('refuses bad trigger definitions with the path of each problem', async () => {
    const steps = [{ id: 'a', function: 'note', input: { workflow: 'x' } }];
    const res = await request(app)
      .put('/v1/workflows/bad-triggers')
      .send({
        steps,
        triggers: [
          { schedule: { cron: '61 * * * *' } },
          { schedule: { cron: '* * *' } },
          { schedule: { cron: '* * * * *', timezone: 'Mars/Olympus' } },
          { event: { name: 'ok.event', filter: 'payload.(' } },
        ],
      })
      .expect(400);
    expect(res.body.error.details.map((d: { path: string }) => d.path).sort()).toEqual([
      'triggers[0].schedule.cron',
      'triggers[1].schedule.cron',
      'triggers[2].schedule.timezone',
      'triggers[3].event.filter',
    ]);
    const badName = await request(app)
      .put('/v1/workflows/bad-triggers')
      .send({ steps, triggers: [{ event: { name: 'Bad Name' } }] })
      .expect(400);
    expect(badName.body.error.details).toEqual([
      { path: 'triggers[0].event.name', message: expect.stringMatching(/lowercase/) },
    ]);
  });

  it('fires a 1-second schedule once per tick with two coordinators running', async () => {
    // A second coordinator (and reconciler) on the same database and Redis: the race BullMQ's job
    // schedulers must settle.
    const second = new Coordinator({ pool: env.pool, queues: env.queues, logger, concurrency: 4 });
    second.start();
    const secondReconciler = new Reconciler({
      pool: env.pool,
      coordinator: second,
      logger,
      intervalMs: 250,
      graceMs: 500,
    });
    secondReconciler.start();
    try {
      await request(app)
        .put('/v1/workflows/ticker')
        .send({
          steps: [{ id: 'tick', function: 'note', input: { workflow: 'ticker', value: '{{ input.v }}' } }],
          triggers: [{ schedule: { cron: '* * * * * *', input: { v: 'tick' } } }],
        })
        .expect(201);
      const schedules = (await request(app).get('/v1/schedules').expect(200)).body.schedules;
      expect(schedules).toEqual([
        expect.objectContaining({
          id: 'ticker.0',
          workflow: 'ticker',
          cron: '* * * * * *',
          paused: false,
          nextFireAt: expect.any(String),
        }),
      ]);
      // Ticks arrive (however slowly a loaded machine takes them).
      await waitFor(async () => ((await runsOf('ticker')).length >= 8 ? true : undefined), 60_000, '8 scheduled runs');
      // Pause: ticks stop.
      await request(app).put('/v1/schedules/ticker.0').send({ paused: true }).expect(200);
      const paused = (await request(app).get('/v1/schedules').expect(200)).body.schedules[0];
      expect(paused).toMatchObject({ paused: true, nextFireAt: null });
      // Paused means no scheduler and no tick waiting, delayed or being handled: nothing left that can
      // start a run, so the count below is final.
      await waitFor(
        async () => {
          const schedulers = await engine.coordinatorQueue.getJobSchedulers(0, -1);
          const ticks = (await engine.coordinatorQueue.getJobs(['waiting', 'delayed', 'active', 'prioritized'])).filter(
            (job) => job?.name === 'schedule.fire',
          );
          return schedulers.length === 0 && ticks.length === 0 ? true : undefined;
        },
        10_000,
        'the paused scheduler and its ticks to be gone',
      );
      const runs = await runsOf('ticker');
      expect(runs.length).toBeGreaterThanOrEqual(8);
      // Once per tick: each run is keyed by its tick's job, whose id carries the tick's time; no tick
      // time twice (two coordinators did not both start it), each on a whole second of the cron.
      const keys = runs.map((r) => r.idempotency_key);
      expect(new Set(keys).size).toBe(runs.length);
      const tickTimes = keys.map((k) => Number(/:(\d+)$/.exec(k)?.[1]));
      expect(new Set(tickTimes).size).toBe(runs.length);
      for (const t of tickTimes) expect(t % 1000).toBe(0);
      for (const run of runs) expect(run.trigger).toMatchObject({ type: 'schedule', scheduleId: 'ticker.0' });
      await request(app).put('/v1/schedules/nope.0').send({ paused: true }).expect(404);

      // A new version without the trigger removes the scheduler.
      await request(app)
        .put('/v1/workflows/ticker')
        .send({ steps: [{ id: 'tick', function: 'note', input: { workflow: 'ticker' } }] })
        .expect(201);
      await request(app).put('/v1/schedules/ticker.0').send({ paused: false }).expect(404);
      expect((await request(app).get('/v1/schedules').expect(200)).body.schedules).toEqual([]);
      expect(await engine.coordinatorQueue.getJobSchedulers(0, -1)).toEqual([]);
    } finally {
      await secondReconciler.stop();
      await second.close();
    }
  }, 30_000);

  it('starts exactly the subscribed workflows for an event; a repeated key starts nothing', async () => {
    const sub = (name: string, filter?: string) => ({
      name,
      triggers: [{ event: { name: 'customer.signed-up', ...(filter ? { filter } : {}) } }],
      steps: [{ id: 'a', function: 'note', input: { workflow: name, value: '{{ input.plan }}' } }],
    });
    await saveDefinition(env.pool, sub('welcome'));
    await saveDefinition(env.pool, sub('upsell', "plan = 'free'"));
    await saveDefinition(env.pool, { ...sub('other'), triggers: [{ event: { name: 'something.else' } }] });

    const first = await request(app)
      .post('/v1/events/customer.signed-up')
      .send({ payload: { customerId: 'c1', plan: 'pro' }, idempotencyKey: 'signup-c1' })
      .expect(202);
    expect(first.body.runIds).toHaveLength(1);
    const again = await request(app)
      .post('/v1/events/customer.signed-up')
      .send({ payload: { customerId: 'c1', plan: 'pro' }, idempotencyKey: 'signup-c1' })
      .expect(200);
    expect(again.body).toEqual(first.body);
    const free = await request(app)
      .post('/v1/events/customer.signed-up')
      .send({ payload: { plan: 'free' } })
      .expect(202);
    expect(free.body.runIds).toHaveLength(2);

    for (const id of [...first.body.runIds, ...free.body.runIds]) await engine.waitForRun(id);
    expect((await runsOf('welcome')).map((r) => [r.status, r.input.plan])).toEqual([
      ['succeeded', 'pro'],
      ['succeeded', 'free'],
    ]);
    expect((await runsOf('upsell')).map((r) => r.trigger)).toEqual([
      { type: 'event', event: 'customer.signed-up', eventId: free.body.eventId },
    ]);
    expect(await runsOf('other')).toEqual([]);
    const stored = await env.pool.query("SELECT count(*)::int AS n FROM events WHERE name = 'customer.signed-up'");
    expect(stored.rows[0].n).toBe(2);
    await request(app).post('/v1/events/Not%20Valid').send({}).expect(400);
  });

  it('chains workflows with ctx.emit, exactly once per step', async () => {
    await saveDefinition(env.pool, {
      name: 'checkout',
      steps: [{ id: 'place', function: 'place-order', input: { orderId: '{{ input.orderId }}' } }],
    });
    await saveDefinition(env.pool, {
      name: 'fulfil',
      triggers: [{ event: { name: 'order.placed' } }],
      steps: [{ id: 'ship', function: 'note', input: { workflow: 'fulfil', value: '{{ input.orderId }}' } }],
    });
    const res = await request(app)
      .post('/v1/workflows/checkout/runs')
      .send({ input: { orderId: 'o-7' } })
      .expect(202);
    await engine.waitForRun(res.body.runId);
    const fulfil = await waitFor(async () => {
      const rows = await runsOf('fulfil');
      return rows.length && rows.every((r) => r.status === 'succeeded') ? rows : undefined;
    });
    expect(fulfil).toHaveLength(1);
    expect(fulfil[0].input).toEqual({ orderId: 'o-7', total: 42 });
    expect(fulfil[0].trigger.type).toBe('event');
    const events = await env.pool.query("SELECT source FROM events WHERE name = 'order.placed'");
    expect(events.rows).toEqual([{ source: expect.objectContaining({ type: 'step', runId: res.body.runId }) }]);
  });

  it('sleeps durably and waits for a matching event across a restart of coordinator and functions', async () => {
    await saveDefinition(env.pool, {
      name: 'patient',
      steps: [
        { id: 'nap', sleep: { durationMs: 1500 } },
        {
          id: 'approval',
          waitForEvent: { name: 'approval.given', match: 'event.orderId = input.orderId', timeoutMs: 60_000 },
        },
        { id: 'done', function: 'note', input: { workflow: 'patient', value: '{{ steps.approval.output.by }}' } },
      ],
    });
    const res = await request(app)
      .post('/v1/workflows/patient/runs')
      .send({ input: { orderId: 'o-1' } })
      .expect(202);
    const runId = res.body.runId;
    await waitFor(async () => ((await getRun(runId)).steps[0]?.status === 'running' ? true : undefined));

    // Everything stops mid-sleep and comes back: the sleep still ends, once.
    await engine.close();
    await new Promise((r) => setTimeout(r, 2_000));
    engine = await startEngine(env, [note, placeOrder]);
    await waitFor(
      async () => ((await getRun(runId)).steps[1]?.status === 'running' ? true : undefined),
      10_000,
      'the wait',
    );

    // Parked on the wait: restart again, then an event for another order does not match, ours does.
    await engine.close();
    engine = await startEngine(env, [note, placeOrder]);
    app = testApp(env, engine.coordinatorQueue);
    await request(app)
      .post('/v1/events/approval.given')
      .send({ payload: { orderId: 'o-2', by: 'mallory' } })
      .expect(202);
    // Offered to the parked run (events.delivered_at is set once it was), and refused by its match.
    await waitFor(
      async () =>
        (
          await env.pool.query(
            `SELECT 1 FROM events WHERE name = 'approval.given' AND payload->>'orderId' = 'o-2' AND delivered_at IS NOT NULL`,
          )
        ).rows[0],
      10_000,
      'the o-2 event to be delivered',
    );
    expect((await getRun(runId)).status).toBe('running');
    await request(app)
      .post('/v1/events/approval.given')
      .send({ payload: { orderId: 'o-1', by: 'alice' } })
      .expect(202);
    await engine.waitForRun(runId);
    const run = await getRun(runId);
    expect(run.status).toBe('succeeded');
    expect(run.steps.map((s: { id: string; status: string }) => [s.id, s.status])).toEqual([
      ['nap', 'succeeded'],
      ['approval', 'succeeded'],
      ['done', 'succeeded'],
    ]);
    expect(run.steps[1].output).toEqual({ orderId: 'o-1', by: 'alice' });
    expect(run.output.done).toEqual({ noted: 'alice' });
    const slept = Date.parse(run.steps[0].finishedAt) - Date.parse(run.steps[0].startedAt);
    expect(slept).toBeGreaterThanOrEqual(1_400);
  }, 40_000);

  it('fails a waitForEvent step that times out', async () => {
    await saveDefinition(env.pool, {
      name: 'impatient',
      steps: [{ id: 'wait', waitForEvent: { name: 'never.comes', timeoutMs: 300 } }],
    });
    const res = await request(app).post('/v1/workflows/impatient/runs').send({}).expect(202);
    await engine.waitForRun(res.body.runId);
    const run = await getRun(res.body.runId);
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({ stepId: 'wait', code: 'EVENT_TIMEOUT' });
  });
});
