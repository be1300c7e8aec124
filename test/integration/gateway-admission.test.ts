import request from 'supertest';
import { z } from 'zod';
import {
  createLogger,
  defineFunction,
  RunStarter,
  setWorkflowPaused,
  startFunctionWorker,
  type FunctionWorker,
} from '@baton/engine';
import { startEngine, TERMINAL, type Engine } from '../support/engine';
import { waitFor } from '../support/env';
import { useGatewaySuite } from '../support/gateway-suite';

/**
 * Admission of runs through the gateway, with the real coordinator, reconciler and function runtime:
 * a workflow `rateLimit` (starts counted per window from the stored `runs.started_at`), `priority`
 * (the order step jobs are taken from a function queue and held runs are admitted, read from stored
 * start times), and workflow pause/resume. Rates and orders are counted from PostgreSQL, never
 * asserted against the wall clock.
 */

const work = defineFunction({
  name: 'adm-work',
  input: z.object({ n: z.number().optional() }).passthrough(),
  handler: async () => ({ ok: true }),
});

/** Held open until the test releases it: a run that keeps its concurrency slot. */
let release: () => void = () => undefined;
let gate = new Promise<void>((resolve) => (release = resolve));
const hold = defineFunction({
  name: 'adm-hold',
  input: z.object({}).passthrough(),
  handler: async () => {
    await gate;
    return { released: true };
  },
});

/** Only run by a worker of concurrency 1 the test starts itself, once every job is queued. */
const ordered = defineFunction({
  name: 'adm-ordered',
  input: z.object({ p: z.number() }).passthrough(),
  handler: async () => ({ ok: true }),
});

const fast = { attempts: 1 };

interface Started {
  id: string;
  created: number;
  started: number;
  priority: number;
  input: { n: number; p?: number; who?: string };
}

describe('gateway: admission (rate limit, priority, pause)', () => {
  const suite = useGatewaySuite('gateway-admission');
  let engine: Engine;

  const startRun = async (workflow: string, input: Record<string, unknown>): Promise<string> => {
    const res = await request(suite.app).post(`/v1/workflows/${workflow}/runs`).send({ input }).expect(202);
    return res.body.runId as string;
  };
  const waitAll = async (ids: string[], statuses = ['succeeded']) => {
    for (const id of ids) expect((await engine.waitForRun(id, TERMINAL, 60_000)).status).toMatch(statuses.join('|'));
  };
  /**
   * The runs' stored start times (ms since epoch, microsecond precision), in start order; runs one
   * transaction admitted together share their start time, and are then in arrival order.
   */
  const starts = async (ids: string[]): Promise<Started[]> => {
    const { rows } = await suite.env.pool.query<Started>(
      `SELECT id, extract(epoch FROM created_at) * 1000 AS created, extract(epoch FROM started_at) * 1000 AS started,
              priority, input
         FROM runs WHERE id = ANY($1::uuid[]) ORDER BY started_at, created_at`,
      [ids],
    );
    return rows.map((r) => ({ ...r, created: Number(r.created), started: Number(r.started) }));
  };

  beforeAll(async () => {
    engine = await startEngine(suite.env, [work, hold], { reconcileIntervalMs: 250, reconcileGraceMs: 500 });
  });
  suite.beforeCleanup(async () => {
    release();
    await engine.close();
  });

  describe('rateLimit', () => {
    it('starts at most `limit` runs per period, in arrival order, and drops none', async () => {
      await request(suite.app)
        .put('/v1/workflows/adm-rate')
        .send({
          rateLimit: { limit: 3, periodMs: 1000 },
          steps: [{ id: 'w', function: 'adm-work', input: { n: '{{ input.n }}' }, retry: fast }],
        })
        .expect(201);
      const ids: string[] = [];
      for (let n = 0; n < 12; n += 1) ids.push(await startRun('adm-rate', { n }));
      await waitAll(ids);

      const runs = await starts(ids);
      expect(runs).toHaveLength(12);
      // Any 4 consecutive starts span at least a period: no window of 1000 ms holds more than 3.
      const spans = runs.slice(3).map((r, i) => r.started - runs[i].started);
      expect(Math.min(...spans)).toBeGreaterThanOrEqual(1000);
      // First come, first served: started in the order they were started through the API.
      expect(runs.map((r) => r.input.n)).toEqual([...Array(12).keys()]);
      // Counted per window: the most starts any 1000 ms window holds (measured, for the report).
      const perWindow = Math.max(
        ...runs.map((r) => runs.filter((o) => o.started >= r.started && o.started < r.started + 1000).length),
      );
      expect(perWindow).toBe(3);
    }, 90_000);

    it('keeps one bucket per value of `key`', async () => {
      await request(suite.app)
        .put('/v1/workflows/adm-rate-key')
        .send({
          rateLimit: { limit: 2, periodMs: 1000, key: 'input.who' },
          steps: [{ id: 'w', function: 'adm-work', input: { n: '{{ input.n }}' }, retry: fast }],
        })
        .expect(201);
      const ids: string[] = [];
      for (let n = 0; n < 4; n += 1) ids.push(await startRun('adm-rate-key', { n, who: 'a' }));
      for (let n = 4; n < 8; n += 1) ids.push(await startRun('adm-rate-key', { n, who: 'b' }));
      await waitAll(ids);
      const runs = await starts(ids);
      for (const who of ['a', 'b']) {
        const mine = runs.filter((r) => r.input.who === who);
        expect(mine[2].started - mine[0].started).toBeGreaterThanOrEqual(1000);
        expect(mine[3].started - mine[1].started).toBeGreaterThanOrEqual(1000);
      }
      // Bucket b did not wait behind bucket a: its first two started before a's third.
      const a = runs.filter((r) => r.input.who === 'a');
      const b = runs.filter((r) => r.input.who === 'b');
      expect(b[1].started).toBeLessThan(a[2].started);
    }, 60_000);
  });

  describe('first come, first served across reading loops', () => {
    /** A run stored as the gateway stores it, whose `run.start` has not reached the coordinator yet. */
    const insertUnstarted = async (workflow: string, input: Record<string, unknown>): Promise<string> => {
      const started = await new RunStarter(suite.env.pool, undefined).start({
        workflow,
        input,
        trigger: { type: 'http' },
      });
      return started.runId;
    };
    const admissionOf = (id: string) =>
      waitFor(async () => {
        const { rows } = await suite.env.pool.query<{ concurrency_key: string | null; started_at: Date | null }>(
          'SELECT concurrency_key, started_at FROM runs WHERE id = $1',
          [id],
        );
        return rows[0].concurrency_key === null ? undefined : rows[0];
      });

    it('holds a run while one that arrived before it has not been looked at, then starts them in order', async () => {
      await request(suite.app)
        .put('/v1/workflows/adm-fifo')
        .send({
          concurrency: { limit: 1 },
          steps: [{ id: 'w', function: 'adm-work', input: { n: '{{ input.n }}' }, retry: fast }],
        })
        .expect(201);
      // Run 1's start is still on its way (in the other reading loop) when run 2's is applied.
      const first = await insertUnstarted('adm-fifo', { n: 1 });
      const second = await startRun('adm-fifo', { n: 2 });
      // Admission has looked at run 2 (its group and its start are written in one statement).
      expect((await admissionOf(second)).started_at).toBeNull();
      await engine.coordinatorQueue.sendToInbox([{ type: 'run.start', runId: first }], 'test');
      await waitAll([first, second]);
      expect((await starts([first, second])).map((r) => r.id)).toEqual([first, second]);
    }, 60_000);

    it('holds a run of another key too, and admits it once the earlier run is looked at', async () => {
      await request(suite.app)
        .put('/v1/workflows/adm-fifo-key')
        .send({
          concurrency: { limit: 1, key: 'input.who' },
          steps: [{ id: 'w', function: 'adm-work', input: { n: '{{ input.n }}' }, retry: fast }],
        })
        .expect(201);
      const first = await insertUnstarted('adm-fifo-key', { n: 1, who: 'a' });
      const second = await startRun('adm-fifo-key', { n: 2, who: 'b' });
      // Run 1's key is not known until it is looked at: it may be run 2's.
      expect((await admissionOf(second)).started_at).toBeNull();
      await engine.coordinatorQueue.sendToInbox([{ type: 'run.start', runId: first }], 'test');
      // Run 1's admission wakes its own key only: run 2's wakes itself.
      await waitAll([first, second]);
    }, 60_000);
  });

  describe('priority', () => {
    it('admits held runs by priority, first come first served within one (concurrency 1)', async () => {
      await request(suite.app)
        .put('/v1/workflows/adm-prio')
        .send({
          concurrency: { limit: 1 },
          priority: '{{ input.p }}',
          steps: [
            { id: 'gate', function: 'adm-hold', if: 'input.p = 5', retry: fast },
            { id: 'w', function: 'adm-work', input: { n: '{{ input.n }}' }, retry: fast },
          ],
        })
        .expect(201);
      gate = new Promise<void>((resolve) => (release = resolve));
      // The first run (priority 5) holds the only slot until released.
      const blocker = await startRun('adm-prio', { n: 0, p: 5 });
      await waitFor(async () => {
        const { rows } = await suite.env.pool.query(
          `SELECT 1 FROM step_executions WHERE run_id = $1 AND step_id = 'gate' AND status = 'running'`,
          [blocker],
        );
        return rows.length ? true : undefined;
      });
      const ids: string[] = [];
      const priorities = [9, 1, 9, 3, 1, 9, 3, 1];
      for (const [i, p] of priorities.entries()) ids.push(await startRun('adm-prio', { n: i + 1, p }));
      // Every one went through admission and is held (its admission group written).
      await waitFor(async () => {
        const { rows } = await suite.env.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM runs WHERE id = ANY($1::uuid[]) AND status = 'pending' AND concurrency_key IS NOT NULL`,
          [ids],
        );
        return rows[0].n === ids.length ? true : undefined;
      });
      release();
      await waitAll([blocker, ...ids]);
      const runs = await starts(ids);
      expect(runs.map((r) => r.priority)).toEqual([1, 1, 1, 3, 3, 9, 9, 9]);
      // The API shows the stored priority.
      const shown = await request(suite.app).get(`/v1/runs/${ids[1]}`).expect(200);
      expect(shown.body.priority).toBe(1);
      // FIFO within a priority: their `n` (arrival) ascending.
      for (const p of [1, 3, 9]) {
        const ns = runs.filter((r) => r.priority === p).map((r) => r.input.n);
        expect(ns).toEqual([...ns].sort((x, y) => x - y));
      }
    }, 60_000);

    it('counts the runs a batch admitted before, whatever their priority (one transaction)', async () => {
      await request(suite.app)
        .put('/v1/workflows/adm-batch')
        .send({
          concurrency: { limit: 1 },
          priority: '{{ input.p }}',
          steps: [{ id: 'gate', function: 'adm-hold', retry: fast }],
        })
        .expect(201);
      await request(suite.app)
        .put('/v1/workflows/adm-batch-rate')
        .send({ rateLimit: { limit: 2, periodMs: 60_000 }, steps: [{ id: 'w', function: 'adm-work', retry: fast }] })
        .expect(201);
      gate = new Promise<void>((resolve) => (release = resolve));
      // Rows only, no run.start on the inbox: the test hands both starts to the coordinator as one
      // batch, in this order (a low-priority run first, admitted; then a high-priority one).
      const insert = async (workflow: string, input: unknown) => {
        const { rows } = await suite.env.pool.query<{ id: string }>(
          `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger)
           VALUES (gen_random_uuid(), $1, 1, 'pending', $2, '{"type":"http"}') RETURNING id`,
          [workflow, JSON.stringify(input)],
        );
        return rows[0].id;
      };
      const low = await insert('adm-batch', { p: 9 });
      const high = await insert('adm-batch', { p: 1 });
      const r1 = await insert('adm-batch-rate', {});
      const r2 = await insert('adm-batch-rate', {});
      await engine.coordinator.handleBatch([low, high, r1, r2].map((runId) => ({ type: 'run.start' as const, runId })));
      const { rows } = await suite.env.pool.query<{ id: string; status: string }>(
        'SELECT id, status FROM runs WHERE id = ANY($1::uuid[])',
        [[low, high, r1, r2]],
      );
      const status = new Map(rows.map((r) => [r.id, r.status]));
      // Concurrency 1: the high-priority run did not take a second slot beside the admitted one.
      expect([status.get(low), status.get(high)]).toEqual(['running', 'pending']);
      // Rate 2: the second start of the window was not held by the first (counted once, not twice).
      expect(status.get(r1)).not.toBe('pending');
      expect(status.get(r2)).not.toBe('pending');
      release();
      await waitAll([low, high, r1, r2]);
    }, 60_000);

    it('has a run’s step jobs taken first from the function queue', async () => {
      await request(suite.app)
        .put('/v1/workflows/adm-queue')
        .send({
          priority: '{{ input.p }}',
          steps: [{ id: 'w', function: 'adm-ordered', input: { p: '{{ input.p }}' }, retry: fast }],
        })
        .expect(201);
      const priorities = [5, 10, 1, 5, 2, 10, 1, 5];
      const ids: string[] = [];
      for (const [n, p] of priorities.entries()) ids.push(await startRun('adm-queue', { n, p }));
      // No worker takes them yet: wait until every job is in Redis, then start one of concurrency 1.
      // The coordinator's own handle on the queue (closed with the engine).
      const queue = engine.coordinator.functionQueue('adm-ordered');
      let worker: FunctionWorker | undefined;
      try {
        await waitFor(async () => {
          const counts = await queue.getJobCounts('waiting', 'prioritized');
          return (counts.waiting ?? 0) + (counts.prioritized ?? 0) === ids.length ? true : undefined;
        });
        // A job Redis lost comes back from the reconciler with its run's priority.
        const { rows: lost } = await suite.env.pool.query<{ id: string }>(
          'SELECT id FROM step_executions WHERE run_id = $1',
          [ids[2]],
        );
        expect((await queue.getJob(lost[0].id))?.opts.priority).toBe(1);
        expect(await queue.remove(lost[0].id)).toBe(1);
        const requeued = await waitFor(async () => (await queue.getJob(lost[0].id)) ?? undefined);
        expect(requeued.opts.priority).toBe(1);
        worker = startFunctionWorker(ordered, {
          queues: suite.env.queues,
          logger: createLogger('test', 'silent'),
          concurrency: 1,
        });
        await waitAll(ids);
      } finally {
        await worker?.close();
      }
      const { rows } = await suite.env.pool.query<{ p: number; n: number }>(
        `SELECT (r.input->>'p')::int AS p, (r.input->>'n')::int AS n
           FROM step_executions e JOIN runs r ON r.id = e.run_id
          WHERE e.run_id = ANY($1::uuid[]) ORDER BY e.started_at, e.id`,
        [ids],
      );
      expect(rows.map((r) => r.p)).toEqual([1, 1, 2, 5, 5, 5, 10, 10]);
      expect(rows.filter((r) => r.p === 5).map((r) => r.n)).toEqual([0, 3, 7]);
    }, 60_000);

    it('fails a run whose priority template resolves to no priority', async () => {
      await request(suite.app)
        .put('/v1/workflows/adm-bad-prio')
        .send({ priority: '{{ input.p }}', steps: [{ id: 'w', function: 'adm-work', retry: fast }] })
        .expect(201);
      const id = await startRun('adm-bad-prio', { p: 42 });
      const run = await engine.waitForRun(id);
      expect(run.status).toBe('failed');
      expect(run.error).toMatchObject({ code: 'EXPRESSION_FAILED', message: expect.stringMatching(/priority/) });
    });
  });

  describe('pause and resume', () => {
    const define = (name: string) =>
      request(suite.app)
        .put(`/v1/workflows/${name}`)
        .send({ steps: [{ id: 'w', function: 'adm-work', input: { n: '{{ input.n }}' }, retry: fast }] })
        .expect(201);

    it('holds new runs of a paused workflow until it is resumed, then runs them in order', async () => {
      await define('adm-paused');
      await define('adm-other');
      const paused = await request(suite.app).post('/v1/workflows/adm-paused/pause').expect(200);
      expect(paused.body).toEqual({ name: 'adm-paused', paused: true, pausedAt: expect.any(String) });
      const list = await request(suite.app).get('/v1/workflows').expect(200);
      expect(list.body.workflows.find((w: { name: string }) => w.name === 'adm-paused')).toMatchObject({
        paused: true,
      });
      expect(list.body.workflows.find((w: { name: string }) => w.name === 'adm-other')).toMatchObject({
        paused: false,
        pausedAt: null,
      });

      const ids: string[] = [];
      for (let n = 0; n < 5; n += 1) ids.push(await startRun('adm-paused', { n }));
      // A later run of another workflow finishing: the coordinator has had its chance at these.
      const other = await startRun('adm-other', { n: 0 });
      expect((await engine.waitForRun(other)).status).toBe('succeeded');
      await waitFor(async () => {
        const { rows } = await suite.env.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM runs WHERE id = ANY($1::uuid[]) AND concurrency_key IS NOT NULL`,
          [ids],
        );
        return rows[0].n === ids.length ? true : undefined;
      });
      // And a reconciler pass that started after them ended (it must not admit them either).
      await engine.reconciler.reconcileOnce();
      const { rows } = await suite.env.pool.query<{ status: string; started_at: Date | null }>(
        'SELECT status, started_at FROM runs WHERE id = ANY($1::uuid[])',
        [ids],
      );
      expect(rows.map((r) => r.status)).toEqual(ids.map(() => 'pending'));
      expect(rows.every((r) => r.started_at === null)).toBe(true);
      const detail = await request(suite.app).get('/v1/workflows/adm-paused').expect(200);
      expect(detail.body).toMatchObject({ paused: true });

      const resumed = await request(suite.app).post('/v1/workflows/adm-paused/resume').expect(200);
      expect(resumed.body).toEqual({ name: 'adm-paused', paused: false, pausedAt: null });
      await waitAll(ids);
      expect((await starts(ids)).map((r) => r.input.n)).toEqual([0, 1, 2, 3, 4]);
    }, 60_000);

    it('admits the runs of a resumed workflow whose wake-up was lost (the reconciler)', async () => {
      await define('adm-lost');
      await request(suite.app).post('/v1/workflows/adm-lost/pause').expect(200);
      const ids: string[] = [];
      for (let n = 0; n < 3; n += 1) ids.push(await startRun('adm-lost', { n }));
      await waitFor(async () => {
        const { rows } = await suite.env.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM runs WHERE id = ANY($1::uuid[]) AND concurrency_key IS NOT NULL`,
          [ids],
        );
        return rows[0].n === ids.length ? true : undefined;
      });
      // Resumed in PostgreSQL only: no `workflow.resume` message reaches the coordinator.
      await setWorkflowPaused(suite.env.pool, 'adm-lost', false);
      await waitAll(ids);
    }, 60_000);

    it('answers 404 for an unknown workflow and 403 to a read-only key', async () => {
      await request(suite.app).post('/v1/workflows/nope/pause').expect(404);
      const app = suite.appWith({ apiKeys: ['writer'], readOnlyApiKeys: ['reader'] });
      await request(app).post('/v1/workflows/greet/pause').set('Authorization', 'Bearer reader').expect(403);
      await request(app).post('/v1/workflows/greet/resume').set('Authorization', 'Bearer reader').expect(403);
      await request(app).get('/v1/workflows/greet').set('Authorization', 'Bearer reader').expect(200);
    });
  });

  describe('definition checks', () => {
    const put = (body: Record<string, unknown>) =>
      request(suite.app)
        .put('/v1/workflows/adm-invalid')
        .send({ steps: [{ id: 'w', function: 'adm-work' }], ...body })
        .expect(400);

    it.each([
      [{ rateLimit: { limit: 0, periodMs: 1000 } }, 'rateLimit.limit'],
      [{ rateLimit: { limit: 3 } }, 'rateLimit.periodMs'],
      [{ rateLimit: { limit: 3, periodMs: 1000, key: 'input.(' } }, 'rateLimit.key'],
      [{ rateLimit: { limit: 3, periodMs: 1000, burst: 2 } }, 'rateLimit'],
      [{ priority: 0 }, 'priority'],
      [{ priority: 11 }, 'priority'],
      [{ priority: 2.5 }, 'priority'],
      [{ priority: 'high' }, 'priority'],
      [{ priority: '{{ input.( }}' }, 'priority'],
    ])('%j → 400 naming %s', async (body, path) => {
      const res = await put(body);
      expect(res.body.error.code).toBe('INVALID_DEFINITION');
      expect(res.body.error.details.map((d: { path: string }) => d.path)).toContain(path);
    });
  });
});
