import crypto from 'node:crypto';
import type { RunStart } from './run-rows';
import {
  CHILD_WORKFLOW_FUNCTION,
  ExpressionError,
  isBuiltinFunction,
  planRun,
  runPriority,
  type WorkflowDefinition,
} from '@baton/workflow';

/**
 * A run started with its first steps (issue 16): the gateway writes the run `running` and its first
 * executions `queued` in the statement that inserts it (run-rows.ts), then enqueues their jobs itself
 * — no `run.start` through the coordinator's inbox, no second transaction. The plan is the one the
 * coordinator would make for the run as it starts: the pure planner, against no executions.
 *
 * Only a start with nothing for the coordinator to decide or to carry out takes this path; any other
 * is inserted `pending` and announced to the coordinator as before (`undefined` here):
 * - admission: a `concurrency` limit or a `rateLimit` (a run is held under advisory locks, in order),
 *   a `debounce` window (no run yet), a priority template that fails on the input (the coordinator
 *   fails the run). A paused workflow is checked by the insert itself, which writes such a run
 *   `pending`;
 * - a first plan that is not only function steps to queue (and steps to skip): a built-in step (its
 *   timer, a waitForEvent's check), a `workflow:` step (a child run), a forEach or repeat step (its
 *   items), a step failing as it starts, a template that fails, a run that ends at once (every step
 *   skipped: its terminal transition, metrics, output).
 *
 * The run's deadline (`timeoutMs`) is written with it; its `run.timeout` timer is sent by the starter
 * after the commit, and the reconciler times out a run past its deadline whose timer was lost. A job
 * lost between the commit and the enqueue is the reconciler's too (an outstanding execution without a
 * job is enqueued again, after its grace period), as for the coordinator's own enqueues.
 */
export async function planDirectStart(
  definition: WorkflowDefinition,
  run: { id: string; workflow: string; version: number; input: unknown },
): Promise<RunStart | undefined> {
  if (definition.concurrency || definition.rateLimit || definition.debounce) return undefined;
  try {
    const priority = await runPriority(definition.priority, run.input);
    const plan = await planRun(definition, {
      id: run.id,
      workflow: run.workflow,
      workflowVersion: run.version,
      status: 'pending',
      input: run.input,
      executions: [],
    });
    const plain =
      plan.status === 'running' &&
      plan.start.length > 0 &&
      !plan.cancel?.length &&
      !plan.promote?.length &&
      !plan.settle?.length &&
      !plan.cancelItemsOf?.length &&
      !plan.cancelPendingOf?.length &&
      !plan.readvance &&
      plan.start.every(
        (p) =>
          !p.error &&
          !p.fanout &&
          !p.item &&
          !p.workflow &&
          p.function !== CHILD_WORKFLOW_FUNCTION &&
          !isBuiltinFunction(p.function),
      );
    if (!plain) return undefined;
    const functions = new Map(definition.steps.map((s) => [s.id, s.function]));
    return {
      priority,
      ...(definition.timeoutMs ? { deadlineMs: definition.timeoutMs } : {}),
      // A fresh run (no retry yet): the runtime derives each step's idempotency key from its job.
      queued: plan.start.map((p) => ({
        id: crypto.randomUUID(),
        stepId: p.stepId,
        kind: p.kind,
        function: p.function,
        input: p.input,
        retry: p.retry,
        ...(p.timeoutMs === undefined ? {} : { timeoutMs: p.timeoutMs }),
      })),
      skipped: plan.skip.map((stepId) => ({ id: crypto.randomUUID(), stepId, function: functions.get(stepId) ?? '' })),
    };
  } catch (err) {
    // The coordinator plans it instead, and fails the run with the expression's error.
    if (err instanceof ExpressionError) return undefined;
    throw err;
  }
}
