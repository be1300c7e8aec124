import type { SerializedError } from './errors';
import type { TraceCarrier } from './tracing';
import type { RetryPolicy } from './workflow/definition';

/**
 * Messages between the gateway, the coordinator and the function runtime, all plain JSON: step jobs
 * are BullMQ job data on `{fn.<function>}`; run starts and step reports are entries of the
 * coordinator's inbox stream (inbox.ts); timers, deadlines, schedule ticks and control requests are
 * jobs on the BullMQ `{coordinator}` queue. Changing them means a rolling upgrade sees old and new
 * shapes side by side.
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
  /**
   * Set only when the step runs again after its effect was undone by compensation (a retried run):
   * then the key gains a generation, so the side effect is made anew instead of found.
   */
  idempotencyKey?: string;
  /** W3C trace context of the span that planned this step (tracing on only). */
  trace?: TraceCarrier;
}

/**
 * A step's idempotency key (`ctx.idempotencyKey`): `<runId>:<stepId>`, plus `:compensate` for its
 * compensation, stable across attempts and retries of the run. A step run again after its effect was
 * undone gets a generation (`:<n>`, n > 0), carried in the job data (`StepJobData.idempotencyKey`).
 */
export function stepIdempotencyKey(
  step: { runId: string; stepId: string; kind: 'action' | 'compensation' },
  generation = 0,
): string {
  const base = `${step.runId}:${step.stepId}${step.kind === 'compensation' ? ':compensate' : ''}`;
  return generation > 0 ? `${base}:${generation}` : base;
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
  /**
   * When the attempt started. A step that finishes quickly sends no `step.started` (one message per
   * step, not two): its final report carries the start time instead.
   */
  startedAt?: string;
  /** The reporting function (lets the coordinator note which functions have live workers). */
  function?: string;
  logs?: StepLogLine[];
  /** The attempt's span, so the coordinator's handling joins the run's trace. */
  trace?: TraceCarrier;
}

export type StepReport =
  | (StepReportBase & { type: 'step.started' })
  | (StepReportBase & { type: 'step.retrying'; error: SerializedError; delayMs: number })
  /** `events`: what the handler emitted with ctx.emit, published once the success is recorded. */
  | (StepReportBase & { type: 'step.succeeded'; output: unknown; events?: { name: string; payload: unknown }[] })
  | (StepReportBase & { type: 'step.failed'; error: SerializedError });

/**
 * Requests to change a run from outside (API, deadline). `requestId`: the `control_requests` row the
 * gateway recorded first (see control-requests.ts); the message is only its wake-up.
 */
export type RunControlMessage =
  | { type: 'run.cancel'; runId: string; compensate: boolean; requestId?: string }
  /** Resume a failed/compensated/cancelled run at its failed steps; `attempt` = the run's `retries` when asked. */
  | { type: 'run.retry'; runId: string; attempt: number; input?: unknown; stepId?: string; requestId?: string }
  /** The workflow's `timeoutMs` has passed (sent delayed when the run starts). */
  | { type: 'run.timeout'; runId: string; attempt: number };

/** Built-in step kinds: the coordinator's own timers, sent as delayed messages. */
export type BuiltinStepMessage =
  /** A `sleep` step's time has come. */
  | { type: 'step.wake'; runId: string; stepExecutionId: string }
  /** A `waitForEvent` step's timeout has passed. */
  | { type: 'step.waitTimeout'; runId: string; stepExecutionId: string };

/** Messages not about one run: the coordinator finds the runs concerned. */
export type TriggerMessage =
  /** Offer a stored event to the runs parked on `waitForEvent` for its name. */
  | { type: 'event.deliver'; eventId: string }
  /** A schedule's tick, produced by a BullMQ job scheduler (`scheduleId` = `<workflow>:<trigger index>`). */
  | { type: 'schedule.fire'; scheduleId: string; workflow: string };

/**
 * Everything the coordinator receives: the `InboxMessage`s (run starts, step reports) on its inbox
 * stream, the rest as jobs on its BullMQ queue (which still takes reports from functions older than
 * the inbox).
 */
export type CoordinatorMessage =
  | { type: 'run.start'; runId: string; trace?: TraceCarrier }
  | RunControlMessage
  | BuiltinStepMessage
  | TriggerMessage
  | StepReport;

/**
 * Job id of a coordinator message sent as a BullMQ job, so a message sent twice (a crash and a
 * re-run, the reconciler replaying a finished job) is enqueued once. BullMQ custom ids must not
 * contain ':'. (Inbox entries need none: applying one twice changes nothing.)
 */
export function coordinatorJobId(message: CoordinatorMessage): string {
  if (message.type === 'run.start') return `start_${message.runId}`;
  if (message.type === 'step.wake' || message.type === 'step.waitTimeout')
    return `${message.type}_${message.stepExecutionId}`;
  if (message.type === 'event.deliver') return `deliver_${message.eventId}`;
  // Ticks come from BullMQ's job scheduler, which names its jobs itself.
  if (message.type === 'schedule.fire') throw new Error('schedule ticks are enqueued by their job scheduler');
  // A recorded request is one message: a second cancel of the same run is a request of its own.
  if (message.type === 'run.cancel')
    return message.requestId ? `cancel_${message.requestId}` : `cancel_${message.runId}`;
  if (message.type === 'run.retry')
    return message.requestId ? `retry_${message.requestId}` : `retry_${message.runId}_${message.attempt}`;
  if (message.type === 'run.timeout') return `timeout_${message.runId}_${message.attempt}`;
  return `${message.stepExecutionId}_${message.attempt}_${message.type.slice(5)}`;
}
