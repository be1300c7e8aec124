import { ErrorCode } from '@baton/workflow';
import type { StepReport } from '@baton/engine';
import type { EndedChild } from './child-store';

/**
 * Child runs (`workflow:` steps), the parts without I/O. A child run is started by the transaction
 * that dispatches the execution awaiting it (its id is that execution's: see child-store.ts); when it
 * ends, the coordinator reports to the parent exactly as a function would — a `step.succeeded` with
 * the child's output or a `step.failed` with CHILD_RUN_FAILED — through the inbox, so the parent's
 * step goes through the same guard, recording and planning as any other. A lost report is re-sent
 * by the reconciler, and applying one twice changes nothing.
 */

/** BATON_MAX_CHILD_DEPTH's default: a workflow calling itself ends after this many levels. */
export const DEFAULT_MAX_CHILD_DEPTH = 16;

/** Who reports a child run's end (step_attempts.worker_id). */
export const CHILD_REPORTER = 'coordinator';

/** The report a child run's end makes to the step (or item) of its parent that awaits it. */
export function childReport(child: EndedChild, at = new Date()): StepReport {
  const base = {
    runId: child.parentRunId,
    stepExecutionId: child.parentExecutionId,
    attempt: 1,
    workerId: CHILD_REPORTER,
    at: at.toISOString(),
  };
  if (child.status === 'succeeded') return { type: 'step.succeeded', ...base, output: child.output ?? null };
  const cause = child.error as { code?: string; message?: string } | null;
  return {
    type: 'step.failed',
    ...base,
    error: {
      code: ErrorCode.CHILD_RUN_FAILED,
      message: `child run ${child.id} ended ${child.status}${cause?.message ? `: ${cause.message}` : ''}`,
      nonRetryable: true,
      details: { childRunId: child.id, status: child.status, error: child.error ?? null },
    },
  };
}
