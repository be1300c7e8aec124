import type { SerializedError } from './errors';
import { ErrorCode } from './error-codes';
import { CHILD_WORKFLOW_FUNCTION, type RetryPolicy, type StepDefinition, type WorkflowDefinition } from './definition';
import { evaluateCondition, resolveTemplate } from './expressions';
import {
  decideFanout,
  DEFAULT_FOREACH_MAX_ITEMS,
  inFlight,
  inputTemplate,
  listProblem,
  planItems,
  type FanoutCounts,
  type ItemFailure,
  type LastIteration,
  type PlannedItem,
} from './fanout';
import { isOutstandingStep, isTerminalRun, type RunStatus, type StepStatus } from './states';

/**
 * The planner: definition + run state → what to do next. Pure (no I/O, no clock): the coordinator
 * loads the state under the run's row lock, calls `planRun`, and writes what it returns.
 */

export interface StepExecutionState {
  id: string;
  stepId: string;
  kind: 'action' | 'compensation';
  function: string;
  status: StepStatus;
  attempt: number;
  output?: unknown;
  error?: SerializedError | null;
  /** Completion order is compensation order (reversed). */
  finishedAt?: Date | null;
  createdAt: Date;
  /** A forEach/repeat step: its items' counts (the items themselves are never loaded). */
  fanout?: FanoutCounts;
  /** A forEach/repeat step with a failed item: the earliest one. */
  firstFailure?: ItemFailure;
  /** A repeat step: its newest iteration, once ended. */
  last?: LastIteration;
  /** A `workflow:` step: the child run it started. */
  childRunId?: string | null;
  /**
   * Copied from the run this one was forked from (`POST /v1/runs/:id/fork`): its output stands, and
   * its effect belongs to that run, so this run never compensates it.
   */
  copied?: boolean;
}

export interface RunState {
  id: string;
  workflow: string;
  workflowVersion: number;
  status: RunStatus;
  input: unknown;
  /** Set when the run was stopped (cancelled, timed out) or a step failed for good. */
  error?: RunError | null;
  /** Inputs given to `POST /v1/runs/:id/retry`, by step id: they replace the step's template. */
  inputOverrides?: Record<string, unknown>;
  /** Executions in force (superseded ones, from before a retry, left out). */
  executions: StepExecutionState[];
}

export interface RunError extends SerializedError {
  stepId: string;
  function: string;
  attempt: number;
  /** A forEach step's failed item (a repeat step's iteration, from 0). */
  itemIndex?: number;
}

export interface PlannedExecution {
  stepId: string;
  kind: 'action' | 'compensation';
  function: string;
  input: unknown;
  retry: RetryPolicy;
  timeoutMs?: number;
  /** A `workflow:` step (or item): the child workflow to start. */
  workflow?: string;
  /** Set when the step fails as it starts (a forEach that is not a list…): recorded failed, not run. */
  error?: SerializedError;
  /**
   * A forEach or repeat step's own execution, with the items to create under it (a repeat step
   * starts with its first iteration). `list`: the forEach list, kept as the execution's input.
   */
  fanout?: {
    mode: 'forEach' | 'repeat';
    items: PlannedItem[];
    concurrency?: number;
    list?: unknown[];
    /**
     * A forEach step's compensation: one item per succeeded item of this action execution, newest
     * first, one at a time; the coordinator reads them (the planner never loads items).
     */
    undoes?: string;
  };
  /** An item of an existing forEach/repeat execution (a repeat step's next iteration). */
  item?: { parentExecutionId: string; index: number; delayMs: number };
}

/** A forEach/repeat step that is done: the coordinator writes its status and output. */
export interface Settlement {
  executionId: string;
  stepId: string;
  kind: 'action' | 'compensation';
  /** `cancelled`: stopped with nothing in flight because a sibling step failed (waitForAll). */
  status: 'succeeded' | 'failed' | 'cancelled';
  /** forEach: the output is the items' outputs in list order, assembled by the store. */
  collect?: boolean;
  output?: unknown;
  error?: SerializedError & { itemIndex?: number };
}

export interface Plan {
  /** New executions to record as queued and enqueue. */
  start: PlannedExecution[];
  /** Action steps to record as skipped (their condition was false, or all they need was skipped). */
  skip: string[];
  /** Outstanding executions to cancel (fail-fast: a sibling failed for good). */
  cancel?: string[];
  /** forEach steps whose next pending items to dispatch (in list order), and how many. */
  promote?: { executionId: string; count: number }[];
  /** forEach/repeat steps that are done. Planning goes on in a new transaction (`readvance`). */
  settle?: Settlement[];
  /** forEach/repeat steps whose pending and in-flight items must be cancelled. */
  cancelItemsOf?: string[];
  /** forEach steps whose pending items (only) must be cancelled: a sibling failed (waitForAll). */
  cancelPendingOf?: string[];
  /** Plan the run again once this plan is committed (a step settled here). */
  readvance?: boolean;
  /** A new run status, when it changes. */
  status?: RunStatus;
  output?: unknown;
  error?: RunError;
}

/** The data expressions see: `input`, `steps.<id>.output`, `run`. */
export function expressionContext(run: RunState): Record<string, unknown> {
  const steps: Record<string, { output: unknown; status: StepStatus }> = {};
  for (const exec of latestByStep(run.executions, 'action').values()) {
    steps[exec.stepId] = { output: exec.output ?? null, status: exec.status };
  }
  return { input: run.input, steps, run: { id: run.id, workflow: run.workflow, version: run.workflowVersion } };
}

/** The newest execution of each step of one kind (a retried run adds newer rows). */
export function latestByStep(
  executions: StepExecutionState[],
  kind: 'action' | 'compensation',
): Map<string, StepExecutionState> {
  const latest = new Map<string, StepExecutionState>();
  for (const exec of executions) {
    if (exec.kind !== kind) continue;
    const current = latest.get(exec.stepId);
    if (!current || exec.createdAt >= current.createdAt) latest.set(exec.stepId, exec);
  }
  return latest;
}

const DONE: readonly StepStatus[] = ['succeeded', 'compensating', 'compensated'];

/** Run error codes for runs stopped from outside (aliases of the registry's). */
export const CANCELLED = ErrorCode.CANCELLED;
export const WORKFLOW_TIMEOUT = ErrorCode.WORKFLOW_TIMEOUT;

export interface PlanOptions {
  /** BATON_FOREACH_MAX_ITEMS. */
  maxForEachItems?: number;
}

export async function planRun(definition: WorkflowDefinition, run: RunState, options: PlanOptions = {}): Promise<Plan> {
  const plan: Plan = { start: [], skip: [] };
  if (isTerminalRun(run.status)) return plan;
  if (run.status === 'compensating') return planCompensation(definition, run, plan);

  const actions = latestByStep(run.executions, 'action');
  // forEach/repeat steps in progress: their counts say what to do next. A step that settles here is
  // written by the coordinator, and the run is planned again against it (its output included).
  // A forEach/repeat step with a failed item is failing: under waitForAll it settles only once its
  // items in flight have ended, and meanwhile nothing new starts, as for a failed step.
  const failing = [...actions.values()].some((e) => e.status === 'running' && (e.fanout?.failed ?? 0) > 0);
  const stopping = failing || [...actions.values()].some((e) => e.status === 'failed');
  await progressFanouts(definition, run, [...actions.values()], plan, stopping);
  if (plan.readvance || failing) return plan;
  const failed = [...actions.values()].filter((e) => e.status === 'failed');
  const active = [...actions.values()].some((e) => isOutstandingStep(e.status));
  if (failed.length) {
    const first = failed.sort((a, b) => (a.finishedAt?.getTime() ?? 0) - (b.finishedAt?.getTime() ?? 0))[0];
    if (active) {
      // waitForAll: let running siblings finish (their results may need compensating too).
      if (definition.onStepFailure === 'waitForAll') return plan;
      plan.cancel = [...actions.values()].filter((e) => isOutstandingStep(e.status)).map((e) => e.id);
    }
    plan.error = runErrorOf(first);
    return planCompensation(definition, run, { ...plan, status: 'compensating' });
  }

  // Decide every step whose needs are all settled; skipping can settle further steps, so repeat.
  const settled = new Map<string, StepStatus>();
  for (const [id, exec] of actions) settled.set(id, exec.status);
  const context = expressionContext(run);
  let progressed = true;
  while (progressed) {
    progressed = false;
    for (const step of definition.steps) {
      if (settled.has(step.id)) continue;
      const needStates = step.needs.map((n) => settled.get(n));
      if (needStates.some((s) => s === undefined || !(DONE.includes(s) || s === 'skipped'))) continue;
      const allNeedsSkipped = step.needs.length > 0 && needStates.every((s) => s === 'skipped');
      if (allNeedsSkipped || (step.if !== undefined && !(await evaluateCondition(step.if, context)))) {
        plan.skip.push(step.id);
        settled.set(step.id, 'skipped');
        progressed = true;
        continue;
      }
      plan.start.push(await actionExecution(step, context, run.inputOverrides, options));
      settled.set(step.id, 'queued');
    }
  }

  const allSettled = definition.steps.every((s) => {
    const status = settled.get(s.id);
    return status !== undefined && (DONE.includes(status) || status === 'skipped');
  });
  if (allSettled) {
    plan.status = 'succeeded';
    plan.output = await runOutput(definition, context);
  } else if (run.status === 'pending') {
    plan.status = 'running';
  }
  return plan;
}

async function actionExecution(
  step: StepDefinition,
  context: Record<string, unknown>,
  overrides: Record<string, unknown> = {},
  options: PlanOptions = {},
): Promise<PlannedExecution> {
  const override = step.id in overrides ? { value: overrides[step.id] } : undefined;
  const base: PlannedExecution = {
    stepId: step.id,
    kind: 'action',
    function: step.function,
    input: {},
    retry: step.retry,
    ...(step.timeoutMs === undefined ? {} : { timeoutMs: step.timeoutMs }),
    ...(step.function === CHILD_WORKFLOW_FUNCTION && step.workflow ? { workflow: step.workflow } : {}),
  };
  if (step.forEach !== undefined) {
    const list = await resolveTemplate(step.forEach, context);
    const error = listProblem(list, options.maxForEachItems ?? DEFAULT_FOREACH_MAX_ITEMS);
    if (error) return { ...base, input: null, error };
    const items = await planItems(step, list as unknown[], context, override);
    return {
      ...base,
      input: null,
      fanout: {
        mode: 'forEach',
        items,
        list: list as unknown[],
        ...(step.concurrency === undefined ? {} : { concurrency: step.concurrency }),
      },
    };
  }
  // Built-in kinds take their spec as input: templates in it are resolved like any input.
  const input = (override ? override.value : await resolveTemplate(inputTemplate(step), context)) ?? {};
  if (step.repeat) return { ...base, input: null, fanout: { mode: 'repeat', items: [{ index: 0, input }] } };
  return { ...base, input };
}

/**
 * The next moves of the forEach/repeat steps in progress (actions, or a forEach step's compensation),
 * into `plan`. `stopping`: a step failed for good, so a step in progress starts nothing new.
 */
async function progressFanouts(
  definition: WorkflowDefinition,
  run: RunState,
  executions: StepExecutionState[],
  plan: Plan,
  stopping: boolean,
): Promise<void> {
  const steps = new Map(definition.steps.map((s) => [s.id, s]));
  let context: Record<string, unknown> | undefined;
  for (const exec of executions) {
    const step = steps.get(exec.stepId);
    if (!exec.fanout || exec.status !== 'running' || !step) continue;
    const settled = { executionId: exec.id, stepId: exec.stepId, kind: exec.kind };
    if (stopping && exec.fanout.failed === 0) {
      if (exec.fanout.pending > 0) (plan.cancelPendingOf ??= []).push(exec.id);
      if (inFlight(exec.fanout) === 0) {
        (plan.settle ??= []).push({ ...settled, status: 'cancelled' });
        plan.readvance = true;
      }
      continue;
    }
    context ??= expressionContext(run);
    const decision = await decideFanout(
      step,
      exec.fanout,
      // Unwinding stops at its first failure: a compensation's items never wait for each other.
      exec.kind === 'compensation' ? 'failFast' : definition.onStepFailure,
      context,
      exec.firstFailure,
      exec.last,
    );
    switch (decision.kind) {
      case 'wait':
        break;
      case 'promote':
        (plan.promote ??= []).push({ executionId: exec.id, count: decision.count });
        break;
      case 'succeed':
        (plan.settle ??= []).push({
          ...settled,
          status: 'succeeded',
          ...(decision.collect ? { collect: true } : { output: decision.output }),
        });
        plan.readvance = true;
        break;
      case 'fail':
        if (decision.cancelItems) (plan.cancelItemsOf ??= []).push(exec.id);
        (plan.settle ??= []).push({ ...settled, status: 'failed', error: decision.error });
        plan.readvance = true;
        break;
      case 'iterate': {
        const input = (await resolveTemplate(inputTemplate(step), { ...context, iteration: decision.index })) ?? {};
        plan.start.push({
          stepId: step.id,
          kind: 'action',
          function: step.function,
          input,
          retry: step.retry,
          ...(step.timeoutMs === undefined ? {} : { timeoutMs: step.timeoutMs }),
          ...(step.workflow ? { workflow: step.workflow } : {}),
          item: { parentExecutionId: exec.id, index: decision.index, delayMs: decision.delayMs },
        });
        break;
      }
    }
  }
}

async function runOutput(definition: WorkflowDefinition, context: Record<string, unknown>): Promise<unknown> {
  if (definition.output !== undefined) return (await resolveTemplate(definition.output, context)) ?? null;
  const steps = context.steps as Record<string, { output: unknown }>;
  return Object.fromEntries(Object.entries(steps).map(([id, s]) => [id, s.output]));
}

/**
 * Saga unwinding: compensations run one at a time, newest completed step first. A compensation that
 * fails for good stops the unwinding: the run needs a person (`compensation_failed`).
 */
async function planCompensation(definition: WorkflowDefinition, run: RunState, plan: Plan): Promise<Plan> {
  const actions = latestByStep(run.executions, 'action');
  const compensations = latestByStep(run.executions, 'compensation');
  // A forEach step's compensation in progress: its items' counts say what is next.
  await progressFanouts(definition, run, [...compensations.values()], plan, false);
  if (plan.readvance) return plan;
  const comps = [...compensations.values()];
  if (comps.some((c) => isOutstandingStep(c.status))) return plan;
  if (comps.some((c) => c.status === 'failed')) return { ...plan, status: 'compensation_failed' };

  const stepIndex = new Map(definition.steps.map((s, i) => [s.id, i]));
  const toUndo = definition.steps
    .filter((s) => s.compensate && hasEffect(actions.get(s.id)))
    .filter((s) => compensations.get(s.id)?.status !== 'succeeded')
    .sort((a, b) => {
      const fa = actions.get(a.id)?.finishedAt?.getTime() ?? 0;
      const fb = actions.get(b.id)?.finishedAt?.getTime() ?? 0;
      return fb - fa || (stepIndex.get(b.id) ?? 0) - (stepIndex.get(a.id) ?? 0);
    });
  const next = toUndo[0];
  if (!next?.compensate) {
    // A cancelled run stays `cancelled` however it was unwound; otherwise, with nothing that
    // needed undoing, the run simply failed.
    const cancelled = (plan.error ?? run.error)?.code === CANCELLED;
    return { ...plan, status: cancelled ? 'cancelled' : comps.length > 0 ? 'compensated' : 'failed' };
  }
  const action = actions.get(next.id);
  if (action?.fanout?.mode === 'forEach') {
    // Each succeeded item is undone with its own `item` and `index`, newest first, one at a time.
    plan.start.push({
      stepId: next.id,
      kind: 'compensation',
      function: next.compensate.function,
      input: null,
      retry: next.compensate.retry,
      fanout: { mode: 'forEach', items: [], concurrency: 1, undoes: action.id },
    });
    if (run.status !== 'compensating') plan.status = 'compensating';
    return plan;
  }
  const context = expressionContext(run);
  plan.start.push({
    stepId: next.id,
    kind: 'compensation',
    function: next.compensate.function,
    input: (await resolveTemplate(next.compensate.input ?? {}, context)) ?? {},
    retry: next.compensate.retry,
  });
  if (run.status !== 'compensating') plan.status = 'compensating';
  return plan;
}

/**
 * Whether a step's execution left an effect to undo: it succeeded — or, for a forEach step that
 * failed or was stopped, some of its items did.
 */
function hasEffect(exec: StepExecutionState | undefined): boolean {
  if (!exec || exec.copied) return false;
  if (exec.fanout?.mode === 'forEach') return exec.fanout.succeeded > 0;
  return DONE.includes(exec.status);
}

/** A run's error from the step execution that failed it (`STEP_FAILED` when it recorded none). */
export function runErrorOf(exec: StepExecutionState): RunError {
  const error = exec.error ?? { code: ErrorCode.STEP_FAILED, message: 'step failed', nonRetryable: false };
  return { stepId: exec.stepId, function: exec.function, attempt: exec.attempt, ...error };
}

export type { FanoutCounts, ItemFailure, LastIteration, PlannedItem } from './fanout';
export { inFlight, DEFAULT_FOREACH_MAX_ITEMS } from './fanout';

/**
 * A run's error that no step caused (cancelled, timed out, an invalid definition or expression):
 * it names no step, and retrying the same run cannot help.
 */
export function runError(code: ErrorCode, message: string): RunError {
  return { stepId: '', function: '', attempt: 0, code, message, nonRetryable: true };
}
