/**
 * The error codes this function produces. They are Baton's public codes (README, docs/WORKFLOWS.md),
 * listed in its registry (workflow/src/error-codes.ts); the function depends only on @baton/sdk, so it
 * mirrors them here, and test/unit/error-codes.test.ts checks each is the registry's string.
 */
export const ErrorCode = {
  /** The server answered 429. Retryable, honouring `Retry-After`. */
  HTTP_429: 'HTTP_429',
  /** The server answered 5xx (not expected). Retryable, honouring `Retry-After`. */
  HTTP_5XX: 'HTTP_5XX',
  /** The target address is refused (loopback, private, metadata…). Not retryable. */
  HTTP_ADDRESS_REFUSED: 'HTTP_ADDRESS_REFUSED',
  /** A redirect to an invalid or non-http URL. Not retryable. */
  HTTP_BAD_REDIRECT: 'HTTP_BAD_REDIRECT',
  /** The response body is over HTTP_REQUEST_MAX_BODY_BYTES. Not retryable. */
  HTTP_BODY_TOO_LARGE: 'HTTP_BODY_TOO_LARGE',
  /** Connection refused/reset, DNS or TLS failure. Retryable. */
  HTTP_NETWORK: 'HTTP_NETWORK',
  /** Any other unexpected status (4xx, an unfollowed 3xx). Not retryable. */
  HTTP_STATUS: 'HTTP_STATUS',
  /** The request did not complete within its own `timeoutMs`. Retryable. */
  HTTP_TIMEOUT: 'HTTP_TIMEOUT',
  /** More redirects than allowed. Not retryable. */
  HTTP_TOO_MANY_REDIRECTS: 'HTTP_TOO_MANY_REDIRECTS',
  /** The response's Content-Encoding is not supported. Not retryable. */
  HTTP_UNSUPPORTED_ENCODING: 'HTTP_UNSUPPORTED_ENCODING',
} as const;
