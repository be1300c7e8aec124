import {
  DEFAULT_FOREACH_MAX_ITEMS,
  ErrorCode,
  inFlight,
  parseWorkflowDefinition,
  planRun,
  type FanoutCounts,
  type RunState,
  type StepExecutionState,
} from '@baton/workflow';
import { decideFanout, listProblem } from '../../workflow/src/fanout';

/** The pure planning of forEach and repeat steps: what counts call for, without a database. */

const def = parseWorkflowDefinition({
  name: 'x',
  steps: [
    {
      id: 'each',
      forEach: '{{ input.list }}',
      concurrency: 3,
      function: 'f',
      input: { v: '{{ item }}', i: '{{ index }}' },
    },
    { id: 'poll', function: 'p', needs: [], repeat: { until: 'output.done', maxIterations: 3, delayMs: 100 } },
  ],
});
const each = def.steps[0];
const poll = def.steps[1];

const counts = (c: Partial<FanoutCounts>): FanoutCounts => ({
  mode: 'forEach',
  total: 10,
  pending: 0,
  succeeded: 0,
  failed: 0,
  cancelled: 0,
  undone: 0,
  concurrency: 3,
  ...c,
});

describe('forEach and repeat planning', () => {
  it('refuses a list that is not an array, or too long, with codes that are not retried', () => {
    expect(listProblem({ a: 1 }, 10)).toMatchObject({ code: ErrorCode.FOREACH_NOT_A_LIST, nonRetryable: true });
    expect(listProblem(null, 10)?.message).toContain('null');
    expect(listProblem([1, 2, 3], 2)).toMatchObject({ code: ErrorCode.FOREACH_TOO_MANY_ITEMS, nonRetryable: true });
    expect(listProblem([], 2)).toBeUndefined();
    expect(DEFAULT_FOREACH_MAX_ITEMS).toBe(10_000);
  });

  it('dispatches pending items up to the concurrency cap, and succeeds when all have', async () => {
    // 2 in flight of 3 allowed: one more.
    expect(
      await decideFanout(each, counts({ pending: 5, succeeded: 3 }), 'failFast', {}, undefined, undefined),
    ).toEqual({
      kind: 'promote',
      count: 1,
    });
    expect(inFlight(counts({ pending: 5, succeeded: 3 }))).toBe(2);
    expect(await decideFanout(each, counts({ pending: 7 }), 'failFast', {}, undefined, undefined)).toEqual({
      kind: 'wait',
    });
    expect(
      await decideFanout(each, counts({ succeeded: 10, concurrency: null }), 'failFast', {}, undefined, undefined),
    ).toEqual({ kind: 'succeed', collect: true });
  });

  it('fails on a failed item, naming it; waitForAll first lets the items in flight finish', async () => {
    const failure = { index: 4, attempt: 2, error: { code: 'BOOM', message: 'it broke', nonRetryable: true } };
    const c = counts({ pending: 3, succeeded: 4, failed: 1 });
    expect(await decideFanout(each, c, 'failFast', {}, failure, undefined)).toEqual({
      kind: 'fail',
      error: { code: 'BOOM', message: 'item 4: it broke', nonRetryable: true, itemIndex: 4 },
      cancelItems: true,
    });
    expect(await decideFanout(each, c, 'waitForAll', {}, failure, undefined)).toEqual({ kind: 'wait' });
    const settled = counts({ pending: 3, succeeded: 6, failed: 1 });
    expect(await decideFanout(each, settled, 'waitForAll', {}, failure, undefined)).toMatchObject({
      kind: 'fail',
      cancelItems: true,
    });
  });

  it('repeat: iterates after its delay until `until` holds, and fails when iterations run out', async () => {
    const c = (total: number): FanoutCounts => counts({ mode: 'repeat', total, succeeded: total, concurrency: null });
    const last = (done: boolean) => ({ index: 0, status: 'succeeded', output: { done } });
    expect(await decideFanout(poll, c(1), 'failFast', {}, undefined, last(false))).toEqual({
      kind: 'iterate',
      index: 1,
      delayMs: 100,
    });
    expect(await decideFanout(poll, c(2), 'failFast', {}, undefined, last(true))).toEqual({
      kind: 'succeed',
      collect: false,
      output: { done: true },
    });
    expect(await decideFanout(poll, c(3), 'failFast', {}, undefined, last(false))).toMatchObject({
      kind: 'fail',
      error: { code: ErrorCode.REPEAT_EXHAUSTED },
    });
  });

  it('planRun resolves each item with item and index, and a repeat step starts its first iteration', async () => {
    const run: RunState = {
      id: 'r',
      workflow: 'x',
      workflowVersion: 1,
      status: 'pending',
      input: { list: ['a', 'b'] },
      executions: [],
    };
    const plan = await planRun(def, run);
    const forEach = plan.start.find((p) => p.stepId === 'each');
    expect(forEach?.fanout).toEqual({
      mode: 'forEach',
      list: ['a', 'b'],
      concurrency: 3,
      items: [
        { index: 0, input: { v: 'a', i: 0 } },
        { index: 1, input: { v: 'b', i: 1 } },
      ],
    });
    expect(plan.start.find((p) => p.stepId === 'poll')?.fanout).toEqual({
      mode: 'repeat',
      items: [{ index: 0, input: {} }],
    });
  });

  it('planRun settles a finished forEach step and plans again, instead of planning past it', async () => {
    const exec: StepExecutionState = {
      id: 'e1',
      stepId: 'each',
      kind: 'action',
      function: 'f',
      status: 'running',
      attempt: 0,
      createdAt: new Date(),
      fanout: counts({ total: 2, succeeded: 2 }),
    };
    const run: RunState = {
      id: 'r',
      workflow: 'x',
      workflowVersion: 1,
      status: 'running',
      input: { list: ['a', 'b'] },
      executions: [exec, { ...exec, id: 'e2', stepId: 'poll', function: 'p', fanout: undefined }],
    };
    const plan = await planRun(def, run);
    expect(plan.settle).toEqual([
      { executionId: 'e1', stepId: 'each', kind: 'action', status: 'succeeded', collect: true },
    ]);
    expect(plan.readvance).toBe(true);
    expect(plan.start).toEqual([]);
  });

  it('planRun starts nothing new while a forEach step with a failed item waits for its items (waitForAll)', async () => {
    const waiting = parseWorkflowDefinition({
      name: 'y',
      onStepFailure: 'waitForAll',
      steps: [
        { id: 'each', forEach: '{{ input.list }}', function: 'f', needs: [] },
        { id: 'slow', function: 'g', needs: [] },
        { id: 'after', function: 'h', needs: ['slow'] },
      ],
    });
    const base = { kind: 'action' as const, attempt: 1, createdAt: new Date() };
    const run: RunState = {
      id: 'r',
      workflow: 'y',
      workflowVersion: 1,
      status: 'running',
      input: { list: [1, 2, 3] },
      executions: [
        {
          ...base,
          id: 'e1',
          stepId: 'each',
          function: 'f',
          status: 'running',
          fanout: counts({ total: 3, failed: 1, succeeded: 1, concurrency: null }),
          firstFailure: { index: 0, attempt: 1, error: { code: 'X', message: 'x', nonRetryable: true } },
        },
        { ...base, id: 'e2', stepId: 'slow', function: 'g', status: 'succeeded' },
      ],
    };
    // One item still in flight: wait, and do not start `after` although `slow` is done.
    expect(await planRun(waiting, run)).toEqual({ start: [], skip: [] });
  });
});
