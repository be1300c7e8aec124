import crypto from 'node:crypto';
import { ErrorCode, NonRetryableError } from '@baton/workflow';
import { defineFunction, saveDefinition } from '@baton/engine';
import { z } from 'zod';
import { lockAndRecord } from '../../services/coordinator/src/run-store';
import { payloads } from '../../services/coordinator/src/payload-cache';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';

/**
 * forEach fan-out, child workflows and repeat-until on real Redis and PostgreSQL, through the real
 * coordinator and function runtime. What the functions did is counted by the functions themselves
 * (outside Baton's tables): each item's side effect, its idempotency key, how many ran at once.
 */

const effects: { key: string; value: unknown }[] = [];
let inFlight = 0;
let maxInFlight = 0;
const polls = new Map<string, number>();

const item = defineFunction({
  name: 'fanout-item',
  input: z.object({
    value: z.unknown(),
    position: z.number().optional(),
    fail: z.boolean().default(false),
    ms: z.number().default(0),
    /** Returned with the item's idempotency key: a large output that differs per execution. */
    echo: z.string().optional(),
  }),
  handler: async (input, ctx) => {
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      if (input.ms) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, input.ms);
          ctx.signal.addEventListener('abort', () => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (input.fail) throw new NonRetryableError('ITEM_BROKEN', `item ${String(input.value)} is broken`);
      effects.push({ key: ctx.idempotencyKey, value: input.value });
      if (input.echo !== undefined) return { echo: input.echo, key: ctx.idempotencyKey };
      return { doubled: Number(input.value) * 2, position: input.position ?? null };
    } finally {
      inFlight -= 1;
    }
  },
});

const poll = defineFunction({
  name: 'fanout-poll',
  input: z.object({ transfer: z.string() }),
  handler: async ({ transfer }) => {
    const n = (polls.get(transfer) ?? 0) + 1;
    polls.set(transfer, n);
    return { status: n >= 3 ? 'settled' : 'pending', n };
  },
});

const undone: { key: string; item: unknown; index: number }[] = [];
const undo = defineFunction({
  name: 'fanout-undo',
  input: z.object({ item: z.unknown(), index: z.number() }),
  handler: async (input, ctx) => {
    undone.push({ key: ctx.idempotencyKey, item: input.item, index: input.index });
    return { undid: input.index };
  },
});

const fast = { attempts: 1 };

async function runItems(env: TestEnv, runId: string) {
  const { rows } = await env.pool.query(
    `SELECT i.item_index, i.status, i.child_run_id FROM step_executions i
      WHERE i.run_id = $1 AND i.parent_execution_id IS NOT NULL ORDER BY i.item_index`,
    [runId],
  );
  return rows;
}

describe('forEach, child workflows and repeat', () => {
  let env: TestEnv;
  let engine: Engine;

  beforeAll(async () => {
    env = await createTestEnv('fanout');
    engine = await startEngine(env, [item, poll, undo], { maxForEachItems: 50, maxChildDepth: 3 });
    await saveDefinition(env.pool, {
      name: 'each',
      steps: [
        { id: 'list', function: 'fanout-item', input: { value: 0 }, retry: fast },
        {
          id: 'items',
          forEach: '{{ input.values }}',
          concurrency: 2,
          function: 'fanout-item',
          input: {
            value: '{{ item }}',
            position: '{{ index }}',
            fail: '{{ item = $$.input.broken }}',
            ms: '{{ input.ms }}',
          },
          retry: fast,
        },
        { id: 'after', function: 'fanout-item', input: { value: '{{ $count(steps.items.output) }}' }, retry: fast },
      ],
      output: { items: '{{ steps.items.output }}', count: '{{ steps.after.output.doubled }}' },
    });
    await saveDefinition(env.pool, {
      name: 'child',
      input: { type: 'object', required: ['value'] },
      steps: [
        {
          id: 'work',
          function: 'fanout-item',
          input: { value: '{{ input.value }}', fail: '{{ input.value = 13 }}' },
          retry: fast,
        },
      ],
      output: { result: '{{ steps.work.output.doubled }}' },
    });
    await saveDefinition(env.pool, {
      name: 'parent',
      tags: { batch: 'b-{{ input.value }}' },
      steps: [
        { id: 'one', workflow: 'child', input: { value: '{{ input.value }}' } },
        { id: 'many', forEach: '{{ input.values }}', workflow: 'child', input: { value: '{{ item }}' } },
      ],
    });
    await saveDefinition(env.pool, {
      name: 'recursive',
      steps: [{ id: 'again', workflow: 'recursive', input: {} }],
    });
    await saveDefinition(env.pool, {
      name: 'dangling',
      steps: [{ id: 'call', workflow: 'no-such-workflow', input: {} }],
    });
  });

  afterAll(async () => {
    await engine?.close();
    await env?.cleanup();
  });

  beforeEach(() => {
    effects.length = 0;
    undone.length = 0;
    maxInFlight = 0;
  });

  it('runs each item once, at most `concurrency` at a time, and outputs the results in list order', async () => {
    const values = [5, 1, 4, 2, 3, 9, 7];
    const runId = await engine.start('each', { values, ms: 20 });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('succeeded');
    expect(run.output).toEqual({
      items: values.map((v, i) => ({ doubled: v * 2, position: i })),
      count: values.length * 2,
    });
    expect(maxInFlight).toBeLessThanOrEqual(2);
    // One side effect per item, each with its own key (run, step, index).
    const itemEffects = effects.filter((e) => e.key.startsWith(`${runId}:items:`));
    expect(itemEffects.map((e) => e.key).sort()).toEqual(values.map((_, i) => `${runId}:items:${i}`).sort());
    const items = await runItems(env, runId);
    expect(items.map((i) => i.status)).toEqual(values.map(() => 'succeeded'));
    const { rows } = await env.pool.query(
      `SELECT f.total, f.succeeded, f.pending, f.failed FROM step_fanouts f WHERE f.run_id = $1`,
      [runId],
    );
    expect(rows).toEqual([{ total: 7, succeeded: 7, pending: 0, failed: 0 }]);
  });

  it('an empty list succeeds with [] and the run goes on', async () => {
    const runId = await engine.start('each', { values: [] });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('succeeded');
    expect(run.output).toEqual({ items: [], count: 0 });
  });

  it('fails the step, not retried, when the list is not a list or too long', async () => {
    const notList = await engine.waitForRun(await engine.start('each', { values: { a: 1 } }));
    expect(notList.status).toBe('failed');
    expect(notList.error).toMatchObject({ code: ErrorCode.FOREACH_NOT_A_LIST, stepId: 'items' });
    const tooMany = await engine.waitForRun(
      await engine.start('each', { values: Array.from({ length: 51 }, (_, i) => i) }),
    );
    expect(tooMany.status).toBe('failed');
    expect(tooMany.error).toMatchObject({ code: ErrorCode.FOREACH_TOO_MANY_ITEMS, stepId: 'items' });
  });

  it('an item that fails fails the step, names the item, and stops the items not yet run', async () => {
    const values = [1, 2, 3, 4, 5, 6, 7, 8];
    const runId = await engine.start('each', { values, broken: 2, ms: 30 });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({ stepId: 'items', code: 'ITEM_BROKEN', itemIndex: 1 });
    const items = await runItems(env, runId);
    // The items after the failure never ran: cancelled while pending (concurrency 2).
    expect(items.filter((i) => i.status === 'cancelled').length).toBeGreaterThan(0);
    expect(effects.filter((e) => e.key.startsWith(`${runId}:items:`)).length).toBeLessThan(values.length - 1);
  });

  it('a workflow step runs a child run whose output is the step output; forEach runs one child per item', async () => {
    const runId = await engine.start('parent', { value: 21, values: [1, 2, 3] });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('succeeded');
    expect(run.output).toEqual({ one: { result: 42 }, many: [{ result: 2 }, { result: 4 }, { result: 6 }] });
    const { rows: children } = await env.pool.query(
      `SELECT id, workflow_name, status, parent_run_id, parent_step_id, depth, tags FROM runs WHERE parent_run_id = $1 ORDER BY parent_step_id`,
      [runId],
    );
    expect(children).toHaveLength(4);
    for (const child of children) {
      // A child run carries its parent's tags.
      expect(child).toMatchObject({ workflow_name: 'child', status: 'succeeded', depth: 1, tags: { batch: 'b-21' } });
    }
    const { rows: steps } = await env.pool.query(
      `SELECT step_id, child_run_id FROM step_executions WHERE run_id = $1 AND step_id = 'one'`,
      [runId],
    );
    expect(children.map((c) => c.id)).toContain(steps[0].child_run_id);
    const items = await runItems(env, runId);
    expect(items.every((i) => children.some((c) => c.id === i.child_run_id))).toBe(true);
  });

  it('a child that fails fails its step with CHILD_RUN_FAILED and the child error attached', async () => {
    const runId = await engine.start('parent', { value: 13, values: [] });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({ stepId: 'one', code: ErrorCode.CHILD_RUN_FAILED });
    expect(run.error.details).toMatchObject({ status: 'failed', error: { code: 'ITEM_BROKEN' } });
  });

  it('a workflow that calls itself ends at BATON_MAX_CHILD_DEPTH with CHILD_DEPTH_EXCEEDED', async () => {
    const runId = await engine.start('recursive', {});
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({ code: ErrorCode.CHILD_RUN_FAILED });
    const { rows } = await env.pool.query(
      `WITH RECURSIVE tree AS (SELECT id, depth, error FROM runs WHERE id = $1
         UNION ALL SELECT r.id, r.depth, r.error FROM runs r JOIN tree t ON r.parent_run_id = t.id)
       SELECT depth, error->>'code' AS code FROM tree ORDER BY depth`,
      [runId],
    );
    expect(rows.map((r) => r.depth)).toEqual([0, 1, 2, 3]);
    expect(rows[3].code).toBe(ErrorCode.CHILD_DEPTH_EXCEEDED);
  });

  it('a workflow step naming an unknown workflow fails with WORKFLOW_NOT_FOUND', async () => {
    const run = await engine.waitForRun(await engine.start('dangling', {}));
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({ code: ErrorCode.WORKFLOW_NOT_FOUND, stepId: 'call' });
  });

  it('cancelling a parent cancels its running children', async () => {
    await saveDefinition(env.pool, {
      name: 'slow-child',
      steps: [{ id: 'wait', sleep: { durationMs: 60_000 } }],
    });
    await saveDefinition(env.pool, {
      name: 'slow-parent',
      steps: [{ id: 'kids', forEach: '{{ [1, 2] }}', workflow: 'slow-child', input: {} }],
    });
    const runId = await engine.start('slow-parent', {});
    const children = await waitFor(
      async () => {
        const { rows } = await env.pool.query(`SELECT id FROM runs WHERE parent_run_id = $1 AND status = 'running'`, [
          runId,
        ]);
        return rows.length === 2 ? rows : undefined;
      },
      15_000,
      'both children running',
    );
    await engine.coordinator.handle({ type: 'run.cancel', runId, compensate: false });
    expect((await engine.waitForRun(runId)).status).toBe('cancelled');
    for (const child of children) expect((await engine.waitForRun(child.id)).status).toBe('cancelled');
  });

  it('repeat runs the step until its condition holds, each iteration its own execution', async () => {
    await saveDefinition(env.pool, {
      name: 'poll-until',
      steps: [
        {
          id: 'settled',
          function: 'fanout-poll',
          input: { transfer: '{{ input.transfer }}' },
          repeat: { until: 'output.status = "settled"', maxIterations: 5, delayMs: 50 },
          retry: fast,
        },
      ],
    });
    const run = await engine.waitForRun(await engine.start('poll-until', { transfer: 't1' }));
    expect(run.status).toBe('succeeded');
    expect(run.output).toEqual({ settled: { status: 'settled', n: 3 } });
    expect(polls.get('t1')).toBe(3);
    const items = await runItems(env, run.id);
    expect(items.map((i) => [i.item_index, i.status])).toEqual([
      [0, 'succeeded'],
      [1, 'succeeded'],
      [2, 'succeeded'],
    ]);
  });

  it('repeat fails with REPEAT_EXHAUSTED after maxIterations', async () => {
    await saveDefinition(env.pool, {
      name: 'poll-short',
      steps: [
        {
          id: 'settled',
          function: 'fanout-poll',
          input: { transfer: '{{ input.transfer }}' },
          repeat: { until: 'output.status = "settled"', maxIterations: 2 },
          retry: fast,
        },
      ],
    });
    const run = await engine.waitForRun(await engine.start('poll-short', { transfer: 't2' }));
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({ code: ErrorCode.REPEAT_EXHAUSTED, stepId: 'settled' });
    expect(polls.get('t2')).toBe(2);
  });

  describe('compensation and retry of a forEach step', () => {
    beforeAll(async () => {
      await saveDefinition(env.pool, {
        name: 'each-undo',
        steps: [
          {
            id: 'items',
            forEach: '{{ input.values }}',
            concurrency: 1,
            function: 'fanout-item',
            input: { value: '{{ item }}', fail: '{{ item = $$.input.broken }}' },
            retry: fast,
            compensate: { function: 'fanout-undo', input: { item: '{{ item }}', index: '{{ index }}' }, retry: fast },
          },
          { id: 'last', function: 'fanout-item', input: { value: 0, fail: '{{ input.failLast }}' }, retry: fast },
        ],
      });
    });

    it('undoes each succeeded item with its own item and index, newest first, once', async () => {
      const runId = await engine.start('each-undo', { values: [10, 20, 30], failLast: true });
      const run = await engine.waitForRun(runId);
      expect(run.status).toBe('compensated');
      // concurrency 1: items finished in list order, so newest first is 2, 1, 0.
      expect(undone.map((u) => [u.index, u.item])).toEqual([
        [2, 30],
        [1, 20],
        [0, 10],
      ]);
      expect(new Set(undone.map((u) => u.key)).size).toBe(3);
      const { rows } = await env.pool.query(
        `SELECT item_index, status FROM step_executions
          WHERE run_id = $1 AND kind = 'action' AND parent_execution_id IS NOT NULL ORDER BY item_index`,
        [runId],
      );
      expect(rows.map((r) => r.status)).toEqual(['compensated', 'compensated', 'compensated']);
    });

    it('a step whose item failed undoes its succeeded items; a retry runs only the others', async () => {
      const runId = await engine.start('each-undo', { values: [1, 2, 3, 4], broken: 3 });
      const run = await engine.waitForRun(runId);
      expect(run.status).toBe('compensated');
      expect(run.error).toMatchObject({ stepId: 'items', itemIndex: 2 });
      expect(undone.map((u) => u.index)).toEqual([1, 0]);

      // Retry: the compensated items, the failed one and the cancelled one run again; the list is
      // not resolved again.
      effects.length = 0;
      // Item inputs were resolved when the step started; the fix is in what the failed item was sent.
      await env.pool.query(
        `UPDATE step_executions SET input = jsonb_set(input, '{fail}', 'false')
          WHERE run_id = $1 AND item_index = 2 AND status = 'failed'`,
        [runId],
      );
      await engine.coordinator.handle({ type: 'run.retry', runId, attempt: 0 });
      const retried = await engine.waitForRun(runId, ['succeeded', 'failed', 'compensated']);
      expect(retried.status).toBe('succeeded');
      // Items 0 and 1 were undone: they run again under new keys; items 2 and 3 never succeeded.
      const keys = effects.filter((e) => e.key.startsWith(`${runId}:items:`)).map((e) => e.key);
      expect(keys.sort()).toEqual([`${runId}:items:0:1`, `${runId}:items:1:1`, `${runId}:items:2`, `${runId}:items:3`]);
      expect(retried.output.items.map((o: { doubled: number }) => o.doubled)).toEqual([2, 4, 6, 8]);
    });

    it('a retry after a failure without compensation re-runs only the items that did not succeed', async () => {
      await saveDefinition(env.pool, {
        name: 'each-retry',
        // The other items finish before the step fails (failFast could cancel some in flight, and
        // those would rightly run again on retry).
        onStepFailure: 'waitForAll',
        steps: [
          {
            id: 'items',
            forEach: '{{ input.values }}',
            function: 'fanout-item',
            input: { value: '{{ item }}', fail: '{{ item = $$.input.broken }}' },
            retry: fast,
          },
        ],
      });
      const runId = await engine.start('each-retry', { values: [1, 2, 3, 4, 5], broken: 4 });
      expect((await engine.waitForRun(runId)).status).toBe('failed');
      const firstKeys = effects.map((e) => e.key);
      expect(firstKeys).toHaveLength(4);
      effects.length = 0;
      // Item inputs were resolved when the step started: a retry naming the step gives the items it
      // re-runs a new input (here the fixed one of the broken item).
      await engine.coordinator.handle({
        type: 'run.retry',
        runId,
        attempt: 0,
        stepId: 'items',
        input: { value: 4, fail: false },
      });
      const retried = await engine.waitForRun(runId, ['succeeded', 'failed']);
      expect(retried.status).toBe('succeeded');
      expect(effects.map((e) => e.key)).toEqual([`${runId}:items:3`]);
      expect(retried.output.items.map((o: { doubled: number }) => o.doubled)).toEqual([2, 4, 6, 8, 10]);
    });
  });

  it('does not load a large run input again on every batch, and plans with it all the same', async () => {
    // An input of ~80 KB (its padding): one the payload cache keeps.
    const values = Array.from({ length: 40 }, (_, i) => i);
    await saveDefinition(env.pool, {
      name: 'big-list',
      steps: [
        { id: 'echo', function: 'fanout-item', input: { value: '{{ $count(input.values) }}' }, retry: fast },
        {
          id: 'items',
          forEach: '{{ input.values }}',
          concurrency: 50,
          function: 'fanout-item',
          input: { value: '{{ item }}' },
          retry: fast,
        },
      ],
      output: { n: '{{ $count(steps.items.output) }}', first: '{{ steps.echo.output.doubled }}' },
    });
    // Random, so that PostgreSQL's compression leaves it large.
    const padding = crypto.randomBytes(40_000).toString('base64');
    const runId = await engine.start('big-list', { values, padding });
    const run = await engine.waitForRun(runId, undefined, 60_000);
    expect(run.output).toEqual({ n: 40, first: 80 });
    // A batch after the first finds the input in the cache: the lock statement leaves it out.
    const client = await env.pool.connect();
    try {
      await client.query('BEGIN');
      const { runs } = await lockAndRecord(client, [runId], []);
      expect(runs.get(runId)?.input).toEqual({ values, padding });
      const { rows } = await client.query(`SELECT pg_column_size(input) AS bytes FROM runs WHERE id = $1`, [runId]);
      expect(rows[0].bytes).toBeGreaterThanOrEqual(payloads.minStoredBytes);
      expect(payloads.held([`run:${runId}`])).toEqual([`run:${runId}`]);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
  });

  it('a forEach step reopened by a retry outputs its new items, not a cached copy of the old output', async () => {
    await saveDefinition(env.pool, {
      name: 'big-undo',
      steps: [
        {
          id: 'items',
          forEach: '{{ input.blobs }}',
          function: 'fanout-item',
          input: { value: 0, echo: '{{ item }}' },
          retry: fast,
          compensate: { function: 'fanout-undo', input: { item: 'x', index: '{{ index }}' }, retry: fast },
        },
        { id: 'last', function: 'fanout-item', input: { value: 0, fail: true }, retry: fast },
      ],
      output: { keys: '{{ steps.items.output.key }}' },
    });
    // ~44 KB of incompressible output once collected: one the payload cache keeps.
    const blobs = Array.from({ length: 4 }, () => crypto.randomBytes(8_000).toString('base64'));
    const runId = await engine.start('big-undo', { blobs });
    expect((await engine.waitForRun(runId)).status).toBe('compensated');
    await engine.coordinator.handle({
      type: 'run.retry',
      runId,
      attempt: 0,
      stepId: 'last',
      input: { value: 0, fail: false },
    });
    const retried = await engine.waitForRun(runId, ['succeeded', 'failed', 'compensated']);
    expect(retried.status).toBe('succeeded');
    // The undone items ran again under new keys: the step's output is theirs.
    expect(retried.output.keys).toEqual(blobs.map((_, i) => `${runId}:items:${i}:1`));
  });

  it('links a step or item to a child run only once that child exists (an item that could not start none)', async () => {
    await saveDefinition(env.pool, {
      name: 'dangling-each',
      steps: [{ id: 'kids', forEach: '{{ [1, 2, 3] }}', concurrency: 1, workflow: 'no-such-workflow', input: {} }],
    });
    const run = await engine.waitForRun(await engine.start('dangling-each', {}));
    expect(run.error).toMatchObject({ code: ErrorCode.WORKFLOW_NOT_FOUND, stepId: 'kids', itemIndex: 0 });
    // Across every run of this suite (children started, cancelled, refused): no dangling link.
    const { rows } = await env.pool.query(
      `SELECT e.id, e.step_id, e.status FROM step_executions e LEFT JOIN runs r ON r.id = e.child_run_id
        WHERE e.child_run_id IS NOT NULL AND r.id IS NULL`,
    );
    expect(rows).toEqual([]);
  });
});
