import { Queue } from 'bullmq';
import {
  coordinatorJobId,
  createLogger,
  defineFunction,
  functionQueueName,
  inboxKey,
  metrics,
  RunStarter,
  saveDefinition,
  StepQueues,
  type CoordinatorClient,
  type StartedRun,
  type StepJobData,
} from '@baton/engine';
import { z } from 'zod';
import { Coordinator, Reconciler } from '../../services/coordinator/src';
import { createTestEnv, type TestEnv } from '../support/env';
import { startEngine, type Engine } from '../support/engine';

/**
 * A run started with its first steps (issue 16, shared/src/direct-start.ts): the gateway's statement
 * writes the run `running` with step 1 `queued`, and the gateway enqueues the job itself, with the
 * data the coordinator would have built. What must not take that path (admission limits, a paused
 * workflow) still goes through the inbox; a job lost between the commit and the enqueue (the gateway
 * dying in between) is enqueued by the reconciler; and the coordinator carries such a run on from its
 * first report to the end.
 */

const logger = createLogger('test', (process.env.TEST_LOG_LEVEL as 'silent') ?? 'silent');
const HOUR = 3_600_000;

const DEFINITIONS = [
  {
    name: 'ds-fork',
    input: { type: 'object', properties: { name: { type: 'string' }, loud: { type: 'boolean' } } },
    priority: '{{ input.loud ? 2 : 7 }}',
    steps: [
      { id: 'greet', function: 'ds-none', input: { name: '{{ input.name }}' }, retry: { attempts: 4 } },
      { id: 'wave', function: 'ds-other', needs: [], input: { at: '{{ input.name }}' }, timeoutMs: 9_000 },
      { id: 'shout', function: 'ds-none', needs: [], if: 'input.loud', input: {} },
      { id: 'after', function: 'ds-none', needs: ['greet'], input: {} },
    ],
  },
  { name: 'ds-one', steps: [{ id: 'only', function: 'ds-none', input: {} }] },
  { name: 'ds-timed', timeoutMs: HOUR, steps: [{ id: 'only', function: 'ds-none', input: {} }] },
  { name: 'ds-paused', steps: [{ id: 'only', function: 'ds-none', input: {} }] },
  { name: 'ds-limited', concurrency: { limit: 5 }, steps: [{ id: 'only', function: 'ds-none', input: {} }] },
  {
    name: 'ds-rated',
    rateLimit: { limit: 100, periodMs: 1000 },
    steps: [{ id: 'only', function: 'ds-none', input: {} }],
  },
  { name: 'ds-nap', steps: [{ id: 'nap', sleep: { durationMs: HOUR } }] },
];

interface ExecutionRow {
  id: string;
  step_id: string;
  status: string;
  attempt: number;
  max_attempts: number;
  input: unknown;
  queued_at: Date | null;
  finished_at: Date | null;
}

/** The job data of ds-fork's `greet` step, as the gateway and the reconciler both enqueue it. */
const greetJob = (runId: string, stepExecutionId: string, name: string, priority: number) => ({
  runId,
  stepExecutionId,
  stepId: 'greet',
  workflow: 'ds-fork',
  kind: 'action',
  function: 'ds-none',
  input: { name },
  retry: expect.objectContaining({ attempts: 4 }),
  priority,
});

describe('run start with its first steps (no coordinator round trip)', () => {
  let env: TestEnv;
  let coordinator: Coordinator;
  let starter: RunStarter;
  let client: CoordinatorClient;
  const queues = new Map<string, Queue>();

  beforeAll(async () => {
    env = await createTestEnv('direct-start');
    // The coordinator is not started: nothing reads the inbox or runs a step; the test drives the
    // reconciler by hand.
    coordinator = new Coordinator({ pool: env.pool, queues: env.queues, logger, concurrency: 8 });
    client = coordinator.client;
    starter = new RunStarter(env.pool, client);
    for (const d of DEFINITIONS) await saveDefinition(env.pool, d);
    await env.pool.query(`INSERT INTO workflow_pauses (workflow_name) VALUES ('ds-paused')`);
  });

  afterAll(async () => {
    jest.restoreAllMocks();
    await starter?.close();
    await Promise.all([...queues.values()].map((q) => q.close()));
    await coordinator?.close();
    await env?.cleanup();
  });

  const functionQueue = (fn: string): Queue => {
    let q = queues.get(fn);
    if (!q) {
      q = new Queue(functionQueueName(fn), { connection: env.queues.connection, prefix: env.queues.prefix });
      queues.set(fn, q);
    }
    return q;
  };
  const executions = async (runId: string): Promise<ExecutionRow[]> =>
    (
      await env.pool.query<ExecutionRow>(
        `SELECT id, step_id, status, attempt, max_attempts, input, queued_at, finished_at
           FROM step_executions WHERE run_id = $1 ORDER BY step_id`,
        [runId],
      )
    ).rows;
  const run = async (runId: string) =>
    (
      await env.pool.query<{ status: string; priority: number; started_at: Date | null; deadline_at: Date | null }>(
        'SELECT status, priority, started_at, deadline_at FROM runs WHERE id = $1',
        [runId],
      )
    ).rows[0];
  const announced = async (): Promise<string[]> => {
    const entries = (await env.redis.xrange(inboxKey(env.config.queuePrefix), '-', '+')) as [string, string[]][];
    return entries.map(([, f]) => (JSON.parse(f[f.indexOf('m') + 1]) as { runId: string }).runId);
  };
  const jobData = async (fn: string, id: string): Promise<StepJobData | undefined> =>
    (await functionQueue(fn).getJob(id))?.data as StepJobData | undefined;

  it('writes the run running with its first steps queued, and enqueues their jobs as the coordinator would', async () => {
    const started = await starter.start({
      workflow: 'ds-fork',
      input: { name: 'ada', loud: false },
      trigger: { type: 'http' },
    });
    expect(started).toMatchObject({ status: 'running', created: true });
    const row = await run(started.runId);
    expect(row.status).toBe('running');
    expect(row.started_at).toBeInstanceOf(Date);
    // The priority template was resolved by the gateway, as admission would have.
    expect(row.priority).toBe(7);
    expect(row.deadline_at).toBeNull();

    // greet and wave queued (no needs), shout skipped (its condition is false), after not yet planned.
    const rows = await executions(started.runId);
    expect(rows.map((r) => [r.step_id, r.status])).toEqual([
      ['greet', 'queued'],
      ['shout', 'skipped'],
      ['wave', 'queued'],
    ]);
    const greet = rows.find((r) => r.step_id === 'greet') as ExecutionRow;
    const wave = rows.find((r) => r.step_id === 'wave') as ExecutionRow;
    expect(greet).toMatchObject({ attempt: 0, max_attempts: 4, input: { name: 'ada' } });
    expect(greet.queued_at).toBeInstanceOf(Date);
    expect(rows.find((r) => r.step_id === 'shout')?.finished_at).toBeInstanceOf(Date);

    // Each job is on its function's queue under the execution's id, with the step's data.
    expect(await jobData('ds-none', greet.id)).toEqual(greetJob(started.runId, greet.id, 'ada', 7));
    expect(await jobData('ds-other', wave.id)).toMatchObject({
      stepExecutionId: wave.id,
      stepId: 'wave',
      input: { at: 'ada' },
      timeoutMs: 9_000,
      priority: 7,
    });
    // Nothing for the coordinator to start: no run.start in its inbox.
    expect(await announced()).not.toContain(started.runId);
  });

  it('a batch mixes started runs and runs left to the coordinator: paused and limited workflows stay pending', async () => {
    const results = await Promise.all(
      ['ds-one', 'ds-paused', 'ds-limited', 'ds-rated', 'ds-nap', 'ds-one'].map((workflow) =>
        starter.start({ workflow, input: {}, trigger: { type: 'http' } }),
      ),
    );
    const [one, paused, limited, rated, nap, another] = results;
    for (const r of [one, another]) {
      expect(r.status).toBe('running');
      expect((await executions(r.runId)).map((e) => e.status)).toEqual(['queued']);
    }
    const inbox = await announced();
    // A paused workflow, admission limits and a built-in first step: pending, no step, announced.
    for (const r of [paused, limited, rated, nap]) {
      expect(r).toMatchObject({ status: 'pending', created: true });
      expect((await run(r.runId)).status).toBe('pending');
      expect(await executions(r.runId)).toEqual([]);
      expect(inbox).toContain(r.runId);
    }
    expect(inbox).not.toContain(one.runId);
    expect(inbox).not.toContain(another.runId);
  });

  it('a repeated idempotency key makes one run with one set of steps and one job', async () => {
    const key = 'ds-idem-1';
    const starts = await Promise.all(
      [0, 1, 2].map(() =>
        starter.start({ workflow: 'ds-one', input: {}, trigger: { type: 'http' }, idempotencyKey: key }),
      ),
    );
    const again = await starter.start({
      workflow: 'ds-one',
      input: {},
      trigger: { type: 'http' },
      idempotencyKey: key,
    });
    const ids = new Set([...starts, again].map((s: StartedRun) => s.runId));
    expect(ids.size).toBe(1);
    expect([...starts, again].filter((s) => s.created)).toHaveLength(1);
    expect(again).toMatchObject({ created: false, status: 'running' });
    const [runId] = ids;
    const rows = await executions(runId);
    expect(rows).toHaveLength(1);
    const { rows: all } = await env.pool.query(
      `SELECT count(*)::int AS n FROM step_executions e JOIN runs r ON r.id = e.run_id WHERE r.idempotency_key = $1`,
      [key],
    );
    expect(all[0].n).toBe(1);
    expect(await jobData('ds-none', rows[0].id)).toMatchObject({ runId, stepId: 'only' });
  });

  it('writes the deadline of a workflow with a timeout and arms its run.timeout', async () => {
    const started = await starter.start({ workflow: 'ds-timed', input: {}, trigger: { type: 'http' } });
    const row = await run(started.runId);
    expect(row.status).toBe('running');
    const ms = (row.deadline_at as Date).getTime() - (row.started_at as Date).getTime();
    expect(ms).toBe(HOUR);
    const message = { type: 'run.timeout' as const, runId: started.runId, attempt: 0 };
    expect(await client.getJobState(coordinatorJobId(message))).toBe('delayed');
  });

  it('a job lost between the commit and the enqueue (the gateway died) is enqueued by the reconciler', async () => {
    // The enqueue never happens, as if the gateway process ended right after the commit.
    jest.spyOn(StepQueues.prototype, 'add').mockRejectedValueOnce(new Error('gateway gone'));
    const started = await starter.start({
      workflow: 'ds-fork',
      input: { name: 'lost', loud: true },
      trigger: { type: 'http' },
    });
    // The run is committed: the request succeeds even though no job was added.
    expect(started).toMatchObject({ status: 'running', created: true });
    const rows = await executions(started.runId);
    const queued = rows.filter((r) => r.status === 'queued');
    expect(queued.map((r) => r.step_id)).toEqual(['greet', 'shout', 'wave']);
    for (const e of queued)
      expect(await functionQueue(e.step_id === 'wave' ? 'ds-other' : 'ds-none').getJob(e.id)).toBeUndefined();
    expect(await announced()).not.toContain(started.runId);

    const requeued = async () =>
      (await metrics.reconciledTotal.get()).values.find((v) => v.labels.kind === 'step_requeued')?.value ?? 0;
    const before = await requeued();
    const reconciler = new Reconciler({ pool: env.pool, coordinator, logger, intervalMs: HOUR, graceMs: 0 });
    await reconciler.reconcileOnce();
    expect((await requeued()) - before).toBeGreaterThanOrEqual(3);
    const greet = queued.find((e) => e.step_id === 'greet') as ExecutionRow;
    // The reconciler's job carries the same data (from the stored rows, trace aside).
    expect(await jobData('ds-none', greet.id)).toEqual(greetJob(started.runId, greet.id, 'lost', 2));
    const wave = queued.find((e) => e.step_id === 'wave') as ExecutionRow;
    expect(await jobData('ds-other', wave.id)).toMatchObject({ stepId: 'wave', timeoutMs: 9_000, priority: 2 });
  });
});

describe('run start with its first steps, end to end', () => {
  let env: TestEnv;
  let engine: Engine;
  let starter: RunStarter;

  const echo = defineFunction({
    name: 'ds-echo',
    input: z.object({ n: z.number() }),
    handler: async ({ n }) => ({ n: n + 1 }),
  });

  beforeAll(async () => {
    env = await createTestEnv('direct-start-e2e');
    engine = await startEngine(env, [echo], { reconcileIntervalMs: 200, reconcileGraceMs: 300 });
    starter = new RunStarter(env.pool, engine.coordinatorQueue);
    await saveDefinition(env.pool, {
      name: 'ds-chain',
      timeoutMs: HOUR,
      steps: [
        { id: 'a', function: 'ds-echo', input: { n: '{{ input.n }}' } },
        { id: 'b', function: 'ds-echo', needs: ['a'], input: { n: '{{ steps.a.output.n }}' } },
        { id: 'c', function: 'ds-echo', needs: ['b'], input: { n: '{{ steps.b.output.n }}' } },
      ],
      output: '{{ steps.c.output }}',
    });
  });

  afterAll(async () => {
    jest.restoreAllMocks();
    await starter?.close();
    await engine?.close();
    await env?.cleanup();
  });

  it('the coordinator carries a run it never saw start from its first report to the end', async () => {
    const runs = await Promise.all(
      [1, 10, 100].map((n) => starter.start({ workflow: 'ds-chain', input: { n }, trigger: { type: 'http' } })),
    );
    for (const r of runs) expect(r.status).toBe('running');
    const ended = await Promise.all(runs.map((r) => engine.waitForRun(r.runId)));
    expect(ended.map((r) => [r.status, r.output])).toEqual([
      ['succeeded', { n: 4 }],
      ['succeeded', { n: 13 }],
      ['succeeded', { n: 103 }],
    ]);
  });

  it('a run whose first job was never enqueued still succeeds: the reconciler enqueues it', async () => {
    const requeued = async () =>
      (await metrics.reconciledTotal.get()).values.find((v) => v.labels.kind === 'step_requeued')?.value ?? 0;
    const before = await requeued();
    jest.spyOn(StepQueues.prototype, 'add').mockRejectedValueOnce(new Error('gateway gone'));
    const started = await starter.start({ workflow: 'ds-chain', input: { n: 5 }, trigger: { type: 'http' } });
    expect(started.status).toBe('running');
    const ended = await engine.waitForRun(started.runId);
    expect([ended.status, ended.output]).toEqual(['succeeded', { n: 8 }]);
    // It went through the reconciler: the first step's job was enqueued after its grace period.
    expect((await requeued()) - before).toBeGreaterThanOrEqual(1);
  });
});
