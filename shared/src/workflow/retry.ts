import type { RetryPolicy } from './definition';

/**
 * Delay before the next attempt, after `attemptsMade` failed ones (1 after the first failure).
 * `random` is injectable so tests are deterministic.
 */
export function backoffDelayMs(policy: RetryPolicy, attemptsMade: number, random: () => number = Math.random): number {
  const { type, delayMs, maxDelayMs, jitter } = policy.backoff;
  const raw = type === 'fixed' ? delayMs : delayMs * 2 ** Math.max(0, attemptsMade - 1);
  const capped = Math.min(raw, maxDelayMs);
  // "Equal jitter" towards zero: spreads retries of many failing steps apart without ever
  // waiting longer than the cap.
  return Math.round(capped * (1 - jitter * random()));
}

/** Whether an error with this code and retryability may be tried again under `policy`. */
export function isRetryable(policy: RetryPolicy, error: { code: string; nonRetryable: boolean }): boolean {
  return !error.nonRetryable && !policy.nonRetryableErrors.includes(error.code);
}
