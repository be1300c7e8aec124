import { defineFunction, saveDefinition, deleteKeysWithPrefix, inboxKey, INBOX_GROUP, metrics } from '@baton/engine';
import { z } from 'zod';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';
import { startEngine, type Engine } from '../support/engine';
import {
  FAST_RETRY,
  saveRetryingWorkflow,
  saveSlowChainWorkflow,
  scenarioFunctions,
} from '../support/engine-scenarios';

/**
 * The coordinator and function runtime on real Redis and PostgreSQL, with small synthetic functions
 * whose behaviour each test controls through its input.
 */

const fns = scenarioFunctions();
const { calls, completions, flaky, record, broken } = fns;

/** Set when the stubborn handler has returned, well after its step timed out. */
let stubbornReturned = false;
const stubborn = defineFunction({
  name: 'stubborn',
  input: z.object({ ms: z.number() }),
  // Ignores ctx.signal on purpose.
  handler: async ({ ms }) => {
    await new Promise((r) => setTimeout(r, ms));
    stubbornReturned = true;
    return { finished: true };
  },
});

const fast = FAST_RETRY;

describe('engine (coordinator + function runtime)', () => {
  let env: TestEnv;
  let engine: Engine;

  beforeAll(async () => {
    env = await createTestEnv('engine');
    await saveRetryingWorkflow(env.pool);
    await saveDefinition(env.pool, {
      name: 'saga',
      steps: [
        {
          id: 'one',
          function: 'record',
          input: { tag: 'one' },
          compensate: { function: 'record', input: { tag: 'undo-one' } },
        },
        { id: 'two', function: 'record', input: { tag: 'two' } },
        {
          id: 'three',
          function: 'record',
          input: { tag: 'three' },
          compensate: { function: 'record', input: { tag: 'undo-three:{{ steps.three.output.tag }}' } },
        },
        { id: 'four', function: 'broken', retry: { attempts: 2, ...fast } },
      ],
    });
    await saveDefinition(env.pool, {
      name: 'permanent',
      steps: [{ id: 'only', function: 'broken', input: { permanent: true }, retry: { attempts: 5, ...fast } }],
    });
    await saveSlowChainWorkflow(env.pool, 150);
    await saveDefinition(env.pool, {
      name: 'stubborn',
      steps: [{ id: 'only', function: 'stubborn', input: { ms: 1500 }, timeoutMs: 150, retry: { attempts: 1 } }],
    });
    engine = await startEngine(env, [flaky, record, broken, stubborn]);
  });

  afterAll(async () => {
    await engine?.close();
    await env?.cleanup();
  });

  it('records every attempt of a step that fails twice then succeeds', async () => {
    const runId = await engine.start('retrying', { key: 'r1' });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('succeeded');
    expect(run.output).toEqual({ only: { key: 'r1', attempt: 3 } });
    expect(calls.r1).toBe(3);
    const step = await env.pool.query(
      'SELECT status, attempt, max_attempts, started_at, finished_at FROM step_executions WHERE run_id = $1',
      [runId],
    );
    expect(step.rows).toEqual([expect.objectContaining({ status: 'succeeded', attempt: 3, max_attempts: 3 })]);
    const attempts = await env.pool.query(
      `SELECT a.attempt, a.status, a.error->>'message' AS message FROM step_attempts a
         JOIN step_executions e ON e.id = a.step_execution_id WHERE e.run_id = $1 ORDER BY a.attempt`,
      [runId],
    );
    expect(attempts.rows).toEqual([
      { attempt: 1, status: 'failed', message: 'planned failure 1' },
      { attempt: 2, status: 'failed', message: 'planned failure 2' },
      { attempt: 3, status: 'succeeded', message: null },
    ]);
    const logs = await env.pool.query(
      "SELECT message, data FROM run_logs WHERE run_id = $1 AND message = 'flaky attempt'",
      [runId],
    );
    expect(logs.rows.map((r) => r.data.attempt).sort()).toEqual([1, 2, 3]);
  });

  it('compensates completed steps in reverse completion order when a step fails for good', async () => {
    completions.length = 0;
    const runId = await engine.start('saga', {});
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('compensated');
    expect(run.error).toMatchObject({
      stepId: 'four',
      function: 'broken',
      attempt: 2,
      message: 'still broken',
      nonRetryable: false,
    });
    expect(completions).toEqual([
      'action:one',
      'action:two',
      'action:three',
      'compensation:undo-three:three',
      'compensation:undo-one',
    ]);
    const steps = await env.pool.query(
      'SELECT step_id, kind, status FROM step_executions WHERE run_id = $1 ORDER BY created_at',
      [runId],
    );
    expect(steps.rows).toEqual([
      { step_id: 'one', kind: 'action', status: 'compensated' },
      { step_id: 'two', kind: 'action', status: 'succeeded' },
      { step_id: 'three', kind: 'action', status: 'compensated' },
      { step_id: 'four', kind: 'action', status: 'failed' },
      { step_id: 'three', kind: 'compensation', status: 'succeeded' },
      { step_id: 'one', kind: 'compensation', status: 'succeeded' },
    ]);
  });

  it('fails at once on a NonRetryableError, with the reason on the run', async () => {
    const runId = await engine.start('permanent', {});
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('failed');
    expect(run.error).toEqual({
      stepId: 'only',
      function: 'broken',
      attempt: 1,
      code: 'BROKEN',
      message: 'broken for good',
      nonRetryable: true,
    });
  });

  it('fails an attempt on time when its handler ignores the timeout signal, discarding the late result', async () => {
    stubbornReturned = false;
    const runId = await engine.start('stubborn', {});
    const run = await engine.waitForRun(runId);
    // On time: the run failed while the handler was still running (it sleeps 1 500 ms, the step allows 150).
    expect(stubbornReturned).toBe(false);
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({ code: 'STEP_TIMEOUT', message: 'step attempt timed out after 150 ms' });
    // The late result: once the handler has returned and the coordinator inbox is empty (anything it
    // sent has been applied), the step is still failed, without output.
    await waitFor(async () => (stubbornReturned ? true : undefined), 10_000, 'the stubborn handler to return');
    await waitFor(
      async () => {
        const key = inboxKey(env.config.queuePrefix);
        const [length, pending] = await Promise.all([
          env.redis.xlen(key),
          env.redis.xpending(key, INBOX_GROUP) as Promise<[number, ...unknown[]]>,
        ]);
        return length === 0 && Number(pending[0]) === 0 ? true : undefined;
      },
      10_000,
      'the coordinator inbox to be empty',
    );
    const { rows } = await env.pool.query('SELECT status, output FROM step_executions WHERE run_id = $1', [runId]);
    expect(rows).toEqual([{ status: 'failed', output: null }]);
  });

  it('returns the first run for a repeated idempotency key', async () => {
    const first = await engine.start('retrying', { key: 'idem' }, { idempotencyKey: 'k-1' });
    const second = await engine.start('retrying', { key: 'other' }, { idempotencyKey: 'k-1' });
    expect(second).toBe(first);
    const { rows } = await env.pool.query("SELECT count(*)::int AS n FROM runs WHERE idempotency_key = 'k-1'");
    expect(rows[0].n).toBe(1);
    await engine.waitForRun(first);
  });

  it('finishes every run after the Redis keys are wiped mid-run (reconciler)', async () => {
    completions.length = 0;
    const reconciledSoFar = async (): Promise<number> =>
      (await metrics.reconciledTotal.get()).values.reduce((sum, v) => sum + v.value, 0);
    const reconciledBefore = await reconciledSoFar();
    // More runs than the worker's concurrency (4), so jobs are waiting in Redis when it is wiped.
    const runIds = await Promise.all(
      Array.from({ length: 12 }, (_, i) => engine.start('slow-chain', { tag: `w${i}` })),
    );
    await waitFor(async () => (completions.length >= 4 ? true : undefined), 10_000, 'some steps to complete');
    // Like a FLUSHALL, limited to this suite's prefix: every queued, active and finished job is gone.
    await deleteKeysWithPrefix(env.redis, env.config.queuePrefix);
    const runs = await Promise.all(runIds.map((id) => engine.waitForRun(id, ['succeeded', 'failed'], 30_000)));
    expect(runs.map((r) => r.status)).toEqual(Array(12).fill('succeeded'));
    // Each step recorded as completed exactly once, whatever ran twice.
    const { rows } = await env.pool.query(
      `SELECT run_id, step_id, count(*)::int AS n FROM step_executions WHERE run_id = ANY($1) AND status = 'succeeded' GROUP BY 1, 2`,
      [runIds],
    );
    expect(rows).toHaveLength(36);
    for (const row of rows) expect(row.n).toBe(1);
    // And it was the reconciler that restored the lost work.
    expect((await reconciledSoFar()) - reconciledBefore).toBeGreaterThan(0);
  });
});
