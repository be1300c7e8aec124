import { downstreamOf, parseWorkflowDefinition, planFork, planRun, type StepExecutionState } from '@baton/workflow';
import { skipReason, sliceBudget } from '../../services/coordinator/src/bulk-operations';

/** The pure parts of bulk operations (pacing, skip reasons) and of fork (what a fork keeps). */

describe('bulk operation pacing (sliceBudget)', () => {
  it('never lets more than ratePerSec into one second', () => {
    expect(sliceBudget(10, 10, 200)).toBe(0);
    expect(sliceBudget(10, 9, 200)).toBe(1);
    expect(sliceBudget(10, 12, 200)).toBe(0);
  });

  it("spreads a second's requests over its passes, at least one a pass", () => {
    expect(sliceBudget(10, 0, 200)).toBe(2);
    expect(sliceBudget(1000, 0, 200)).toBe(200);
    expect(sliceBudget(1, 0, 200)).toBe(1);
    expect(sliceBudget(3, 0, 1000)).toBe(3);
  });
});

describe('bulk operation skip reasons', () => {
  it('says why a run was not retried or cancelled', () => {
    expect(
      skipReason('retry', { status: 'failed', retries: 0, alreadyRequested: false, requestId: 'r' }),
    ).toBeUndefined();
    expect(skipReason('retry', { alreadyRequested: false })).toBe('the run no longer exists');
    expect(skipReason('retry', { status: 'failed', alreadyRequested: true })).toBe(
      'a retry of the run is already requested',
    );
    expect(skipReason('retry', { status: 'succeeded', alreadyRequested: false })).toMatch(
      /^the run is succeeded: only failed/,
    );
    expect(skipReason('cancel', { status: 'cancelled', alreadyRequested: false })).toBe(
      'the run is cancelled: nothing to cancel',
    );
  });
});

describe('fork (planFork)', () => {
  // fetch → create → pdf → email, and audit beside them needing fetch only.
  const definition = parseWorkflowDefinition({
    name: 'f',
    steps: [
      { id: 'fetch', function: 'a' },
      { id: 'create', function: 'b', needs: ['fetch'] },
      { id: 'audit', function: 'c', needs: ['fetch'] },
      { id: 'pdf', function: 'd', needs: ['create'] },
      { id: 'email', function: 'e', needs: ['pdf', 'audit'] },
    ],
  });
  const all = ['fetch', 'create', 'audit', 'pdf', 'email'].map((stepId) => ({ stepId, executionId: `x-${stepId}` }));

  it('runs the step and everything downstream of it again, keeps the rest', () => {
    expect(downstreamOf(definition, ['create'])).toEqual(['create', 'pdf', 'email']);
    const plan = planFork(definition, 'create', all);
    expect(plan.keep.map((k) => k.stepId)).toEqual(['fetch', 'audit']);
    expect(plan.rerun).toEqual(['create', 'pdf', 'email']);
    expect(planFork(definition, 'fetch', all).keep).toEqual([]);
    expect(planFork(definition, 'email', all).rerun).toEqual(['email']);
  });

  it('runs again a step that had not succeeded in the source, even upstream', () => {
    const plan = planFork(
      definition,
      'pdf',
      all.filter((s) => s.stepId !== 'audit' && s.stepId !== 'email'),
    );
    expect(plan.keep.map((k) => k.stepId)).toEqual(['fetch', 'create']);
    expect(plan.rerun).toEqual(['audit', 'pdf', 'email']);
  });

  it('the planner never compensates a copied step', async () => {
    const saga = parseWorkflowDefinition({
      name: 's',
      steps: [
        { id: 'create', function: 'b', compensate: { function: 'undo' } },
        { id: 'pdf', function: 'd' },
      ],
    });
    const at = (n: number) => new Date(n * 1000);
    const executions = (copied: boolean): StepExecutionState[] => [
      {
        id: 'c',
        stepId: 'create',
        kind: 'action',
        function: 'b',
        status: 'succeeded',
        attempt: 1,
        createdAt: at(1),
        finishedAt: at(1),
        ...(copied ? { copied } : {}),
      },
      {
        id: 'p',
        stepId: 'pdf',
        kind: 'action',
        function: 'd',
        status: 'failed',
        attempt: 1,
        createdAt: at(2),
        finishedAt: at(2),
      },
    ];
    const run = (copied: boolean) => ({
      id: 'r',
      workflow: 's',
      workflowVersion: 1,
      status: 'running' as const,
      input: {},
      executions: executions(copied),
    });
    expect((await planRun(saga, run(false))).start.map((p) => [p.stepId, p.kind])).toEqual([
      ['create', 'compensation'],
    ]);
    const forked = await planRun(saga, run(true));
    expect(forked.start).toEqual([]);
    expect(forked.status).toBe('failed');
  });
});
