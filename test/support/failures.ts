import { BatonError } from '@baton/workflow';

/** The BatonError a promise rejects with (fails the test when it resolves, or rejects otherwise). */
export async function failure(promise: Promise<unknown>): Promise<BatonError> {
  const result = await promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if (!('error' in result)) throw new Error(`expected a failure, got ${JSON.stringify(result.value)}`);
  expect(result.error).toBeInstanceOf(BatonError);
  return result.error as BatonError;
}

/** A port nothing listens on: connecting to it is refused. */
export { freePort as closedPort } from './env';
