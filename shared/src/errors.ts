import { ErrorCode } from './error-codes';

/**
 * Baton's failure hierarchy. Every error has a stable `code` (part of the API and of step error
 * records) and says whether retrying can help. Handlers throw `NonRetryableError` for failures no
 * retry can fix (unknown customer, invalid data); anything else is retried per the step's policy.
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

/** The attempt ran past the step's `timeoutMs`; retried per policy like any other failure. */
export class StepTimeoutError extends BatonError {
  constructor(timeoutMs: number) {
    super(ErrorCode.STEP_TIMEOUT, `step attempt timed out after ${timeoutMs} ms`);
  }
}

/** The run was cancelled or timed out while this attempt ran: never retried. */
export class CancelledError extends BatonError {
  constructor(reason = 'run cancelled') {
    super(ErrorCode.CANCELLED, reason, { retryable: false });
  }
}

/** A value from outside (API body, definition, env) is invalid. `details` lists each problem. */
export class ValidationError extends BatonError {
  constructor(message: string, details?: ValidationProblem[], code: string = ErrorCode.VALIDATION_FAILED) {
    super(code, message, { retryable: false, details });
  }
}

export interface ValidationProblem {
  /** Where the problem is, e.g. `steps[2].needs[0]` or `input.customerId`. */
  path: string;
  message: string;
}

export class NotFoundError extends BatonError {
  constructor(what: string, id: string) {
    super(ErrorCode.NOT_FOUND, `${what} '${id}' not found`, { retryable: false });
  }
}

export class ConflictError extends BatonError {
  constructor(message: string) {
    super(ErrorCode.CONFLICT, message, { retryable: false });
  }
}

/**
 * Redis did not answer in time, or refused (a frozen or failing-over server): the operation may
 * succeed when tried again. The gateway answers it with 503 `REDIS_UNAVAILABLE`.
 */
export class RedisUnavailableError extends BatonError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(ErrorCode.REDIS_UNAVAILABLE, message, { ...opts, retryable: true });
  }
}

/** Bad environment: the process prints the one-line message and exits. */
export class ConfigError extends BatonError {
  constructor(message: string) {
    super(ErrorCode.CONFIG_INVALID, message, { retryable: false });
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
    const code = typeof maybeCode === 'string' ? maybeCode : ErrorCode.STEP_FAILED;
    return { code, message: err.message || err.name, nonRetryable: false };
  }
  return { code: ErrorCode.STEP_FAILED, message: String(err), nonRetryable: false };
}
