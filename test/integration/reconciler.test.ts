import crypto from 'node:crypto';
import { Worker, type Queue } from 'bullmq';
import {
  coordinatorQueue,
  createLogger,
  functionQueueName,
  getDefinition,
  metrics,
  saveDefinition,
  startRun,
} from '@baton/engine';
import { Coordinator, Reconciler } from '../../services/coordinator/src';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';

/**
 * The reconciler on real PostgreSQL and Redis, driven by hand: its timer never runs, each test calls
 * `reconcileOnce()` and counts passes, never wall-clock time. No function worker runs, so function
 * steps stay queued and runs stay where the test put them. Each test has its own database and Redis
 * prefix, so result counts are the test's own.
 */

const logger = createLogger('test', (process.env.TEST_LOG_LEVEL as 'silent') ?? 'silent');
const HOUR = 3_600_000;

interface Ctx {
  env: TestEnv;
  coordinator: Coordinator;
  queue: Queue;
  start(workflow: string, input?: unknown): Promise<string>;
  /** The run's outstanding execution ids (one per run in these workflows). */
  executionOf(runId: string): Promise<string>;
  close(): Promise<void>;
}

async function setup(name: string): Promise<Ctx> {
  const env = await createTestEnv(`reconciler-${name}`);
  const coordinator = new Coordinator({ pool: env.pool, queues: env.queues, logger, concurrency: 8 });
  coordinator.start();
  const queue = coordinatorQueue(env.queues);
  const definitions = [
    { name: 'parked', steps: [{ id: 'wait', waitForEvent: { name: 'never.comes', timeoutMs: HOUR } }] },
    { name: 'napping', steps: [{ id: 'nap', sleep: { durationMs: HOUR } }] },
    { name: 'stuck', steps: [{ id: 'work', function: 'nowhere', input: {} }] },
    { name: 'poison-out', steps: [{ id: 'work', function: 'poisoned', input: {} }] },
    { name: 'timed', timeoutMs: HOUR, steps: [{ id: 'work', function: 'nowhere', input: {} }] },
    {
      name: 'limited',
      concurrency: { limit: 1, key: 'input.k' },
      steps: [{ id: 'work', function: 'nowhere', input: {} }],
    },
  ];
  for (const d of definitions) await saveDefinition(env.pool, d);
  const start = async (workflow: string, input: unknown = {}) => {
    const definition = await getDefinition(env.pool, workflow);
    return (await startRun(env.pool, queue, { definition, input, trigger: { type: 'http' } })).runId;
  };
  const executionOf = (runId: string) =>
    waitFor(
      async () => {
        const { rows } = await env.pool.query(
          `SELECT id FROM step_executions WHERE run_id = $1 AND status IN ('queued', 'running')`,
          [runId],
        );
        return rows[0]?.id as string | undefined;
      },
      20_000,
      `an outstanding step of run ${runId}`,
    );
  return {
    env,
    coordinator,
    queue,
    start,
    executionOf,
    async close() {
      await coordinator.close();
      await queue.close();
      await env.cleanup();
    },
  };
}

/** Inserts a pending run as the gateway would, but without its `run.start`: as if the XADD was lost. */
async function insertLostStart(ctx: Ctx, workflow: string, input: unknown = {}): Promise<string> {
  const id = crypto.randomUUID();
  await ctx.env.pool.query(
    `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger)
     VALUES ($1, $2, 1, 'pending', $3, '{"type":"http"}')`,
    [id, workflow, JSON.stringify(input)],
  );
  return id;
}

async function counted(counter: 'reconcileFailuresTotal' | 'reconciledTotal', kind: string): Promise<number> {
  const { values } = await metrics[counter].get();
  return values.filter((v) => v.labels.kind === kind).reduce((sum, v) => sum + v.value, 0);
}

describe('reconciler', () => {
  let ctx: Ctx | undefined;

  afterEach(async () => {
    jest.restoreAllMocks();
    await ctx?.close();
    ctx = undefined;
  });

  it('reaches lost timers and jobs behind more parked waits than one page, within a bounded number of passes', async () => {
    ctx = await setup('starvation');
    const { coordinator, env } = ctx;
    // 120 runs parked on a one-hour waitForEvent: their timers exist, they need nothing.
    const parked = await Promise.all(Array.from({ length: 120 }, () => ctx!.start('parked')));
    await Promise.all(parked.map((id) => ctx!.executionOf(id)));
    // Then, newer than all of them: 5 sleeps and 3 function steps whose Redis work is lost.
    const sleeps = await Promise.all(Array.from({ length: 5 }, () => ctx!.start('napping')));
    const sleepSteps = await Promise.all(sleeps.map((id) => ctx!.executionOf(id)));
    const stuck = await Promise.all(Array.from({ length: 3 }, () => ctx!.start('stuck')));
    const stuckSteps = await Promise.all(stuck.map((id) => ctx!.executionOf(id)));
    const fnQueue = coordinator.functionQueue('nowhere');
    // Step jobs carry their run's priority (BullMQ's prioritized set, not its wait list).
    await waitFor(async () => ((await fnQueue.getPrioritizedCount()) === 3 ? true : undefined), 10_000, '3 jobs');

    for (const id of sleepSteps) expect(await coordinator.queue.remove(`step.wake_${id}`)).toBe(1);
    expect(await fnQueue.remove(stuckSteps[0])).toBe(1);
    expect(await fnQueue.remove(stuckSteps[1])).toBe(1);
    // The third is an orphan: its job hash survives, but it is in no list or set a worker reads.
    expect(await env.redis.zrem(fnQueue.keys.prioritized, stuckSteps[2])).toBe(1);
    expect(await fnQueue.getJobState(stuckSteps[2])).toBe('unknown');

    const ensure = jest.spyOn(coordinator, 'ensureBuiltinArmed');
    // 128 outstanding rows, 50 a page, one page a pass: every row is reached in ceil(128 / 50) = 3
    // passes; one more for good measure. (Not a fresh literal: the old reconciler had no such option.)
    const options = {
      pool: env.pool,
      coordinator,
      logger,
      intervalMs: HOUR,
      graceMs: 0,
      batchSize: 50,
      maxPagesPerPass: 1,
    };
    const reconciler = new Reconciler(options);
    for (let pass = 0; pass < 4; pass += 1) await reconciler.reconcileOnce();

    for (const id of sleepSteps) expect(await coordinator.queue.getJobState(`step.wake_${id}`)).toBe('delayed');
    for (const id of stuckSteps) expect(await fnQueue.getJobState(id)).toBe('prioritized');
    // Parked waits whose timer is there cost a pipelined lookup, not a coordinator call each.
    expect(ensure).toHaveBeenCalledTimes(sleepSteps.length);
    for (const id of parked.slice(0, 3)) {
      const step = await ctx.executionOf(id);
      expect(await coordinator.queue.getJobState(`step.waitTimeout_${step}`)).toBe('delayed');
    }
  });

  it('repairs every other row, idle run and overdue run when some repairs keep failing', async () => {
    ctx = await setup('isolation');
    const { coordinator, env } = ctx;

    // A: a finished job whose report was lost, and whose output PostgreSQL refuses (a NUL in jsonb).
    const poisonRun = await ctx.start('poison-out');
    const poisonStep = await ctx.executionOf(poisonRun);
    const worker = new Worker(functionQueueName('poisoned'), null, {
      connection: env.queues.connection,
      prefix: env.queues.prefix,
    });
    try {
      const job = await waitFor(async () => (await worker.getNextJob('test-token')) ?? undefined, 10_000, 'A job');
      expect(job.id).toBe(poisonStep);
      await job.moveToCompleted({ text: 'a\u0000b' }, 'test-token', false);
    } finally {
      await worker.close();
    }
    // B: a function step whose job was lost; C: a sleep whose timer was lost.
    const lostJobRun = await ctx.start('stuck');
    const lostJobStep = await ctx.executionOf(lostJobRun);
    const sleepRun = await ctx.start('napping');
    const sleepStep = await ctx.executionOf(sleepRun);
    // D1, D2: running runs past their deadline whose timeout message was lost.
    const overdue = [await ctx.start('timed'), await ctx.start('timed')];
    await Promise.all(overdue.map((id) => ctx!.executionOf(id)));
    // E1, E2: runs whose run.start was lost.
    const lostStarts = [await insertLostStart(ctx, 'stuck'), await insertLostStart(ctx, 'stuck')];
    const fnQueue = coordinator.functionQueue('nowhere');
    // Step jobs carry their run's priority (BullMQ's prioritized set, not its wait list).
    await waitFor(async () => ((await fnQueue.getPrioritizedCount()) === 3 ? true : undefined), 10_000, '3 jobs');
    expect(await fnQueue.remove(lostJobStep)).toBe(1);
    expect(await coordinator.queue.remove(`step.wake_${sleepStep}`)).toBe(1);

    // The failing ones come first in every order the reconciler reads.
    await env.pool.query(`UPDATE step_executions SET updated_at = now() - interval '1 hour' WHERE id = $1`, [
      poisonStep,
    ]);
    await env.pool.query(
      `UPDATE runs SET deadline_at = now() - interval '2 minutes' + (array_position($1::uuid[], id) * interval '1 second')
        WHERE id = ANY($1)`,
      [overdue],
    );
    await env.pool.query(`UPDATE runs SET updated_at = now() - interval '1 hour' WHERE id = $1`, [lostStarts[0]]);

    // Whatever the coordinator does with a NUL today, this replay, this timeout and this advance throw.
    const handle = coordinator.handle.bind(coordinator);
    jest.spyOn(coordinator, 'handle').mockImplementation(async (message, jobId) => {
      if (message.type === 'step.succeeded' && message.stepExecutionId === poisonStep) {
        throw Object.assign(new Error('unsupported Unicode escape sequence'), { code: '22P05' });
      }
      if (message.type === 'run.timeout' && message.runId === overdue[0]) throw new Error('timeout refused');
      return handle(message, jobId);
    });
    const advance = coordinator.advance.bind(coordinator);
    jest.spyOn(coordinator, 'advance').mockImplementation(async (runId) => {
      if (runId === lostStarts[0]) throw new Error('advance refused');
      return advance(runId);
    });

    const reconciler = new Reconciler({ pool: env.pool, coordinator, logger, intervalMs: HOUR, graceMs: 0 });
    const before = {
      step: await counted('reconcileFailuresTotal', 'step'),
      timeout: await counted('reconcileFailuresTotal', 'run_timeout'),
      advance: await counted('reconcileFailuresTotal', 'run_advance'),
    };
    const first = await reconciler.reconcileOnce();
    expect(first).toMatchObject({ stepsRequeued: 2, runsTimedOut: 1, reportsReplayed: 0 });

    expect(await fnQueue.getJobState(lostJobStep)).toBe('prioritized');
    expect(await coordinator.queue.getJobState(`step.wake_${sleepStep}`)).toBe('delayed');
    const runs = async (ids: string[]) =>
      (await env.pool.query('SELECT id, status FROM runs WHERE id = ANY($1)', [ids])).rows.reduce(
        (acc, r) => ({ ...acc, [r.id]: r.status }),
        {} as Record<string, string>,
      );
    const afterFirst = await runs([...overdue, ...lostStarts]);
    expect(afterFirst[overdue[0]]).toBe('running');
    expect(afterFirst[overdue[1]]).not.toBe('running');
    expect(afterFirst[lostStarts[0]]).toBe('pending');
    expect(afterFirst[lostStarts[1]]).toBe('running');
    expect(await counted('reconcileFailuresTotal', 'step')).toBe(before.step + 1);
    expect(await counted('reconcileFailuresTotal', 'run_timeout')).toBe(before.timeout + 1);
    expect(await counted('reconcileFailuresTotal', 'run_advance')).toBe(before.advance + 1);

    // They keep failing, pass after pass, and keep being counted; nothing else is held up.
    await reconciler.reconcileOnce();
    expect(await counted('reconcileFailuresTotal', 'step')).toBe(before.step + 2);
    expect(await counted('reconcileFailuresTotal', 'run_timeout')).toBe(before.timeout + 2);
    expect(await counted('reconcileFailuresTotal', 'run_advance')).toBe(before.advance + 2);
  });

  it('leaves runs held by a concurrency limit alone, but starts lost starts and wakes runs a free slot admits', async () => {
    ctx = await setup('concurrency');
    const { coordinator, env } = ctx;
    const holder = await ctx.start('limited', { k: 'a' });
    const holderStep = await ctx.executionOf(holder);
    const held: string[] = [];
    for (let i = 0; i < 3; i += 1) held.push(await ctx.start('limited', { k: 'a' }));
    const status = async (ids: string[]) =>
      (
        await env.pool.query(
          `SELECT status, concurrency_key FROM runs WHERE id = ANY($1) ORDER BY array_position($1::uuid[], id)`,
          [ids],
        )
      ).rows.map((r) => `${r.status}:${r.concurrency_key}`);
    // Admission ran for each and found the slot taken.
    await waitFor(
      async () => ((await status(held)).every((s) => s === 'pending:a') ? true : undefined),
      10_000,
      'held runs',
    );
    // Two runs whose run.start was lost: one of a free key, one of the full one.
    const lostFree = await insertLostStart(ctx, 'limited', { k: 'b' });
    const lostFull = await insertLostStart(ctx, 'limited', { k: 'a' });

    const reconciler = new Reconciler({ pool: env.pool, coordinator, logger, intervalMs: HOUR, graceMs: 0 });
    // Pass 1 starts both lost starts: one admitted, the other now held like the rest.
    expect((await reconciler.reconcileOnce()).runsAdvanced).toBe(2);
    expect(await status([lostFree, lostFull])).toEqual(['running:b', 'pending:a']);
    // Later passes leave the held runs alone: the slot is taken.
    for (let pass = 0; pass < 3; pass += 1) expect((await reconciler.reconcileOnce()).runsAdvanced).toBe(0);
    expect(await status([holder, ...held, lostFull])).toEqual([
      'running:a',
      'pending:a',
      'pending:a',
      'pending:a',
      'pending:a',
    ]);

    // The holder finishes, but its wake-up of the next run is lost (a crash after the commit).
    await env.pool.query(`UPDATE step_executions SET status = 'cancelled' WHERE id = $1`, [holderStep]);
    await env.pool.query(`UPDATE runs SET status = 'cancelled', finished_at = now() WHERE id = $1`, [holder]);
    // The oldest held run takes the free slot; the others keep waiting.
    expect((await reconciler.reconcileOnce()).runsAdvanced).toBe(1);
    expect(await status(held)).toEqual(['running:a', 'pending:a', 'pending:a']);
    expect((await reconciler.reconcileOnce()).runsAdvanced).toBe(0);
  });
});
