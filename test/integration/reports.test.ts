import { defineFunction, saveDefinition, type InboxMessage } from '@baton/engine';
import { z } from 'zod';
import { createTestEnv, type TestEnv } from '../support/env';
import { startEngine, type Engine } from '../support/engine';

/**
 * What the function runtime reports, as the coordinator receives it: a quick attempt sends one
 * message (its outcome, carrying its start time), a slow one says it started first — the run shows
 * it running meanwhile. Batches group what arrives together.
 */
const nap = defineFunction({
  name: 'nap',
  input: z.object({ ms: z.number().int() }),
  handler: async ({ ms }) => {
    if (ms) await new Promise((r) => setTimeout(r, ms));
    return { slept: ms };
  },
});

describe('step reports through the coordinator inbox', () => {
  let env: TestEnv;
  let engine: Engine;
  const received: InboxMessage[] = [];

  beforeAll(async () => {
    env = await createTestEnv('reports');
    engine = await startEngine(env, [nap]);
    const handleBatch = engine.coordinator.handleBatch.bind(engine.coordinator);
    jest.spyOn(engine.coordinator, 'handleBatch').mockImplementation((messages, onCommit) => {
      received.push(...messages);
      return handleBatch(messages, onCommit);
    });
    await saveDefinition(env.pool, {
      name: 'quick-then-slow',
      steps: [
        { id: 'quick', function: 'nap', input: { ms: 0 } },
        { id: 'slow', function: 'nap', input: { ms: 400 }, needs: ['quick'] },
      ],
    });
  });

  afterAll(async () => {
    await engine?.close();
    await env?.cleanup();
  });

  it('a quick step sends only its outcome; a slow one reports started, and shows running meanwhile', async () => {
    const runId = await engine.start('quick-then-slow', {});
    // While the slow step sleeps, its started report has made it `running`.
    const running = await (async () => {
      for (let i = 0; i < 100; i += 1) {
        const { rows } = await env.pool.query(
          `SELECT status, worker_id FROM step_executions WHERE run_id = $1 AND step_id = 'slow'`,
          [runId],
        );
        if (rows[0]?.status === 'running') return rows[0];
        await new Promise((r) => setTimeout(r, 20));
      }
      return undefined;
    })();
    expect(running?.worker_id).toEqual(expect.any(String));
    await engine.waitForRun(runId, ['succeeded']);

    const { rows } = await env.pool.query(
      `SELECT e.id, e.step_id, e.started_at, e.finished_at, a.started_at AS attempt_started, a.finished_at AS attempt_finished
         FROM step_executions e JOIN step_attempts a ON a.step_execution_id = e.id WHERE e.run_id = $1`,
      [runId],
    );
    const byStep = new Map(rows.map((r) => [r.step_id as string, r]));
    const reportsOf = (stepId: string) =>
      received.filter((m) => m.type !== 'run.start' && m.stepExecutionId === byStep.get(stepId)?.id).map((m) => m.type);
    expect(reportsOf('quick')).toEqual(['step.succeeded']);
    expect(reportsOf('slow')).toEqual(['step.started', 'step.succeeded']);

    // The success carries the attempt's start: the rows show when it really started.
    const success = received.find(
      (m) => m.type === 'step.succeeded' && m.stepExecutionId === byStep.get('slow')?.id,
    ) as InboxMessage & { startedAt?: string };
    expect(new Date(success.startedAt as string).getTime()).toBe(byStep.get('slow')?.attempt_started.getTime());
    for (const step of ['quick', 'slow']) {
      const row = byStep.get(step);
      expect(row.started_at.getTime()).toBeLessThanOrEqual(row.finished_at.getTime());
      expect(row.attempt_started.getTime()).toBe(row.started_at.getTime());
    }
    const slow = byStep.get('slow');
    expect(slow.finished_at.getTime() - slow.started_at.getTime()).toBeGreaterThanOrEqual(350);
  });

  it('still applies a report that arrives as a BullMQ job (a function from before the inbox)', async () => {
    await saveDefinition(env.pool, { name: 'old-function', steps: [{ id: 'only', function: 'not-upgraded' }] });
    const runId = await engine.start('old-function', {});
    // No worker serves `not-upgraded`: its job waits; the "old function" reports through BullMQ.
    const { rows } = await (async () => {
      for (let i = 0; i < 100; i += 1) {
        const result = await env.pool.query(`SELECT id FROM step_executions WHERE run_id = $1`, [runId]);
        if (result.rows.length) return result;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error('no execution planned');
    })();
    const report = {
      type: 'step.succeeded' as const,
      runId,
      stepExecutionId: rows[0].id as string,
      attempt: 1,
      workerId: 'old-worker',
      at: new Date().toISOString(),
      output: { from: 'bullmq' },
    };
    await engine.coordinatorQueue.add(report.type, report, { jobId: `${report.stepExecutionId}_1_succeeded` });
    const run = await engine.waitForRun(runId, ['succeeded']);
    expect(run.status).toBe('succeeded');
    const step = await env.pool.query(`SELECT status, worker_id, output FROM step_executions WHERE id = $1`, [
      report.stepExecutionId,
    ]);
    expect(step.rows[0]).toEqual({ status: 'succeeded', worker_id: 'old-worker', output: { from: 'bullmq' } });
  });
});
