/**
 * The error codes this function produces. They are Baton's public codes (README, docs/WORKFLOWS.md),
 * listed in its registry (workflow/src/error-codes.ts); the function depends only on @baton/sdk, so it
 * mirrors them here, and test/unit/error-codes.test.ts checks each is the registry's string.
 */
export const ErrorCode = {
  /** The document (e.g. the invoice PDF) does not exist. Not retryable. */
  DOCUMENT_NOT_FOUND: 'DOCUMENT_NOT_FOUND',
  /** The SMTP server refused the e-mail for good (5xx, bad envelope). Not retryable. */
  EMAIL_REJECTED: 'EMAIL_REJECTED',
  /** The e-mail could not be sent this time (connection, 4xx). Retryable. */
  EMAIL_SEND_FAILED: 'EMAIL_SEND_FAILED',
  /** The invoice does not exist. Not retryable. */
  INVOICE_NOT_FOUND: 'INVOICE_NOT_FOUND',
  /** The invoice was voided. Not retryable. */
  INVOICE_VOID: 'INVOICE_VOID',
} as const;
