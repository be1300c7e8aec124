/**
 * The error codes this function produces. They are Baton's public codes (README, docs/WORKFLOWS.md),
 * listed in its registry (workflow/src/error-codes.ts); the function depends only on @baton/sdk, so it
 * mirrors them here, and test/unit/error-codes.test.ts checks each is the registry's string.
 */
export const ErrorCode = {
  /** The invoice does not exist. Not retryable. */
  INVOICE_NOT_FOUND: 'INVOICE_NOT_FOUND',
} as const;
