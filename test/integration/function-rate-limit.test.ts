import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';
import {
  createLogger,
  defineFunction,
  saveDefinition,
  startFunctionWorker,
  type FunctionWorker,
  type RateLimit,
} from '@baton/engine';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, type TestEnv } from '../support/env';

/**
 * Per-function rate limit (issue 18): `<FUNCTION>_RATE_LIMIT` becomes BullMQ's global limiter, so
 * two workers of one function together start at most `max` attempts per `duration`. Measured from
 * the attempt start times stored in PostgreSQL (`step_attempts.started_at`), by count: the starts are
 * split into the limiter's windows (the first start after a window opens the next), and no window
 * may hold more than `max`.
 */

const LIMIT: RateLimit = { max: 4, durationMs: 1_000 };
const RUNS = 16;
/**
 * How much earlier than `durationMs` a window is closed when the starts are split: a start is stored
 * from the worker's clock a few ms after BullMQ admitted it, so a window read from the stored times
 * could otherwise take in the first start of the next.
 */
const CLOCK_SLACK_MS = 100;

const limited = defineFunction({
  name: 'limited-fn',
  input: z.object({ n: z.number() }),
  handler: async ({ n }) => ({ n }),
});

/** Greedy split into windows of `windowMs` from the first start in each; counts per window. */
function startsPerWindow(starts: number[], windowMs: number): number[] {
  const counts: number[] = [];
  let windowStart = -Infinity;
  for (const t of [...starts].sort((a, b) => a - b)) {
    if (t >= windowStart + windowMs) {
      windowStart = t;
      counts.push(0);
    }
    counts[counts.length - 1] += 1;
  }
  return counts;
}

describe('function rate limit across workers', () => {
  let env: TestEnv;
  let engine: Engine;
  const workers: FunctionWorker[] = [];

  beforeAll(async () => {
    env = await createTestEnv('function-rate-limit');
    await saveDefinition(env.pool, {
      name: 'limited',
      steps: [{ id: 'call', function: 'limited-fn', input: { n: '{{ input.n }}' }, retry: { attempts: 1 } }],
    });
    // The coordinator only: the function's workers are the two below.
    engine = await startEngine(env, []);
    for (const id of ['a', 'b']) {
      workers.push(
        startFunctionWorker(limited, {
          queues: env.queues,
          logger: createLogger('test', 'silent'),
          concurrency: 8,
          rateLimit: LIMIT,
          workerId: `limited-${id}`,
        }),
      );
    }
  });

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.close()));
    await engine?.close();
    await env?.cleanup();
  });

  it(`starts at most ${LIMIT.max} attempts per ${LIMIT.durationMs} ms over both workers`, async () => {
    const runIds = await Promise.all(Array.from({ length: RUNS }, (_, n) => engine.start('limited', { n })));
    for (const id of runIds) await engine.waitForRun(id, ['succeeded'], 60_000);

    const { rows } = await env.pool.query<{ started_at: Date; worker_id: string }>(
      `SELECT a.started_at, a.worker_id FROM step_attempts a
         JOIN step_executions e ON e.id = a.step_execution_id
        WHERE e.run_id = ANY($1)`,
      [runIds],
    );
    expect(rows).toHaveLength(RUNS);
    // Both workers took jobs: the limit held across them, not per process.
    expect(new Set(rows.map((r) => r.worker_id)).size).toBe(2);
    const counts = startsPerWindow(
      rows.map((r) => r.started_at.getTime()),
      LIMIT.durationMs - CLOCK_SLACK_MS,
    );
    expect(Math.max(...counts)).toBeLessThanOrEqual(LIMIT.max);
    expect(counts.length).toBeGreaterThanOrEqual(Math.ceil(RUNS / LIMIT.max));
  });

  it('a malformed <FUNCTION>_RATE_LIMIT stops the function process at start: one line, exit 1', async () => {
    const main = path.resolve(__dirname, '../../functions/transform/dist/main.js');
    const run = promisify(execFile);
    const failed = await run(process.execPath, [main], {
      env: { PATH: process.env.PATH, TRANSFORM_RATE_LIMIT: 'fast', REDIS_PORT: '1' },
      timeout: 30_000,
    }).then(
      () => undefined,
      (err: { code?: number; stderr?: string }) => err,
    );
    expect(failed?.code).toBe(1);
    const lines = (failed?.stderr ?? '').trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('TRANSFORM_RATE_LIMIT="fast" is invalid');
    expect(lines[0]).toContain('100/1s');
  });
});
