import { NonRetryableError } from '@baton/workflow';
import {
  coordinatorQueue,
  createLogger,
  defineFunction,
  deleteKeysWithPrefix,
  saveDefinition,
  startFunctionWorker,
  type FunctionWorker,
  type PoolClient,
  type CoordinatorClient,
} from '@baton/engine';
import type { Express } from 'express';
import request from 'supertest';
import { z } from 'zod';
import { Coordinator, Reconciler } from '../../services/coordinator/src';
import { testApp } from '../support/gateway';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';

/**
 * Control requests acknowledged by the gateway (cancel, retry, events for parked runs) are recorded
 * in PostgreSQL first: a Redis that loses the coordinator's message loses only the wake-up, and the
 * reconciler re-drives the request. The coordinator and its reconciler are driven by hand here (the
 * reconciler's timer never fires): stopped while the gateway answers, the coordinator queue's Redis
 * keys wiped, then started again and one `reconcileOnce()`.
 */

const logger = createLogger('test', (process.env.TEST_LOG_LEVEL as 'silent' | undefined) ?? 'silent');

/** Flips to succeed on the retry; blocks until cancelled when told to. */
const failing = new Set<string>();
const work = defineFunction({
  name: 'outbox-work',
  input: z.object({ tag: z.string(), block: z.boolean().default(false) }),
  handler: async (input, ctx) => {
    if (input.block) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 30_000);
        ctx.signal.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        });
      });
      if (ctx.signal.aborted) throw ctx.signal.reason;
    }
    if (failing.has(input.tag)) throw new NonRetryableError('WORK_FAILED', `${input.tag} failed`);
    return { tag: input.tag };
  },
});

describe('durable control requests', () => {
  let env: TestEnv;
  let app: Express;
  let queue: CoordinatorClient;
  let worker: FunctionWorker;
  let coordinator: Coordinator | undefined;
  let reconciler: Reconciler;

  const startCoordinator = (): void => {
    coordinator = new Coordinator({ pool: env.pool, queues: env.queues, logger, concurrency: 4 });
    coordinator.start();
    // Never started: each test runs `reconcileOnce()` itself. No grace: every request is due.
    reconciler = new Reconciler({ pool: env.pool, coordinator, logger, intervalMs: 3_600_000, graceMs: 0 });
  };
  const stopCoordinator = async (): Promise<void> => {
    await coordinator?.close();
    coordinator = undefined;
  };
  /** What a Redis loss does to the coordinator: its queue (jobs, the inbox) is gone. */
  const wipeCoordinatorQueue = () => deleteKeysWithPrefix(env.redis, `${env.config.queuePrefix}:{coordinator}`);

  const runStatus = async (id: string): Promise<string> =>
    (await env.pool.query('SELECT status FROM runs WHERE id = $1', [id])).rows[0].status;
  const steps = async (id: string): Promise<[string, string][]> =>
    (
      await env.pool.query(
        'SELECT step_id, status FROM step_executions WHERE run_id = $1 AND superseded_at IS NULL ORDER BY created_at',
        [id],
      )
    ).rows.map((r) => [r.step_id, r.status]);
  const startRun = async (workflow: string, input: unknown = {}): Promise<string> =>
    (await request(app).post(`/v1/workflows/${workflow}/runs`).send({ input }).expect(202)).body.runId;
  const untilStepStatus = (runId: string, stepId: string, status: string) =>
    waitFor(
      async () => ((await steps(runId)).some(([s, st]) => s === stepId && st === status) ? true : undefined),
      20_000,
      `step ${stepId} of run ${runId} to be ${status}`,
    );
  const untilRunStatus = (runId: string, status: string) =>
    waitFor(async () => ((await runStatus(runId)) === status ? true : undefined), 20_000, `run ${runId} ${status}`);

  beforeAll(async () => {
    env = await createTestEnv('outbox');
    queue = coordinatorQueue(env.queues);
    worker = startFunctionWorker(work, {
      queues: env.queues,
      logger,
      concurrency: 4,
      stalledIntervalMs: 1_000,
      lockDurationMs: 2_000,
    });
    app = testApp(env, queue);
    startCoordinator();
  });

  afterAll(async () => {
    await stopCoordinator();
    await worker?.close();
    await queue?.close();
    await env?.cleanup();
  });

  afterEach(async () => {
    if (!coordinator) startCoordinator();
  });

  it('a cancel acknowledged before Redis lost the message still cancels the run', async () => {
    await saveDefinition(env.pool, {
      name: 'outbox-cancel',
      steps: [{ id: 'long', function: 'outbox-work', input: { tag: 'long', block: true } }],
    });
    const runId = await startRun('outbox-cancel');
    await untilStepStatus(runId, 'long', 'running');

    await stopCoordinator();
    const res = await request(app).post(`/v1/runs/${runId}/cancel`).send({}).expect(202);
    expect(res.body).toEqual({ runId, status: 'running', statusUrl: `/v1/runs/${runId}` });
    await wipeCoordinatorQueue();
    startCoordinator();
    await reconciler.reconcileOnce();

    expect(await runStatus(runId)).toBe('cancelled');
    expect(await steps(runId)).toEqual([['long', 'cancelled']]);
    const recorded = await env.pool.query('SELECT type, done_at FROM control_requests WHERE run_id = $1', [runId]);
    expect(recorded.rows).toEqual([{ type: 'run.cancel', done_at: expect.any(Date) }]);
    // Applied once: a second pass finds nothing to do.
    await reconciler.reconcileOnce();
    expect(await runStatus(runId)).toBe('cancelled');
  });

  it('a retry acknowledged before Redis lost the message still resumes the run', async () => {
    await saveDefinition(env.pool, {
      name: 'outbox-retry',
      steps: [{ id: 'only', function: 'outbox-work', retry: { attempts: 1 }, input: { tag: 'retry-me' } }],
    });
    failing.add('retry-me');
    const runId = await startRun('outbox-retry');
    await untilRunStatus(runId, 'failed');
    failing.delete('retry-me');

    await stopCoordinator();
    const res = await request(app).post(`/v1/runs/${runId}/retry`).send({}).expect(202);
    expect(res.body).toEqual({ runId, status: 'failed', statusUrl: `/v1/runs/${runId}` });
    await wipeCoordinatorQueue();
    startCoordinator();
    await reconciler.reconcileOnce();

    // The retry was applied in the pass: the run is no longer failed, its step runs again.
    expect(await runStatus(runId)).not.toBe('failed');
    await untilRunStatus(runId, 'succeeded');
    expect(await steps(runId)).toEqual([['only', 'succeeded']]);
    const recorded = await env.pool.query('SELECT type, payload FROM control_requests WHERE run_id = $1', [runId]);
    expect(recorded.rows).toEqual([{ type: 'run.retry', payload: { attempt: 0 } }]);
  });

  it('an event stored while Redis lost its delivery still reaches the parked run', async () => {
    await saveDefinition(env.pool, {
      name: 'outbox-wait',
      steps: [
        {
          id: 'approval',
          waitForEvent: { name: 'outbox.approved', match: 'event.orderId = input.orderId', timeoutMs: 120_000 },
        },
      ],
    });
    const runId = await startRun('outbox-wait', { orderId: 'o-1' });
    await untilStepStatus(runId, 'approval', 'running');

    await stopCoordinator();
    await request(app)
      .post('/v1/events/outbox.approved')
      .send({ payload: { orderId: 'o-1', by: 'alice' } })
      .expect(202);
    await wipeCoordinatorQueue();
    startCoordinator();
    await reconciler.reconcileOnce();

    expect(await runStatus(runId)).toBe('succeeded');
    const output = await env.pool.query(
      "SELECT output FROM step_executions WHERE run_id = $1 AND step_id = 'approval'",
      [runId],
    );
    expect(output.rows).toEqual([{ output: { orderId: 'o-1', by: 'alice' } }]);
  });

  it('a wait receives an event stored after its step was queued but before it was armed', async () => {
    await saveDefinition(env.pool, {
      name: 'outbox-race',
      steps: [{ id: 'gate', waitForEvent: { name: 'outbox.go', match: 'event.key = input.key', timeoutMs: 120_000 } }],
    });
    // The run exists, its start waits in the inbox for a coordinator.
    await stopCoordinator();
    const runId = await startRun('outbox-race', { key: 'k-1' });

    // Hold the run's row lock: the coordinator's transaction that plans (queues) the wait begins, then
    // waits here, before the wait's row exists.
    const holder: PoolClient = await env.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM runs WHERE id = $1 FOR UPDATE', [runId]);
      const { rows } = await holder.query('SELECT pg_backend_pid() AS pid');
      startCoordinator();
      await waitFor(
        async () => {
          const blocked = await env.pool.query('SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [
            rows[0].pid,
          ]);
          return blocked.rowCount ? true : undefined;
        },
        20_000,
        "the coordinator's transaction to wait for the run lock",
      );

      // The event is stored (and its delivery handled: no parked run yet) inside the wait's window.
      const published = await request(app)
        .post('/v1/events/outbox.go')
        .send({ payload: { key: 'k-1' } })
        .expect(202);
      await waitFor(
        async () => ((await queue.getJob(`deliver_${published.body.eventId}`))?.finishedOn ? true : undefined),
        20_000,
        'the event delivery to be handled',
      );
      const step = await env.pool.query('SELECT 1 FROM step_executions WHERE run_id = $1', [runId]);
      expect(step.rowCount).toBe(0);
      await holder.query('COMMIT');
    } finally {
      holder.release();
    }

    // The wait's window began when its step was queued, so the event counts.
    await untilRunStatus(runId, 'succeeded');
    const timing = await env.pool.query(
      `SELECT e.queued_at < ev.created_at AS in_window, e.output FROM step_executions e, events ev
        WHERE e.run_id = $1 AND ev.name = 'outbox.go'`,
      [runId],
    );
    expect(timing.rows).toEqual([{ in_window: true, output: { key: 'k-1' } }]);
  });
});
