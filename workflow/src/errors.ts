import { BatonError } from '@baton/sdk';
import { ErrorCode } from './error-codes';

/**
 * Baton's failure hierarchy. Its root and what a step handler throws (`BatonError`,
 * `NonRetryableError`, `RetryableError`, `StepTimeoutError`, `CancelledError`, `ConfigError`,
 * `serializeError`) are the SDK's (sdk/src/errors.ts), so an error thrown in a function and one
 * thrown in the engine are the same classes; the engine's own failures extend them here.
 */
export {
  BatonError,
  CancelledError,
  ConfigError,
  NonRetryableError,
  RetryableError,
  StepTimeoutError,
  serializeError,
  type SerializedError,
} from '@baton/sdk';

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
