import request from 'supertest';
import { z } from 'zod';
import { createLogger, defineFunction, saveDefinition } from '@baton/engine';
import { Debouncer } from '../../services/coordinator/src';
import { startEngine, type Engine } from '../support/engine';
import { waitFor } from '../support/env';
import { UUID, useGatewaySuite } from '../support/gateway-suite';

/**
 * Debounced workflows through the gateway, with the real coordinator: a burst of triggers of one key
 * is one run with the latest input and `trigger.debounced.count`; keys are separate windows;
 * `maxWaitMs` closes a window a continuous stream keeps open; a window is fired exactly once across
 * a coordinator restart, a lost timer (the reconciler's sweep) and concurrent firers.
 */

const echo = defineFunction({
  name: 'db-echo',
  input: z.object({ k: z.string().optional(), n: z.number() }),
  handler: async (input) => input,
});

const fast = { attempts: 1 };
const steps = [{ id: 'echo', function: 'db-echo', input: { k: '{{ input.k }}', n: '{{ input.n }}' }, retry: fast }];

interface RunRow {
  id: string;
  status: string;
  input: { k?: string; n: number };
  trigger: { type: string; debounced: { count: number; key: string; firstAt: string; lastAt: string } };
  created_at: Date;
}

describe('gateway: debounced workflows', () => {
  const suite = useGatewaySuite('gateway-debounce');
  let engine: Engine | undefined;

  beforeAll(async () => {
    engine = await startEngine(suite.env, [echo]);
    await saveDefinition(suite.env.pool, { name: 'db-burst', debounce: { key: 'input.k', periodMs: 3000 }, steps });
    await saveDefinition(suite.env.pool, { name: 'db-cap', debounce: { periodMs: 600, maxWaitMs: 1200 }, steps });
    await saveDefinition(suite.env.pool, { name: 'db-restart', debounce: { key: 'input.k', periodMs: 200 }, steps });
    await saveDefinition(suite.env.pool, {
      name: 'db-event',
      triggers: [{ event: { name: 'db.changed' } }],
      debounce: { key: 'input.k', periodMs: 3000 },
      steps,
    });
  });

  suite.beforeCleanup(() => engine?.close());

  const trigger = (workflow: string, input: unknown) =>
    request(suite.app).post(`/v1/workflows/${workflow}/runs`).send({ input }).expect(202);

  const run = async (id: string): Promise<RunRow> => {
    await (engine as Engine).waitForRun(id, ['succeeded']);
    const { rows } = await suite.env.pool.query<RunRow>('SELECT * FROM runs WHERE id = $1', [id]);
    return rows[0];
  };

  const runsOf = async (workflow: string): Promise<RunRow[]> =>
    (await suite.env.pool.query<RunRow>('SELECT * FROM runs WHERE workflow_name = $1 ORDER BY created_at', [workflow]))
      .rows;

  const openWindows = async (workflow: string): Promise<number> =>
    (await suite.env.pool.query('SELECT 1 FROM debounces WHERE workflow_name = $1', [workflow])).rowCount ?? 0;

  it('a burst of triggers of one key is one run, with the latest input and the count', async () => {
    const answers = [];
    for (let n = 0; n < 5; n++) answers.push(await trigger('db-burst', { k: 'a', n }));
    const runId = answers[0].body.runId as string;
    expect(runId).toMatch(UUID);
    answers.forEach((a, i) => {
      expect(a.body).toMatchObject({
        runId,
        status: 'debounced',
        statusUrl: `/v1/runs/${runId}`,
        started: false,
        debounce: { key: 'a', count: i + 1, deadline: null },
      });
    });
    // Until the window fires, the run does not exist.
    await request(suite.app).get(`/v1/runs/${runId}`).expect(404);

    const fired = await run(runId);
    expect(fired.input).toEqual({ k: 'a', n: 4 });
    expect(fired.trigger).toMatchObject({ type: 'http', debounced: { count: 5, key: 'a' } });
    const shown = await request(suite.app).get(`/v1/runs/${runId}`).expect(200);
    expect(shown.body).toMatchObject({ input: { k: 'a', n: 4 }, trigger: { debounced: { count: 5, key: 'a' } } });
    // Runs are only inserted from a window's row: none left means no second run can come.
    expect(await openWindows('db-burst')).toBe(0);
    expect((await runsOf('db-burst')).map((r) => r.id)).toEqual([runId]);
  });

  it('concurrent triggers collapse too; separate keys are separate runs', async () => {
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, n) =>
        request(suite.app)
          .post('/v1/workflows/db-burst/runs')
          .send({ input: { k: n % 2 ? 'odd' : 'even', n } })
          .expect(202),
      ),
    );
    const byKey = new Map<string, { runId: string; count: number; n: number }[]>();
    answers.forEach((a, n) => {
      const list = byKey.get(a.body.debounce.key) ?? [];
      list.push({ runId: a.body.runId, count: a.body.debounce.count, n });
      byKey.set(a.body.debounce.key, list);
    });
    expect([...byKey.keys()].sort()).toEqual(['even', 'odd']);
    for (const [key, list] of byKey) {
      expect(new Set(list.map((l) => l.runId)).size).toBe(1);
      expect(list.map((l) => l.count).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5]);
      const latest = list.find((l) => l.count === 5)!;
      const fired = await run(latest.runId);
      expect(fired.input).toEqual({ k: key, n: latest.n });
      expect(fired.trigger.debounced.count).toBe(5);
    }
    expect(byKey.get('odd')![0].runId).not.toBe(byKey.get('even')![0].runId);
  });

  it('maxWaitMs closes a window that a continuous stream of triggers keeps open', async () => {
    const runIds: string[] = [];
    let sent = 0;
    // Triggers every 100 ms (< periodMs 600) until a fourth window has opened.
    while (new Set(runIds).size < 4) {
      const a = await trigger('db-cap', { n: sent });
      runIds.push(a.body.runId);
      sent += 1;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const windows = [...new Set(runIds)];
    const fired = await Promise.all(windows.slice(0, 3).map(run));
    // Every trigger of the closed windows is counted in its run, each window at most maxWaitMs long.
    for (const [i, r] of fired.entries()) {
      expect(r.trigger.debounced.count).toBe(runIds.filter((id) => id === windows[i]).length);
      const span = Date.parse(r.trigger.debounced.lastAt) - Date.parse(r.trigger.debounced.firstAt);
      expect(span).toBeLessThanOrEqual(1200);
    }
    // A window closed although the stream did not pause for periodMs: the next window's first trigger
    // came less than periodMs after its last one (a slow machine may pause the stream now and then).
    const gaps = [0, 1].map(
      (i) => Date.parse(fired[i + 1].trigger.debounced.firstAt) - Date.parse(fired[i].trigger.debounced.lastAt),
    );
    expect(Math.min(...gaps)).toBeLessThan(600);
  });

  it('a window due while the coordinator is down fires once when it is back, timer kept or lost', async () => {
    await (engine as Engine).close();
    engine = undefined;
    const kept = await trigger('db-restart', { k: 'kept', n: 1 });
    const lost = await trigger('db-restart', { k: 'lost', n: 2 });
    const raced = await trigger('db-restart', { k: 'raced', n: 3 });
    // The lost one's timer goes (a Redis wipe): only the reconciler's sweep can fire it.
    const lostJob = `debounce_${lost.body.runId}_${Date.parse(lost.body.debounce.firesAt)}`;
    expect(await suite.coordinator.getJob(lostJob)).toBeDefined();
    await suite.coordinator.remove(lostJob);
    await waitFor(
      async () => {
        const { rows } = await suite.env.pool.query(
          'SELECT count(*)::int AS n FROM debounces WHERE workflow_name = $1 AND fire_at <= now()',
          ['db-restart'],
        );
        return rows[0].n === 3 ? true : undefined;
      },
      10_000,
      'the windows to be due',
    );
    // Replicas firing one window at once: one of them starts its run.
    const logger = createLogger('test', 'silent');
    const firers = Array.from(
      { length: 4 },
      () => new Debouncer({ pool: suite.env.pool, coordinator: suite.coordinator, logger }),
    );
    const target = { workflow: 'db-restart', key: 'raced', runId: raced.body.runId as string };
    expect((await Promise.all(firers.map((f) => f.fire(target)))).filter(Boolean)).toHaveLength(1);

    engine = await startEngine(suite.env, [echo]);
    for (const a of [kept, lost, raced]) await run(a.body.runId);
    // A full reconciler pass (its sweep included) after the runs: still one run per window.
    await engine.reconciler.reconcileOnce();
    const runs = await runsOf('db-restart');
    expect(runs.map((r) => r.id).sort()).toEqual([kept, lost, raced].map((a) => a.body.runId as string).sort());
    expect(runs.map((r) => r.trigger.debounced.count)).toEqual([1, 1, 1]);
    expect(await openWindows('db-restart')).toBe(0);
  });

  it('events are debounced too: each publication names the run its window will start', async () => {
    const published = [];
    for (let n = 0; n < 3; n++) {
      published.push(
        await request(suite.app)
          .post('/v1/events/db.changed')
          .send({ payload: { k: 'ev', n } })
          .expect(202),
      );
    }
    const runIds = published.map((p) => p.body.runIds[0] as string);
    expect(new Set(runIds).size).toBe(1);
    const fired = await run(runIds[0]);
    expect(fired.input).toEqual({ k: 'ev', n: 2 });
    expect(fired.trigger).toMatchObject({ type: 'event', event: 'db.changed', debounced: { count: 3, key: 'ev' } });
  });

  it('a key that fails on the input is a 400 naming debounce.key', async () => {
    await saveDefinition(suite.env.pool, {
      name: 'db-badkey',
      debounce: { key: '$error("no key")', periodMs: 100 },
      steps,
    });
    const res = await request(suite.app)
      .post('/v1/workflows/db-badkey/runs')
      .send({ input: { n: 1 } })
      .expect(400);
    expect(res.body.error).toMatchObject({ code: 'INVALID_INPUT', details: [{ path: 'debounce.key' }] });
    expect(await openWindows('db-badkey')).toBe(0);
  });
});
