/** Run and step states, exactly as the API reports them. */
export const RUN_STATUSES = [
  'pending',
  'running',
  'succeeded',
  'failed',
  'compensating',
  'compensated',
  'compensation_failed',
  'cancelled',
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const TERMINAL_RUN_STATUSES: readonly RunStatus[] = [
  'succeeded',
  'failed',
  'compensated',
  'compensation_failed',
  'cancelled',
];

/** What a run can be retried from (retry from failure; bulk retry). */
export const RETRYABLE_RUN_STATUSES: readonly RunStatus[] = [
  'failed',
  'compensated',
  'compensation_failed',
  'cancelled',
];

/** Runs not finished: what a cancel applies to. */
export const ACTIVE_RUN_STATUSES: readonly RunStatus[] = ['pending', 'running', 'compensating'];

export const STEP_STATUSES = [
  /** A forEach item created but not yet dispatched (a concurrency cap holds it). */
  'pending',
  'queued',
  'running',
  'retrying',
  'succeeded',
  'failed',
  'skipped',
  'compensating',
  'compensated',
  'cancelled',
] as const;
export type StepStatus = (typeof STEP_STATUSES)[number];

/** Step states in which a job for the execution should exist in Redis. */
export const OUTSTANDING_STEP_STATUSES: readonly StepStatus[] = ['queued', 'running', 'retrying'];

export function isTerminalRun(status: RunStatus): boolean {
  return TERMINAL_RUN_STATUSES.includes(status);
}

export function isOutstandingStep(status: StepStatus): boolean {
  return OUTSTANDING_STEP_STATUSES.includes(status);
}
