import type { SerializedError } from './errors';
import type { RetryPolicy } from './workflow/definition';

/**
 * Messages between the coordinator and the function runtime. They travel as BullMQ job data, so
 * they are plain JSON. Changing them means a rolling upgrade sees old and new shapes side by side.
 */

/** Job data of a step on `fn.<function>`. The BullMQ job id is `stepExecutionId`. */
export interface StepJobData {
  runId: string;
  stepExecutionId: string;
  stepId: string;
  workflow: string;
  kind: 'action' | 'compensation';
  function: string;
  input: unknown;
  retry: RetryPolicy;
  timeoutMs?: number;
}

export interface StepLogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  data?: Record<string, unknown>;
  time: string;
}

interface StepReportBase {
  runId: string;
  stepExecutionId: string;
  attempt: number;
  workerId: string;
  at: string;
  logs?: StepLogLine[];
}

export type StepReport =
  | (StepReportBase & { type: 'step.started' })
  | (StepReportBase & { type: 'step.retrying'; error: SerializedError; delayMs: number })
  | (StepReportBase & { type: 'step.succeeded'; output: unknown })
  | (StepReportBase & { type: 'step.failed'; error: SerializedError });

/** Requests to change a run from outside (API, deadline). */
export type RunControlMessage =
  | { type: 'run.cancel'; runId: string; compensate: boolean }
  /** Resume a failed/compensated/cancelled run at its failed steps; `attempt` = the run's `retries` when asked. */
  | { type: 'run.retry'; runId: string; attempt: number; input?: unknown; stepId?: string }
  /** The workflow's `timeoutMs` has passed (sent delayed when the run starts). */
  | { type: 'run.timeout'; runId: string; attempt: number };

/** Everything the coordinator queue carries. */
export type CoordinatorMessage = { type: 'run.start'; runId: string } | RunControlMessage | StepReport;

/**
 * Job id of a coordinator message, so a message sent twice (a crash and a re-run, the reconciler
 * replaying a finished job) is enqueued once. BullMQ custom ids must not contain ':'.
 */
export function coordinatorJobId(message: CoordinatorMessage): string {
  if (message.type === 'run.start') return `start_${message.runId}`;
  if (message.type === 'run.cancel') return `cancel_${message.runId}`;
  if (message.type === 'run.retry') return `retry_${message.runId}_${message.attempt}`;
  if (message.type === 'run.timeout') return `timeout_${message.runId}_${message.attempt}`;
  return `${message.stepExecutionId}_${message.attempt}_${message.type.slice(5)}`;
}
