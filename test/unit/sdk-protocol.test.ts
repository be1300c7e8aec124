import * as sdk from '@baton/sdk';
import { backoffDelayMs, eventName, isRetryable, retryPolicySchema, type RetryPolicy } from '@baton/shared';

/**
 * The SDK owns the function side of the wire protocol and may not import the engine, which keeps its
 * own definition language (shared/src/workflow/). Where both sides state the same rule, they agree.
 */
describe('the SDK and the engine agree on the protocol', () => {
  it("a workflow's retry policy is the job data's (same shape, same backoff, same retryability)", () => {
    const policies: RetryPolicy[] = [
      retryPolicySchema.parse({}),
      retryPolicySchema.parse({ backoff: { type: 'fixed', delayMs: 250, jitter: 0 } }),
      retryPolicySchema.parse({ attempts: 9, backoff: { delayMs: 100, maxDelayMs: 1_000, jitter: 0.5 } }),
      retryPolicySchema.parse({ nonRetryableErrors: ['CUSTOMER_NOT_FOUND'] }),
    ];
    // One owner: the engine's backoff is the SDK's.
    expect(backoffDelayMs).toBe(sdk.backoffDelayMs);
    expect(isRetryable).toBe(sdk.isRetryable);
    for (const policy of policies) {
      const wire: sdk.StepRetryPolicy = policy; // compiles: the shapes match
      for (const attempt of [1, 2, 3, 7])
        for (const r of [0, 0.5, 1])
          expect(sdk.backoffDelayMs(wire, attempt, () => r)).toBe(backoffDelayMs(policy, attempt, () => r));
      for (const error of [
        { code: 'CUSTOMER_NOT_FOUND', nonRetryable: false },
        { code: 'X', nonRetryable: true },
        { code: 'X', nonRetryable: false },
      ])
        expect(sdk.isRetryable(wire, error)).toBe(isRetryable(policy, error));
    }
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
