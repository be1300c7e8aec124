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
 * the attempt start times stored in PostgreSQL (`step_attempts.started_at`).
 *
 * BullMQ counts in fixed windows: a window opens at the first admission after the last one expired
 * and admits `max`. A window's last admission can come late (under load, a worker that was busy),
 * right before the next window's first ones, so `max` + `max` starts a few ms apart are within the
 * contract, and a split of the starts into windows of their own cannot tell that from a breach (it
 * did flake so). What the contract does rule out, and what a limiter kept per worker would break:
 * the starts span at least as many windows as `RUNS / max` needs, and no stretch shorter than a
 * window holds more than the two windows it can touch.
 */

const LIMIT: RateLimit = { max: 4, durationMs: 1_000 };
const RUNS = 16;
/**
 * Tolerance for the worker's clock: a start is stored a few ms after BullMQ admitted it, or more on a
 * loaded machine, and the first start may lag more than the last. Half a window: the test then asks
 * for 2 500 ms from first start to last, and a limiter kept per worker (8 a window here) spans 1 000.
 */
const CLOCK_SLACK_MS = LIMIT.durationMs / 2;

const limited = defineFunction({
  name: 'limited-fn',
  input: z.object({ n: z.number() }),
  handler: async ({ n }) => ({ n }),
});

/** The most starts within any stretch of `spanMs` (sorted `starts`). */
function busiestStretch(starts: number[], spanMs: number): number {
  let most = 0;
  for (let first = 0, last = 0; last < starts.length; last++) {
    while (starts[last] - starts[first] >= spanMs) first++;
    most = Math.max(most, last - first + 1);
  }
  return most;
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
    const starts = rows.map((r) => r.started_at.getTime()).sort((x, y) => x - y);
    // RUNS / max windows at least, each opening a full duration after the one before.
    const windows = Math.ceil(RUNS / LIMIT.max);
    expect(starts[starts.length - 1] - starts[0]).toBeGreaterThanOrEqual(
      (windows - 1) * LIMIT.durationMs - CLOCK_SLACK_MS,
    );
    expect(busiestStretch(starts, LIMIT.durationMs - CLOCK_SLACK_MS)).toBeLessThanOrEqual(2 * LIMIT.max);
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
