/**
 * The error codes the CLI makes itself. The CLI ships without @baton/workflow, so it cannot import the
 * registry (`ErrorCode` in workflow/src/error-codes.ts): these mirror their entries there, and
 * test/unit/error-codes.test.ts checks they match. Every other code the CLI shows comes from the
 * API's error body; a non-JSON error answer is shown as `HTTP_<status>`.
 */
export const CliErrorCode = {
  /** The CLI itself failed (bad option, unreadable file) before or without an API answer. */
  CLI: 'CLI',
  /** An API error body without a code. */
  ERROR: 'ERROR',
} as const;
