import type { ErrorRequestHandler, RequestHandler } from 'express';
import {
  ErrorCode,
  BatonError,
  ConflictError,
  NotFoundError,
  RedisUnavailableError,
  ValidationError,
} from '@baton/workflow';
import { isDatabaseUnavailable, type Logger } from '@baton/engine';

/** An HTTP failure with its own status; thrown by handlers and middleware, rendered below. */
export class ApiError extends BatonError {
  readonly status: number;
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    code: string,
    message: string,
    opts: { details?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(code, message, { retryable: false, details: opts.details });
    this.status = status;
    this.headers = opts.headers ?? {};
  }
}

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

export function errorBody(code: string, message: string, details?: unknown): ErrorBody {
  return { error: { code, message, ...(details === undefined ? {} : { details }) } };
}

/** The shape of body-parser's errors (http-errors with a `type`). */
interface BodyParserError {
  status?: number;
  statusCode?: number;
  type?: string;
  expose?: boolean;
  message: string;
}

/** ioredis' own failures: no answer within the command timeout, no connection. */
const REDIS_CLIENT_FAILURES = new Set([
  'Command timed out',
  'Connection is closed.',
  "Stream isn't writeable and enableOfflineQueue options is false",
]);

/**
 * A Redis call that failed for want of Redis (rather than a bug): bounded calls raise
 * RedisUnavailableError; a bare ioredis timeout or a refusal while Redis fails over, loads or is
 * full is recognised too. The client may try again: 503 REDIS_UNAVAILABLE.
 */
function redisUnavailable(err: unknown): string | undefined {
  const advice = 'try again in a few seconds; GET /readyz answers 200 again once Redis does';
  if (err instanceof RedisUnavailableError) return `${err.message}: ${advice}`;
  if (!(err instanceof Error)) return undefined;
  const refused =
    err.name === 'ReplyError' && /^(READONLY|OOM|LOADING|MASTERDOWN|CLUSTERDOWN|TRYAGAIN)\b/.test(err.message);
  if (err.name === 'MaxRetriesPerRequestError' || REDIS_CLIENT_FAILURES.has(err.message) || refused) {
    return `Redis is unavailable (${err.message}): ${advice}`;
  }
  return undefined;
}

function classify(err: unknown): { status: number; code: string; message: string; details?: unknown } | undefined {
  if (err instanceof ApiError)
    return { status: err.status, code: err.code, message: err.message, details: err.details };
  if (err instanceof ValidationError)
    return { status: 400, code: err.code, message: err.message, details: err.details };
  if (err instanceof NotFoundError) return { status: 404, code: err.code, message: err.message };
  if (err instanceof ConflictError) return { status: 409, code: err.code, message: err.message };
  const redis = redisUnavailable(err);
  if (redis !== undefined) return { status: 503, code: ErrorCode.REDIS_UNAVAILABLE, message: redis };
  if (isDatabaseUnavailable(err)) {
    return {
      status: 503,
      code: ErrorCode.DATABASE_UNAVAILABLE,
      // Nothing was written: a request refused this way may be sent again (with its idempotency key).
      message: `PostgreSQL is unavailable (${(err as Error).message}): nothing was done; try again in a few seconds (GET /readyz answers 200 again once it is back)`,
    };
  }
  const e = err as BodyParserError;
  switch (e?.type) {
    case 'entity.too.large':
      return { status: 413, code: ErrorCode.PAYLOAD_TOO_LARGE, message: e.message };
    case 'entity.parse.failed':
      return { status: 400, code: ErrorCode.INVALID_JSON, message: `request body is not valid JSON: ${e.message}` };
    case 'charset.unsupported':
    case 'encoding.unsupported':
      return { status: 415, code: ErrorCode.UNSUPPORTED_MEDIA_TYPE, message: e.message };
  }
  // Any other client error body-parser raises (aborted request, bad content length, ...).
  const status = e?.status ?? e?.statusCode;
  if (e?.expose && typeof status === 'number' && status >= 400 && status < 500) {
    return { status, code: ErrorCode.BAD_REQUEST, message: e.message };
  }
  return undefined;
}

/**
 * The one place errors become responses: known errors keep their status and code; anything else is
 * a 500 with a generic message, the real error going to the log only (no stack reaches a client).
 */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, next) => {
    if (res.headersSent) {
      // Too late for a JSON error: let express end the connection.
      next(err);
      return;
    }
    const known = classify(err);
    if (known) {
      if (err instanceof ApiError) res.set(err.headers);
      res.status(known.status).json(errorBody(known.code, known.message, known.details));
      return;
    }
    (res.locals.log ?? logger).error({ err, method: req.method, path: req.path }, 'unhandled error in request');
    res.status(500).json(errorBody(ErrorCode.INTERNAL, 'internal server error'));
  };
}

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(new ApiError(404, ErrorCode.NOT_FOUND, `no route for ${req.method} ${req.path}`));
};
