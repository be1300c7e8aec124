import { traced, type StepJobData, type TraceCarrier } from '@baton/shared';

/** An execution as a step job needs it: what planning made, or what the reconciler read back. */
export interface DispatchedExecution {
  id: string;
  stepId: string;
  kind: 'action' | 'compensation';
  function: string;
  input: unknown;
  retry: StepJobData['retry'];
  timeoutMs?: number;
  idempotencyKey?: string;
}

/**
 * The job data of a step: the one definition, for a first enqueue (with the span that planned it)
 * and a re-enqueue by the reconciler (without one).
 */
export function stepJobData(
  run: { id: string; workflow: string },
  e: DispatchedExecution,
  trace?: TraceCarrier,
): StepJobData {
  return {
    runId: run.id,
    stepExecutionId: e.id,
    stepId: e.stepId,
    workflow: run.workflow,
    kind: e.kind,
    function: e.function,
    input: e.input,
    retry: e.retry,
    ...(e.timeoutMs === undefined ? {} : { timeoutMs: e.timeoutMs }),
    ...(e.idempotencyKey ? { idempotencyKey: e.idempotencyKey } : {}),
    // The function's attempt spans become children of the span that planned the step.
    ...(trace ? traced(trace) : {}),
  };
}
