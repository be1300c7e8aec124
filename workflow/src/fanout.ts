import type { SerializedError } from './errors';
import { ErrorCode } from './error-codes';
import type { StepDefinition } from './definition';
import { evaluateCondition, resolveTemplateEach } from './expressions';

/**
 * The pure part of forEach and repeat steps (docs/WORKFLOWS.md): what a step's items are when it
 * starts, and what its counts call for next. A forEach or repeat step has one execution the planner
 * sees (its status, and once done its output) and item executions under it that it never loads: it
 * reads their counts (`FanoutCounts`) instead, so planning after an item's report costs the same for
 * 10 000 items as for one.
 */

export type FanoutMode = 'forEach' | 'repeat';

/** How many items of a forEach/repeat step are in each state (`step_fanouts`). */
export interface FanoutCounts {
  mode: FanoutMode;
  /** Items created: the list's length, or the iterations begun. */
  total: number;
  /** Created, not yet dispatched (a concurrency cap). */
  pending: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  /** Succeeded items whose effect is being, or was, undone. */
  undone: number;
  concurrency: number | null;
}

/** Items dispatched and not finished. */
export function inFlight(c: FanoutCounts): number {
  return c.total - c.pending - c.succeeded - c.failed - c.cancelled - c.undone;
}

/** An item of a step that failed for good, as the step's (and the run's) error names it. */
export interface ItemFailure {
  index: number;
  attempt: number;
  error: SerializedError | null;
}

/** The newest iteration of a repeat step, once it has ended. */
export interface LastIteration {
  index: number;
  status: string;
  output: unknown;
}

/** An item to create: its position and its input (templates resolved with `item`, `index`). */
export interface PlannedItem {
  index: number;
  input: unknown;
}

/** What a forEach/repeat step's counts call for. */
export type FanoutDecision =
  | { kind: 'wait' }
  /** Dispatch this many pending items (in list order). */
  | { kind: 'promote'; count: number }
  /** The step is done: output = the items' outputs in list order (`collect`), or `output`. */
  | { kind: 'succeed'; collect: true }
  | { kind: 'succeed'; collect: false; output: unknown }
  /** The step failed; `cancelItems`: stop its items still pending or in flight first. */
  | { kind: 'fail'; error: SerializedError & { itemIndex?: number }; cancelItems: boolean }
  /** repeat: the next iteration, after the step's delay. */
  | { kind: 'iterate'; index: number; delayMs: number };

export const DEFAULT_FOREACH_MAX_ITEMS = 10_000;

/** Why a forEach list cannot start (the step fails, not retried), or undefined when it can. */
export function listProblem(list: unknown, maxItems: number): SerializedError | undefined {
  if (!Array.isArray(list)) {
    const what = list === null ? 'null' : typeof list;
    return {
      code: ErrorCode.FOREACH_NOT_A_LIST,
      message: `forEach resolved to ${what}, not a JSON array`,
      nonRetryable: true,
    };
  }
  if (list.length > maxItems) {
    return {
      code: ErrorCode.FOREACH_TOO_MANY_ITEMS,
      message: `forEach resolved to ${list.length} items; at most ${maxItems} are allowed (BATON_FOREACH_MAX_ITEMS)`,
      nonRetryable: true,
    };
  }
  return undefined;
}

/** The input template of a step (built-in kinds take their spec as input). */
export function inputTemplate(step: StepDefinition): unknown {
  return step.sleep ?? step.waitForEvent ?? step.input ?? {};
}

/** Each item's input: the step's template resolved with `item` and `index` added to the context. */
export async function planItems(
  step: StepDefinition,
  list: unknown[],
  context: Record<string, unknown>,
  override?: { value: unknown },
): Promise<PlannedItem[]> {
  const inputs = override
    ? list.map(() => override.value)
    : await resolveTemplateEach(inputTemplate(step), context, list);
  return inputs.map((input, index) => ({ index, input: input ?? {} }));
}

/**
 * What a running forEach/repeat step does next, from its counts. `firstFailure`: the earliest item
 * that failed for good (loaded only when `failed` > 0). `last`: a repeat step's newest iteration.
 */
export async function decideFanout(
  step: StepDefinition,
  counts: FanoutCounts,
  onStepFailure: 'failFast' | 'waitForAll',
  context: Record<string, unknown>,
  firstFailure: ItemFailure | undefined,
  last: LastIteration | undefined,
): Promise<FanoutDecision> {
  const flying = inFlight(counts);
  if (counts.failed > 0) {
    // waitForAll lets the items in flight finish (their results may need compensating too) and
    // starts no new one; failFast stops them.
    if (onStepFailure === 'waitForAll' && flying > 0) return { kind: 'wait' };
    const index = firstFailure?.index ?? -1;
    const cause = firstFailure?.error ?? { code: ErrorCode.STEP_FAILED, message: 'item failed', nonRetryable: false };
    const what = counts.mode === 'forEach' ? `item ${index}` : `iteration ${index + 1}`;
    return {
      kind: 'fail',
      error: { ...cause, message: `${what}: ${cause.message}`, itemIndex: index },
      cancelItems: flying + counts.pending > 0,
    };
  }
  if (counts.mode === 'forEach') {
    if (counts.succeeded + counts.undone === counts.total) return { kind: 'succeed', collect: true };
    const room = (counts.concurrency ?? Number.POSITIVE_INFINITY) - flying;
    const count = Math.min(room, counts.pending);
    return count > 0 ? { kind: 'promote', count } : { kind: 'wait' };
  }
  // repeat: one iteration at a time.
  if (flying > 0 || counts.pending > 0 || !last || !step.repeat) return { kind: 'wait' };
  const iteration = counts.total;
  const done = await evaluateCondition(step.repeat.until, { ...context, output: last.output, iteration });
  if (done) return { kind: 'succeed', collect: false, output: last.output };
  if (iteration >= step.repeat.maxIterations) {
    return {
      kind: 'fail',
      error: {
        code: ErrorCode.REPEAT_EXHAUSTED,
        message: `repeat ended after ${iteration} iterations without its until condition becoming true`,
        nonRetryable: true,
      },
      cancelItems: false,
    };
  }
  return { kind: 'iterate', index: iteration, delayMs: step.repeat.delayMs };
}
