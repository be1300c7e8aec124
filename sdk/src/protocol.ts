import type { SerializedError } from './errors';
import { inboxShardKey } from './keys';
import type { RedisConnection } from './redis';
import type { TraceCarrier } from './tracing';

/**
 * The wire protocol between the coordinator and function processes, all plain JSON:
 *
 * - a step is a BullMQ job on `{fn.<function>}` (keys.ts) whose data is `StepJobData` and whose id
 *   is its `stepExecutionId`; its `attempts` and backoff are the step's retry policy;
 * - an attempt's outcome is a `StepReport`, appended (XADD, field `m`, the JSON) to the coordinator's
 *   inbox stream `<prefix>:{coordinator}:inbox`, or the shard the job data names (`inboxShard`);
 * - a cancellation is a JSON array of execution ids published on `<prefix>:cancel`.
 *
 * Versioning. `PROTOCOL_VERSION` names this shape. Within a version, changes are additive: a new
 * field is optional and a reader ignores fields it does not know, so a coordinator and functions of
 * different releases work side by side during a rolling upgrade (and functions built on an older
 * @baton/sdk keep working). A change a reader cannot ignore bumps the version; reports carry it in
 * `v`, and the coordinator keeps reading the previous version for at least one release. Job data
 * without `v` is version 1.
 */
export const PROTOCOL_VERSION = 1;

/** The step's retry policy, as the workflow definition gave it (defaults filled in). */
export interface StepRetryPolicy {
  /** Every try, the first included. */
  attempts: number;
  backoff: {
    type: 'fixed' | 'exponential';
    delayMs: number;
    maxDelayMs: number;
    /** 0..1: each delay is scaled by a random factor in [1 - jitter, 1]. */
    jitter: number;
  };
  /** Error codes that fail the step at once, like a NonRetryableError. */
  nonRetryableErrors: string[];
}

/** Job data of a step on `{fn.<function>}`. The BullMQ job id is `stepExecutionId`. */
export interface StepJobData {
  /** The protocol version the coordinator wrote (absent: 1). */
  v?: number;
  runId: string;
  stepExecutionId: string;
  stepId: string;
  workflow: string;
  kind: 'action' | 'compensation';
  function: string;
  input: unknown;
  retry: StepRetryPolicy;
  timeoutMs?: number;
  /**
   * Set only when the step runs again after its effect was undone by compensation (a retried run):
   * then the key gains a generation, so the side effect is made anew instead of found.
   */
  idempotencyKey?: string;
  /**
   * The run's priority, 1 (highest) … 10 (absent: 5): the BullMQ priority the job was enqueued with,
   * kept so that a re-enqueue keeps it. The runtime does not read it.
   */
  priority?: number;
  /** W3C trace context of the span that planned this step (tracing on only). */
  trace?: TraceCarrier;
  /**
   * The inbox shard the run's messages go to (keys.ts `inboxShardKey`), set by a coordinator with a
   * sharded inbox; absent: shard 0. The function reports there, so it needs no shard setting.
   */
  inboxShard?: number;
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
  /** The protocol version of the reporting runtime (absent: 1, a runtime older than versioning). */
  v?: number;
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
  /**
   * When the runtime sent the report, epoch ms with a fraction (`epochMs()`), for the coordinator's
   * `baton_step_hop_seconds{hop="inbox_wait"}`. Absent from runtimes before it: not measured then.
   */
  sentAt?: number;
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

/** The field of an inbox stream entry that holds the message's JSON. */
export const INBOX_MESSAGE_FIELD = 'm';

/**
 * Appends one message, already encoded as JSON, to the coordinator inbox (its shard `shard`,
 * `StepJobData.inboxShard`): a caller that retries
 * delivery encodes once, so an encoding error is told apart from Redis refusing the XADD.
 */
export async function appendEncodedToInbox(
  redis: RedisConnection,
  prefix: string,
  encoded: string,
  shard = 0,
): Promise<void> {
  await redis.xadd(reportStreamKey(prefix, shard), '*', INBOX_MESSAGE_FIELD, encoded);
}

/** The inbox stream a report for `shard` goes to (StepJobData.inboxShard; absent or invalid: 0). */
export function reportStreamKey(prefix: string, shard = 0): string {
  // Job data is read from Redis: anything but a shard number means shard 0.
  return inboxShardKey(prefix, Number.isSafeInteger(shard) && shard > 0 ? shard : 0);
}

/**
 * Event names (`ctx.emit`, `POST /v1/events/:name`, `waitForEvent`): lowercase letters, digits,
 * dots, dashes and underscores, at most 128 characters.
 */
export const EVENT_NAME_PATTERN = /^[a-z][a-z0-9._-]{0,127}$/;

/**
 * Delay before the next attempt, after `attemptsMade` failed ones (1 after the first failure).
 * `random` is injectable so tests are deterministic.
 */
export function backoffDelayMs(
  policy: StepRetryPolicy,
  attemptsMade: number,
  random: () => number = Math.random,
): number {
  const { type, delayMs, maxDelayMs, jitter } = policy.backoff;
  const raw = type === 'fixed' ? delayMs : delayMs * 2 ** Math.max(0, attemptsMade - 1);
  const capped = Math.min(raw, maxDelayMs);
  // "Equal jitter" towards zero: spreads retries of many failing steps apart without ever
  // waiting longer than the cap.
  return Math.round(capped * (1 - jitter * random()));
}

/** Whether an error with this code and retryability may be tried again under `policy`. */
export function isRetryable(policy: StepRetryPolicy, error: { code: string; nonRetryable: boolean }): boolean {
  return !error.nonRetryable && !policy.nonRetryableErrors.includes(error.code);
}
