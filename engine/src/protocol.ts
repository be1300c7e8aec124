import crypto from 'node:crypto';
import type { StepReport } from '@baton/sdk';
import type { TraceCarrier } from './tracing';

/**
 * Messages between the gateway, the coordinator and the function runtime, all plain JSON: step jobs
 * are BullMQ job data on `{fn.<function>}`; run starts and step reports are entries of the
 * coordinator's inbox stream (inbox.ts); timers, deadlines, schedule ticks and control requests are
 * jobs on the BullMQ `{coordinator}` queue. Changing them means a rolling upgrade sees old and new
 * shapes side by side.
 */

/**
 * What travels between the coordinator and function processes (step job data, step reports, the
 * idempotency key) is the SDK's versioned wire protocol (sdk/src/protocol.ts).
 */
export {
  PROTOCOL_VERSION,
  stepIdempotencyKey,
  type StepJobData,
  type StepLogLine,
  type StepReport,
  type StepRetryPolicy,
} from '@baton/sdk';

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
  | { type: 'schedule.fire'; scheduleId: string; workflow: string }
  /** A debounce window's timer (debounce.ts): start its run if `dueAt` (ms) is still its due time. */
  | { type: 'debounce.fire'; workflow: string; key: string; runId: string; dueAt: number };

/** Held runs to look at again: the coordinator admits them in order (run-advancer.ts). */
export type AdmissionMessage =
  /** The oldest start of `workflow`'s rate bucket `key` leaves its window at `dueAt` (epoch ms). */
  | { type: 'admission.rateWake'; workflow: string; key: string; dueAt: number }
  /**
   * A run of admission group `key` was held for an earlier run admission had not looked at yet: look
   * at the group's held runs again at `dueAt` (epoch ms, rounded so one job serves a group's burst).
   */
  | { type: 'admission.groupWake'; workflow: string; key: string; dueAt: number }
  /** `workflow` was resumed at `at` (epoch ms): admit its held runs. */
  | { type: 'workflow.resume'; workflow: string; at: number };

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
  | AdmissionMessage
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
  if (message.type === 'debounce.fire') return `debounce_${message.runId}_${message.dueAt}`;
  // One wake-up per bucket and instant (a key may hold any character: hashed).
  if (message.type === 'admission.rateWake' || message.type === 'admission.groupWake') {
    const key = crypto.createHash('sha1').update(message.key).digest('hex').slice(0, 16);
    const kind = message.type === 'admission.rateWake' ? 'ratewake' : 'groupwake';
    return `${kind}_${message.workflow}_${key}_${message.dueAt}`;
  }
  if (message.type === 'workflow.resume') return `resume_${message.workflow}_${message.at}`;
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
