import {
  parseWorkflowDefinition,
  planRun,
  type RunState,
  type StepExecutionState,
  type StepStatus,
  type WorkflowDefinition,
} from '@baton/workflow';

let clock = 0;
function exec(stepId: string, status: StepStatus, extra: Partial<StepExecutionState> = {}): StepExecutionState {
  clock += 1;
  return {
    id: `${stepId}-${clock}`,
    stepId,
    kind: 'action',
    function: 'fn',
    status,
    attempt: 1,
    createdAt: new Date(clock * 1000),
    finishedAt: ['succeeded', 'failed', 'compensated', 'compensating'].includes(status)
      ? new Date(clock * 1000 + 1)
      : null,
    ...extra,
  };
}

function run(status: RunState['status'], executions: StepExecutionState[], input: unknown = { n: 1 }): RunState {
  return { id: 'r1', workflow: 'w', workflowVersion: 1, status, input, executions };
}

const saga: WorkflowDefinition = parseWorkflowDefinition({
  name: 'saga',
  steps: [
    {
      id: 'a',
      function: 'fa',
      input: { n: '{{ input.n }}' },
      compensate: { function: 'undo-a', input: { v: '{{ steps.a.output.v }}' } },
    },
    { id: 'b', function: 'fb', compensate: { function: 'undo-b' } },
    { id: 'c', function: 'fc', input: { fromA: '{{ steps.a.output.v }}' } },
  ],
});

describe('planner', () => {
  it('starts the first step of a new run with its resolved input', async () => {
    const plan = await planRun(saga, run('pending', []));
    expect(plan.status).toBe('running');
    expect(plan.start).toEqual([
      expect.objectContaining({ stepId: 'a', kind: 'action', function: 'fa', input: { n: 1 } }),
    ]);
  });

  it('waits while a step is outstanding and then starts the next with earlier outputs', async () => {
    expect(await planRun(saga, run('running', [exec('a', 'running')]))).toEqual({ start: [], skip: [] });
    const a = exec('a', 'succeeded', { output: { v: 'A' } });
    const b = exec('b', 'succeeded');
    const plan = await planRun(saga, run('running', [a, b]));
    expect(plan.start).toEqual([expect.objectContaining({ stepId: 'c', input: { fromA: 'A' } })]);
    expect(plan.status).toBeUndefined();
  });

  it('succeeds when every step is done, with every output by step id by default', async () => {
    const plan = await planRun(
      saga,
      run('running', [
        exec('a', 'succeeded', { output: { v: 1 } }),
        exec('b', 'succeeded'),
        exec('c', 'succeeded', { output: 3 }),
      ]),
    );
    expect(plan).toEqual({ start: [], skip: [], status: 'succeeded', output: { a: { v: 1 }, b: null, c: 3 } });
  });

  it('runs independent steps in parallel, joins, and skips by condition and by skipped needs', async () => {
    const dag = parseWorkflowDefinition({
      name: 'dag',
      steps: [
        { id: 'root', function: 'f' },
        { id: 'left', function: 'f', needs: ['root'] },
        { id: 'right', function: 'f', needs: ['root'], if: 'input.n > 5' },
        { id: 'afterRight', function: 'f', needs: ['right'] },
        { id: 'join', function: 'f', needs: ['left', 'afterRight'] },
      ],
    });
    const first = await planRun(dag, run('running', [exec('root', 'succeeded')]));
    expect(first.start.map((s) => s.stepId)).toEqual(['left']);
    expect(first.skip).toEqual(['right', 'afterRight']);
    const joined = await planRun(
      dag,
      run('running', [
        exec('root', 'succeeded'),
        exec('left', 'succeeded'),
        exec('right', 'skipped'),
        exec('afterRight', 'skipped'),
      ]),
    );
    expect(joined.start.map((s) => s.stepId)).toEqual(['join']);
  });

  it('compensates completed steps newest first, one at a time, then ends compensated', async () => {
    const a = exec('a', 'succeeded', { output: { v: 'A' } });
    const b = exec('b', 'succeeded');
    const c = exec('c', 'failed', {
      error: { code: 'BOOM', message: 'boom', nonRetryable: false },
      attempt: 3,
      function: 'fc',
    });
    const first = await planRun(saga, run('running', [a, b, c]));
    expect(first.status).toBe('compensating');
    expect(first.error).toEqual({
      stepId: 'c',
      function: 'fc',
      attempt: 3,
      code: 'BOOM',
      message: 'boom',
      nonRetryable: false,
    });
    expect(first.start).toEqual([expect.objectContaining({ stepId: 'b', kind: 'compensation', function: 'undo-b' })]);

    const undoB = exec('b', 'succeeded', { kind: 'compensation' });
    const second = await planRun(saga, run('compensating', [a, { ...b, status: 'compensated' }, c, undoB]));
    expect(second.start).toEqual([expect.objectContaining({ stepId: 'a', function: 'undo-a', input: { v: 'A' } })]);
    expect(second.status).toBeUndefined();

    const undoA = exec('a', 'succeeded', { kind: 'compensation' });
    const done = await planRun(
      saga,
      run('compensating', [{ ...a, status: 'compensated' }, { ...b, status: 'compensated' }, c, undoB, undoA]),
    );
    expect(done).toEqual({ start: [], skip: [], status: 'compensated' });
  });

  it('ends compensation_failed when a compensation fails for good', async () => {
    const plan = await planRun(
      saga,
      run('compensating', [
        exec('a', 'compensating'),
        exec('b', 'failed'),
        exec('a', 'failed', { kind: 'compensation' }),
      ]),
    );
    expect(plan.status).toBe('compensation_failed');
  });

  it('fails without compensation when nothing completed needs undoing', async () => {
    const plan = await planRun(
      saga,
      run('running', [
        exec('a', 'failed', { error: { code: 'CUSTOMER_NOT_FOUND', message: 'no', nonRetryable: true } }),
      ]),
    );
    expect(plan.status).toBe('failed');
    expect(plan.error).toMatchObject({ stepId: 'a', code: 'CUSTOMER_NOT_FOUND', nonRetryable: true });
    expect(plan.start).toEqual([]);
  });

  it('fails fast by default: cancels running siblings and unwinds at once', async () => {
    const par = parseWorkflowDefinition({
      name: 'p',
      steps: [
        { id: 'x', function: 'f', needs: [] },
        { id: 'y', function: 'f', needs: [], compensate: { function: 'u' } },
        { id: 'z', function: 'f', needs: [], compensate: { function: 'u' } },
      ],
    });
    const y = exec('y', 'running');
    const plan = await planRun(par, run('running', [exec('z', 'succeeded'), exec('x', 'failed'), y]));
    expect(plan.cancel).toEqual([y.id]);
    expect(plan.status).toBe('compensating');
    expect(plan.start).toEqual([expect.objectContaining({ stepId: 'z', kind: 'compensation' })]);
  });

  it('with waitForAll, lets running siblings finish before unwinding', async () => {
    const par = parseWorkflowDefinition({
      name: 'p',
      onStepFailure: 'waitForAll',
      steps: [
        { id: 'x', function: 'f', needs: [] },
        { id: 'y', function: 'f', needs: [], compensate: { function: 'u' } },
      ],
    });
    expect(await planRun(par, run('running', [exec('x', 'failed'), exec('y', 'running')]))).toEqual({
      start: [],
      skip: [],
    });
    const plan = await planRun(par, run('running', [exec('x', 'failed'), exec('y', 'succeeded')]));
    expect(plan.start).toEqual([expect.objectContaining({ stepId: 'y', kind: 'compensation' })]);
  });

  it('uses a retry input override instead of the template, and ends a cancelled unwinding cancelled', async () => {
    const plan = await planRun(saga, { ...run('running', []), inputOverrides: { a: { n: 42 } } });
    expect(plan.start).toEqual([expect.objectContaining({ stepId: 'a', input: { n: 42 } })]);
    const cancelled = await planRun(saga, {
      ...run('compensating', [exec('a', 'compensated'), exec('a', 'succeeded', { kind: 'compensation' })]),
      error: { stepId: '', function: '', attempt: 0, code: 'CANCELLED', message: 'x', nonRetryable: true },
    });
    expect(cancelled.status).toBe('cancelled');
  });

  it('plans nothing for a finished run', async () => {
    expect(await planRun(saga, run('succeeded', []))).toEqual({ start: [], skip: [] });
  });
});
