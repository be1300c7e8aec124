import * as sdk from '@baton/sdk';
import { backoffDelayMs, eventName, isRetryable, retryPolicySchema, type RetryPolicy } from '@baton/workflow';

/**
 * The SDK owns the function side of the wire protocol and may not import the engine, which keeps its
 * own definition language (workflow/src/). Where both sides state the same rule, they agree.
 */
describe('the SDK and the engine agree on the protocol', () => {
  it("a workflow's retry policy is the job data's: same shape, read by the SDK's one backoff", () => {
    // One owner: the engine's backoff and retryability are the SDK's functions.
    expect(backoffDelayMs).toBe(sdk.backoffDelayMs);
    expect(isRetryable).toBe(sdk.isRetryable);
    // What the definition language parses (defaults applied) is what the runtime reads.
    const fixed: sdk.StepRetryPolicy = retryPolicySchema.parse({ backoff: { type: 'fixed', delayMs: 250, jitter: 0 } });
    expect([1, 2, 7].map((attempt) => sdk.backoffDelayMs(fixed, attempt))).toEqual([250, 250, 250]);
    const growing: sdk.StepRetryPolicy = retryPolicySchema.parse({
      backoff: { delayMs: 100, maxDelayMs: 1_000, jitter: 0 },
    });
    expect([1, 2, 3, 7].map((attempt) => sdk.backoffDelayMs(growing, attempt))).toEqual([100, 200, 400, 1_000]);
    const policy: RetryPolicy = retryPolicySchema.parse({ nonRetryableErrors: ['CUSTOMER_NOT_FOUND'] });
    expect(sdk.isRetryable(policy, { code: 'CUSTOMER_NOT_FOUND', nonRetryable: false })).toBe(false);
    expect(sdk.isRetryable(policy, { code: 'X', nonRetryable: true })).toBe(false);
    expect(sdk.isRetryable(policy, { code: 'X', nonRetryable: false })).toBe(true);
  });

  it('event names: ctx.emit accepts what the API and definitions accept', () => {
    for (const name of [
      'order.created',
      'a',
      'a_b-c.d9',
      'A',
      '9a',
      '',
      'a b',
      `a${'x'.repeat(127)}`,
      `a${'x'.repeat(128)}`,
    ])
      expect({ name, sdk: sdk.EVENT_NAME_PATTERN.test(name) }).toEqual({
        name,
        sdk: eventName.safeParse(name).success,
      });
  });

  it('protocol version 1, idempotency keys as documented', () => {
    expect(sdk.PROTOCOL_VERSION).toBe(1);
    expect(sdk.stepIdempotencyKey({ runId: 'r', stepId: 's', kind: 'action' })).toBe('r:s');
    expect(sdk.stepIdempotencyKey({ runId: 'r', stepId: 's', kind: 'compensation' }, 2)).toBe('r:s:compensate:2');
  });
});
