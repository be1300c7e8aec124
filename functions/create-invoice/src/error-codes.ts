/**
 * The error codes this function produces. They are Baton's public codes (README, docs/WORKFLOWS.md),
 * listed in its registry (workflow/src/error-codes.ts); the function depends only on @baton/sdk, so it
 * mirrors them here, and test/unit/error-codes.test.ts checks each is the registry's string.
 */
export const ErrorCode = {
  /** The customer does not exist. Not retryable. */
  CUSTOMER_NOT_FOUND: 'CUSTOMER_NOT_FOUND',
  /** The invoice total is over the largest amount allowed. Not retryable. */
  INVOICE_TOO_LARGE: 'INVOICE_TOO_LARGE',
  /** The orders are in more than one currency. Not retryable. */
  MIXED_CURRENCIES: 'MIXED_CURRENCIES',
  /** The customer has no open orders to invoice. Not retryable. */
  NO_OPEN_ORDERS: 'NO_OPEN_ORDERS',
} as const;
