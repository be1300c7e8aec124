import { Queue } from 'bullmq';
import request from 'supertest';
import { z } from 'zod';
import { createLogger, defineFunction, functionQueueName, saveDefinition } from '@baton/engine';
import { createApp } from '../../services/gateway/src/app';
import { BacklogReader } from '../../services/coordinator/src/backlog';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';

/**
 * Function pause and resume (issue 18) through the gateway, with the real coordinator, reconciler
 * and function runtime: a paused function's queue hands out no job (the running one finishes, new
 * step jobs wait), KEDA's backlog reads 0 for it, the pause is stored in PostgreSQL and comes back
 * after its queue is wiped from Redis, and a resume lets the waiting runs finish.
 */

/** Handler calls by run, and a gate the first call waits on. */
const calls: string[] = [];
let release: () => void = () => undefined;
const gate = new Promise<void>((resolve) => {
  release = resolve;
});

const gated = defineFunction({
  name: 'gated-fn',
  input: z.object({ n: z.number() }),
  handler: async ({ n }) => {
    calls.push(`n${n}`);
    if (n === 1) await gate;
    return { n };
  },
});

describe('function pause and resume', () => {
  let env: TestEnv;
  let engine: Engine;
  let queue: Queue;
  /** Jobs waiting to be handed out: step jobs carry their run's priority (BullMQ's prioritized set). */
  const waitingJobs = async (): Promise<number> => {
    const counts = await queue.getJobCounts('waiting', 'prioritized');
    return (counts.waiting ?? 0) + (counts.prioritized ?? 0);
  };
  let backlog: BacklogReader;
  let app: ReturnType<typeof createApp>;
  const runs: Record<string, string> = {};

  const jobOf = async (runId: string): Promise<string | undefined> =>
    (
      await env.pool.query<{ id: string }>(`SELECT id FROM step_executions WHERE run_id = $1 AND status = 'queued'`, [
        runId,
      ])
    ).rows[0]?.id;

  beforeAll(async () => {
    env = await createTestEnv('function-control');
    await saveDefinition(env.pool, {
      name: 'gated',
      steps: [{ id: 'only', function: 'gated-fn', input: { n: '{{ input.n }}' }, retry: { attempts: 1 } }],
    });
    engine = await startEngine(env, [gated]);
    queue = new Queue(functionQueueName('gated-fn'), { connection: env.redis, prefix: env.config.queuePrefix });
    backlog = new BacklogReader(env.queues, env.redis);
    const deps = {
      pool: env.pool,
      redis: env.redis,
      coordinator: engine.coordinatorQueue,
      logger: createLogger('test', 'silent'),
    };
    app = createApp({
      ...deps,
      config: { ...env.config, port: 0, apiKeys: ['full-key'], readOnlyApiKeys: ['ro-key'], bodyLimit: '1mb' },
    });
  });

  afterAll(async () => {
    release();
    await backlog?.close();
    await queue?.close();
    await engine?.close();
    await env?.cleanup();
  });

  const post = (path: string, key = 'full-key') => request(app).post(path).set('Authorization', `Bearer ${key}`);
  const listed = async (name: string) => {
    const res = await request(app).get('/v1/functions').set('Authorization', 'Bearer ro-key');
    expect(res.status).toBe(200);
    return res.body.functions.find((f: { name: string }) => f.name === name);
  };

  it('answers 404 for a function nobody knows, and 403 to a read-only key', async () => {
    const res = await post('/v1/functions/no-such-fn/pause');
    expect(res.status).toBe(404);
    expect(res.body.error).toMatchObject({ code: 'NOT_FOUND' });
    expect(res.body.error.message).toContain("function 'no-such-fn' not found");
    expect((await post('/v1/functions/gated-fn/pause', 'ro-key')).status).toBe(403);
    expect((await post('/v1/functions/gated-fn/pause').send({ reason: '' })).status).toBe(400);
    expect(await listed('gated-fn')).toMatchObject({ paused: false, pausedAt: null, pauseReason: null });
  });

  it('a paused function finishes its running attempt and hands out no new job; KEDA reads 0', async () => {
    runs.a = await engine.start('gated', { n: 1 });
    await waitFor(async () => (calls.includes('n1') ? true : undefined), 20_000, 'the first attempt to run');

    const paused = await post('/v1/functions/gated-fn/pause').send({ reason: 'payment API down' });
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({ name: 'gated-fn', paused: true, pauseReason: 'payment API down' });
    expect(Date.parse(paused.body.pausedAt)).not.toBeNaN();
    expect(await queue.isPaused()).toBe(true);

    runs.b = await engine.start('gated', { n: 2 });
    runs.c = await engine.start('gated', { n: 3 });
    // Both step jobs are enqueued and wait.
    await waitFor(
      async () => ((await waitingJobs()) >= 2 ? true : undefined),
      20_000,
      'the new step jobs to be enqueued',
    );
    // The running attempt finishes...
    release();
    await engine.waitForRun(runs.a, ['succeeded']);
    const jobA = (await env.pool.query<{ id: string }>(`SELECT id FROM step_executions WHERE run_id = $1`, [runs.a]))
      .rows[0].id;
    // ...and once BullMQ has moved its job to completed (the moment a worker takes its next job),
    // nothing else was handed out.
    await waitFor(async () => ((await queue.getJob(jobA))?.finishedOn ? true : undefined), 20_000, 'job A finished');
    expect(calls).toEqual(['n1']);
    expect(await waitingJobs()).toBe(2);
    expect(await backlog.read('gated-fn')).toMatchObject({ paused: true, prioritized: 2, active: 0, backlog: 0 });
    expect(await listed('gated-fn')).toMatchObject({
      paused: true,
      pauseReason: 'payment API down',
      jobs: { prioritized: 2, active: 0 },
    });
    // Pausing again keeps the first pause's time.
    const again = await post('/v1/functions/gated-fn/pause');
    expect(again.body).toMatchObject({ paused: true, pausedAt: paused.body.pausedAt, pauseReason: 'payment API down' });
  });

  it('stays paused when Redis loses its queue (reconciler) or the coordinator restarts', async () => {
    const jobB = await jobOf(runs.b);
    expect(jobB).toBeDefined();
    // A wipe of the function queue: jobs and the paused flag gone.
    const keys = await env.redis.keys(`${env.config.queuePrefix}:{fn.gated-fn}:*`);
    expect(keys.length).toBeGreaterThan(0);
    await env.redis.del(...keys);
    expect(await queue.isPaused()).toBe(false);
    // The reconciler puts the pause back before it re-enqueues the lost jobs.
    await waitFor(
      async () => ((await waitingJobs()) >= 2 && (await queue.getJob(jobB!)) ? true : undefined),
      30_000,
      'the reconciler to re-enqueue the lost jobs',
    );
    expect(await queue.isPaused()).toBe(true);
    // A coordinator start applies the stored state too (services/coordinator/src/main.ts).
    await env.redis.hdel(queue.keys.meta, 'paused');
    expect(await queue.isPaused()).toBe(false);
    await expect(engine.coordinator.syncFunctionPauses()).resolves.toEqual({ paused: ['gated-fn'], resumed: [] });
    expect(await queue.isPaused()).toBe(true);
    // The re-enqueued jobs were never handed out.
    expect(calls).toEqual(['n1']);
  });

  it('resumes: the waiting runs finish', async () => {
    const resumed = await post('/v1/functions/gated-fn/resume');
    expect(resumed.status).toBe(200);
    expect(resumed.body).toEqual({ name: 'gated-fn', paused: false, pausedAt: null, pauseReason: null });
    await engine.waitForRun(runs.b, ['succeeded']);
    await engine.waitForRun(runs.c, ['succeeded']);
    expect([...calls].sort()).toEqual(['n1', 'n2', 'n3']);
    expect(await listed('gated-fn')).toMatchObject({ paused: false, pauseReason: null });
    // Resumed is stored too: a sync leaves the queue running.
    await expect(engine.coordinator.syncFunctionPauses()).resolves.toEqual({ paused: [], resumed: [] });
    expect(await queue.isPaused()).toBe(false);
  });
});
