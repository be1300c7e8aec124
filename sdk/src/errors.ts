import { StepErrorCode } from './error-codes';

/**
 * Baton's failure hierarchy. Every error has a stable `code` (recorded with the step and shown by the
 * API) and says whether retrying can help. A handler throws `NonRetryableError` for a failure no
 * retry can fix (unknown customer, invalid data), `RetryableError` to be tried again (with
 * `retryAfterMs` when the other side said when); anything else it throws is retried per the step's
 * policy, with code `STEP_FAILED` unless the error has a string `code` of its own.
 */
export class BatonError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly details?: unknown;
  /** The earliest moment a retry makes sense (an HTTP Retry-After), in ms from now. */
  readonly retryAfterMs?: number;

  constructor(
    code: string,
    message: string,
    opts: { retryable?: boolean; details?: unknown; cause?: unknown; retryAfterMs?: number } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = opts.retryable ?? true;
    this.details = opts.details;
    if (opts.retryAfterMs !== undefined) this.retryAfterMs = opts.retryAfterMs;
  }
}

/** A failure no retry can fix: the step fails at once, whatever attempts remain. */
export class NonRetryableError extends BatonError {
  constructor(code: string, message: string, opts: { details?: unknown; cause?: unknown } = {}) {
    super(code, message, { ...opts, retryable: false });
  }
}

/**
 * A failure worth another attempt (per the step's retry policy). `retryAfterMs` (a server's
 * Retry-After) delays the next attempt when it is longer than the policy's backoff; it is capped at
 * one hour.
 */
export class RetryableError extends BatonError {
  constructor(code: string, message: string, opts: { details?: unknown; cause?: unknown; retryAfterMs?: number } = {}) {
    super(code, message, { ...opts, retryable: true });
  }
}

/** The attempt ran past the step's `timeoutMs`; retried per policy like any other failure. */
export class StepTimeoutError extends BatonError {
  constructor(timeoutMs: number) {
    super(StepErrorCode.STEP_TIMEOUT, `step attempt timed out after ${timeoutMs} ms`);
  }
}

/** The run was cancelled or timed out while this attempt ran: never retried. */
export class CancelledError extends BatonError {
  constructor(reason = 'run cancelled') {
    super(StepErrorCode.CANCELLED, reason, { retryable: false });
  }
}

/** Bad environment: the process prints the one-line message and exits. */
export class ConfigError extends BatonError {
  constructor(message: string) {
    super(StepErrorCode.CONFIG_INVALID, message, { retryable: false });
  }
}

/** The plain-object form stored in step/run rows and sent in step reports. */
export interface SerializedError {
  code: string;
  message: string;
  nonRetryable: boolean;
  details?: unknown;
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof BatonError) {
    return {
      code: err.code,
      message: err.message,
      nonRetryable: !err.retryable,
      ...(err.details === undefined ? {} : { details: err.details }),
    };
  }
  if (err instanceof Error) {
    const maybeCode = (err as unknown as { code?: unknown }).code;
    const code = typeof maybeCode === 'string' ? maybeCode : StepErrorCode.STEP_FAILED;
    return { code, message: err.message || err.name, nonRetryable: false };
  }
  return { code: StepErrorCode.STEP_FAILED, message: String(err), nonRetryable: false };
}
