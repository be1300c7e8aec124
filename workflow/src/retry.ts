/**
 * Backoff between attempts and retryability are applied by the function runtime, so the SDK owns
 * them (sdk/src/protocol.ts); the engine uses the same functions. A workflow's `RetryPolicy` has the
 * job data's `StepRetryPolicy` shape (test/unit/sdk-protocol.test.ts checks it compiles).
 */
export { backoffDelayMs, isRetryable } from '@baton/sdk';
