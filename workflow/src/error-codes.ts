import { StepErrorCode } from '@baton/sdk';

/**
 * Every error code Baton produces: in API error bodies (`error.code`), in run and step error records
 * (`error.code`), and in step reports. The strings are part of the public API (README,
 * docs/WORKFLOWS.md, the OpenAPI document): never change one, add a new one instead.
 * The function runtime's own codes are the SDK's (`StepErrorCode` in sdk/src/error-codes.ts), spread
 * in here. test/unit/error-codes.test.ts fails when a quoted UPPER_SNAKE code appears in the sources
 * outside these two files (or a function's mirror). PostgreSQL's SQLSTATEs are not here: see
 * `SQLSTATE` in db/sqlstate.ts.
 *
 * "Retryable" says whether trying the same thing again can help: for a step, whether the step's
 * retry policy applies; for an API call, whether the client may repeat the request unchanged.
 */
export const ErrorCode = {
  // --- The function runtime's own (sdk/src/error-codes.ts, documented there) ---
  ...StepErrorCode,

  // --- Runs and steps (run/step `error.code`) ---
  /** The run passed its workflow `timeoutMs`. Not retryable (a retried run gets a fresh deadline). */
  WORKFLOW_TIMEOUT: 'WORKFLOW_TIMEOUT',
  /** A `waitForEvent` step's event did not arrive within its `timeoutMs`. Not retryable. */
  EVENT_TIMEOUT: 'EVENT_TIMEOUT',
  /** A step's output holds text PostgreSQL cannot store (NUL, a lone surrogate). Not retryable. */
  UNSTORABLE_OUTPUT: 'UNSTORABLE_OUTPUT',
  /** A `${…}` template or `if` expression failed (error, time, memory, result size). Not retryable. */
  EXPRESSION_FAILED: 'EXPRESSION_FAILED',
  /** A `forEach` template resolved to something other than a JSON array. Not retryable. */
  FOREACH_NOT_A_LIST: 'FOREACH_NOT_A_LIST',
  /** A `forEach` list has more items than BATON_FOREACH_MAX_ITEMS. Not retryable. */
  FOREACH_TOO_MANY_ITEMS: 'FOREACH_TOO_MANY_ITEMS',
  /** A `workflow:` step's child run ended failed, compensated or cancelled (`details`: the child's run id, status and error). Not retryable. */
  CHILD_RUN_FAILED: 'CHILD_RUN_FAILED',
  /** A child run would be deeper than BATON_MAX_CHILD_DEPTH (a workflow calling itself). Not retryable. */
  CHILD_DEPTH_EXCEEDED: 'CHILD_DEPTH_EXCEEDED',
  /** A `workflow:` step names a workflow that has no definition. Not retryable. */
  WORKFLOW_NOT_FOUND: 'WORKFLOW_NOT_FOUND',
  /** A `repeat` step reached `maxIterations` without its `until` becoming true. Not retryable. */
  REPEAT_EXHAUSTED: 'REPEAT_EXHAUSTED',

  // --- Shared failures (BatonError subclasses) ---
  /** A value from outside (body, definition, env) is invalid; `details` lists the problems. Not retryable. */
  VALIDATION_FAILED: 'VALIDATION_FAILED',
  /** A workflow definition is invalid (schema, unknown function, cycle…). Not retryable. */
  INVALID_DEFINITION: 'INVALID_DEFINITION',
  /** The thing asked for (run, workflow, route…) does not exist. Not retryable. */
  NOT_FOUND: 'NOT_FOUND',
  /** The request conflicts with the current state (e.g. retrying a running run). Not retryable. */
  CONFLICT: 'CONFLICT',
  /** Redis did not answer in time or refused (frozen, failing over). Retryable (HTTP 503). */
  REDIS_UNAVAILABLE: 'REDIS_UNAVAILABLE',
  /** PostgreSQL cannot be reached or take the statement now (down, out of connections, a timeout). Retryable (HTTP 503). */
  DATABASE_UNAVAILABLE: 'DATABASE_UNAVAILABLE',

  // --- HTTP API (gateway; the coordinator's backlog endpoint) ---
  /** The request body or parameters are invalid (HTTP 400). Not retryable. */
  INVALID_REQUEST: 'INVALID_REQUEST',
  /** The query string is invalid (HTTP 400). Not retryable. */
  INVALID_QUERY: 'INVALID_QUERY',
  /** An id in the path is not a UUID (HTTP 400). Not retryable. */
  INVALID_ID: 'INVALID_ID',
  /** A list cursor is malformed or from another query (HTTP 400). Not retryable. */
  INVALID_CURSOR: 'INVALID_CURSOR',
  /** The request body is not valid JSON (HTTP 400). Not retryable. */
  INVALID_JSON: 'INVALID_JSON',
  /** The JSON body nests deeper than allowed (HTTP 400). Not retryable. */
  BODY_TOO_DEEP: 'BODY_TOO_DEEP',
  /** Another malformed request the body parser refused (HTTP 400). Not retryable. */
  BAD_REQUEST: 'BAD_REQUEST',
  /** The body is over BATON_BODY_LIMIT (HTTP 413). Not retryable. */
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  /** The body is not `application/json` (HTTP 415). Not retryable. */
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  /** No or an unknown API key (HTTP 401). Not retryable. */
  UNAUTHORIZED: 'UNAUTHORIZED',
  /** A read-only API key on a method that changes something (HTTP 403). Not retryable. */
  FORBIDDEN: 'FORBIDDEN',
  /** The method is not served on this path (HTTP 405). Not retryable. */
  METHOD_NOT_ALLOWED: 'METHOD_NOT_ALLOWED',
  /** Too many requests from this client (HTTP 429). Retryable after `Retry-After`. */
  RATE_LIMITED: 'RATE_LIMITED',
  /** The process is not ready (starting, shutting down, a dependency down) (HTTP 503). Retryable. */
  NOT_READY: 'NOT_READY',
  /** A dependency could not answer (e.g. queue counts) (HTTP 503). Retryable. */
  UNAVAILABLE: 'UNAVAILABLE',
  /** The dashboard's static files are not installed (HTTP 404). Not retryable. */
  DASHBOARD_NOT_INSTALLED: 'DASHBOARD_NOT_INSTALLED',
  /** An unexpected server error; details are in the server's log (HTTP 500). Retryable. */
  INTERNAL: 'INTERNAL',

  // --- CLI ---
  /** The CLI itself failed (bad option, unreadable file) before or without an API answer. Not retryable. */
  CLI: 'CLI',
  /** An API error body without a code (not a Baton gateway?), as the CLI reports it. Not retryable. */
  ERROR: 'ERROR',

  // --- Functions: invoicing (create-invoice, fetch-orders, generate-pdf, send-email, void-invoice) ---
  /** The customer does not exist. Not retryable. */
  CUSTOMER_NOT_FOUND: 'CUSTOMER_NOT_FOUND',
  /** The customer has no open orders to invoice. Not retryable. */
  NO_OPEN_ORDERS: 'NO_OPEN_ORDERS',
  /** The orders are in more than one currency. Not retryable. */
  MIXED_CURRENCIES: 'MIXED_CURRENCIES',
  /** The invoice total is over the largest amount allowed. Not retryable. */
  INVOICE_TOO_LARGE: 'INVOICE_TOO_LARGE',
  /** The invoice does not exist. Not retryable. */
  INVOICE_NOT_FOUND: 'INVOICE_NOT_FOUND',
  /** The invoice was voided. Not retryable. */
  INVOICE_VOID: 'INVOICE_VOID',
  /** The stored invoice's lines are malformed. Not retryable. */
  INVOICE_INVALID: 'INVOICE_INVALID',
  /** The document (e.g. the invoice PDF) does not exist. Not retryable. */
  DOCUMENT_NOT_FOUND: 'DOCUMENT_NOT_FOUND',
  /** The SMTP server refused the e-mail for good (5xx, bad envelope). Not retryable. */
  EMAIL_REJECTED: 'EMAIL_REJECTED',
  /** The e-mail could not be sent this time (connection, 4xx). Retryable. */
  EMAIL_SEND_FAILED: 'EMAIL_SEND_FAILED',

  // --- Functions: transform ---
  /** The transform expression does not parse or failed on the data. Not retryable. */
  TRANSFORM_FAILED: 'TRANSFORM_FAILED',

  // --- Functions: http-request (docs/WORKFLOWS.md lists them) ---
  /** The request did not complete within its own `timeoutMs`. Retryable. */
  HTTP_TIMEOUT: 'HTTP_TIMEOUT',
  /** Connection refused/reset, DNS or TLS failure. Retryable. */
  HTTP_NETWORK: 'HTTP_NETWORK',
  /** The server answered 5xx (not expected). Retryable, honouring `Retry-After`. */
  HTTP_5XX: 'HTTP_5XX',
  /** The server answered 429. Retryable, honouring `Retry-After`. */
  HTTP_429: 'HTTP_429',
  /** Any other unexpected status (4xx, an unfollowed 3xx). Not retryable. */
  HTTP_STATUS: 'HTTP_STATUS',
  /** The target address is refused (loopback, private, metadata…). Not retryable. */
  HTTP_ADDRESS_REFUSED: 'HTTP_ADDRESS_REFUSED',
  /** The response body is over HTTP_REQUEST_MAX_BODY_BYTES. Not retryable. */
  HTTP_BODY_TOO_LARGE: 'HTTP_BODY_TOO_LARGE',
  /** The response's Content-Encoding is not supported. Not retryable. */
  HTTP_UNSUPPORTED_ENCODING: 'HTTP_UNSUPPORTED_ENCODING',
  /** More redirects than allowed. Not retryable. */
  HTTP_TOO_MANY_REDIRECTS: 'HTTP_TOO_MANY_REDIRECTS',
  /** A redirect to an invalid or non-http URL. Not retryable. */
  HTTP_BAD_REDIRECT: 'HTTP_BAD_REDIRECT',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const KNOWN: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/** Whether `code` is one of Baton's own codes (a step may also surface an errno such as `ECONNRESET`). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && KNOWN.has(code);
}
