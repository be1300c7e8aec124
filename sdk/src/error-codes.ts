/**
 * The error codes the function runtime itself produces (step errors the coordinator records and
 * `GET /v1/runs/:id` shows). They are part of Baton's registry of codes (`ErrorCode` in
 * workflow/src/error-codes.ts, which takes them from here): never change one, add a new one instead.
 * A function's own codes are its own (`NonRetryableError('CUSTOMER_NOT_FOUND', …)`).
 *
 * "Retryable" says whether the step's retry policy applies.
 */
export const StepErrorCode = {
  /** The run was cancelled on request (or a step attempt was aborted by it). Not retryable. */
  CANCELLED: 'CANCELLED',
  /** A step attempt ran past the step's `timeoutMs`. Retryable (per the step's policy). */
  STEP_TIMEOUT: 'STEP_TIMEOUT',
  /** A step failed with an error that carries no code of its own (a crash, a plain Error). Retryable. */
  STEP_FAILED: 'STEP_FAILED',
  /** A step's output (with its emitted events) is over BATON_MAX_OUTPUT_BYTES. Not retryable. */
  OUTPUT_TOO_LARGE: 'OUTPUT_TOO_LARGE',
  /** A step's input does not match the function's input schema. Not retryable. */
  INVALID_INPUT: 'INVALID_INPUT',
  /** A step emitted an event with an invalid name. Not retryable. */
  INVALID_EVENT: 'INVALID_EVENT',
  /** A step emitted more events than one step may. Not retryable. */
  TOO_MANY_EVENTS: 'TOO_MANY_EVENTS',
  /** The environment is invalid: the process prints the message and exits. Not retryable. */
  CONFIG_INVALID: 'CONFIG_INVALID',
} as const;

export type StepErrorCode = (typeof StepErrorCode)[keyof typeof StepErrorCode];
