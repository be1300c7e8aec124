/**
 * The error codes this function produces. They are Baton's public codes (README, docs/WORKFLOWS.md),
 * listed in its registry (workflow/src/error-codes.ts); the function depends only on @baton/sdk, so it
 * mirrors them here, and test/unit/error-codes.test.ts checks each is the registry's string.
 */
export const ErrorCode = {
  /** The customer does not exist. Not retryable. */
  CUSTOMER_NOT_FOUND: 'CUSTOMER_NOT_FOUND',
  /** The customer has no open orders to invoice. Not retryable. */
  NO_OPEN_ORDERS: 'NO_OPEN_ORDERS',
} as const;
