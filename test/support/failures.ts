import net from 'node:net';
import { BatonError } from '@baton/shared';

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

/** A port nothing listens on. */
export async function closedPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', () => resolve()));
  const free = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return free;
}
