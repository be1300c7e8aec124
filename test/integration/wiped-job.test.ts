import { createLogger, defineFunction, saveDefinition, startFunctionWorker, type FunctionWorker } from '@baton/engine';
import { z } from 'zod';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';
import { startEngine, type Engine } from '../support/engine';

/**
 * Found by the chaos suite (a Redis wipe under 700 parked waits): a step job whose hash was deleted
 * while its id stayed in the wait list was taken by a worker as a job with no data and no creation
 * time; recording its queue wait (NaN) threw, BullMQ failed the job for good, and the reconciler
 * replayed that failure: the step failed without ever running. Now the runtime skips such a job and
 * the reconciler enqueues the step again from PostgreSQL.
 */
let ran = 0;
const late = defineFunction({
  name: 'late',
  input: z.object({ n: z.number() }),
  handler: async ({ n }) => {
    ran += 1;
    return { doubled: n * 2 };
  },
});

describe('a step job whose Redis hash was wiped', () => {
  let env: TestEnv;
  let engine: Engine;
  let worker: FunctionWorker | undefined;

  beforeAll(async () => {
    env = await createTestEnv('wiped-job');
    await saveDefinition(env.pool, { name: 'wiped', steps: [{ id: 'only', function: 'late', input: { n: 21 } }] });
    // No worker for `late` yet: its job waits in Redis.
    engine = await startEngine(env, []);
  });

  afterAll(async () => {
    await worker?.close();
    await engine?.close();
    await env?.cleanup();
  });

  it('is skipped by the runtime and enqueued again by the reconciler: the step runs once and succeeds', async () => {
    const runId = await engine.start('wiped', {});
    const queue = engine.coordinator.functionQueue('late');
    const executionId = await waitFor(
      async () => {
        const { rows } = await env.pool.query(`SELECT id FROM step_executions WHERE run_id = $1`, [runId]);
        return rows[0] && (await queue.getJob(rows[0].id)) ? (rows[0].id as string) : undefined;
      },
      10_000,
      'the step job in Redis',
    );
    // The wipe: the job's hash is gone, its id is still where workers take it from (the prioritized
    // set: every step job carries its run's priority).
    expect(await env.redis.del(queue.toKey(executionId))).toBe(1);
    expect(await env.redis.zscore(queue.toKey('prioritized'), executionId)).not.toBeNull();

    worker = startFunctionWorker(late, { queues: env.queues, logger: createLogger('test', env.config.logLevel) });
    const run = await engine.waitForRun(runId);
    expect({ status: run.status, output: run.output }).toEqual({
      status: 'succeeded',
      output: { only: { doubled: 42 } },
    });
    expect(ran).toBe(1);
  });
});
