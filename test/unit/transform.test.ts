import { BatonError, NonRetryableError } from '@baton/workflow';
import { createTransform, runTransform, transformInput } from '../../functions/transform/src/index';
import { createTestContext } from '../support/context';

const orders = {
  customer: { id: 'cust-01', name: 'Ada' },
  orders: [
    { id: 'o1', amountCents: 1200, status: 'open' },
    { id: 'o2', amountCents: 800, status: 'paid' },
    { id: 'o3', amountCents: 500, status: 'open' },
  ],
};

async function failure(expression: string, data: unknown = orders): Promise<BatonError> {
  try {
    await runTransform(expression, data);
  } catch (err) {
    return err as BatonError;
  }
  throw new Error(`'${expression}' did not fail`);
}

describe('transform function', () => {
  const transform = createTransform();
  const call = (input: unknown) => transform.handler(transform.input.parse(input), createTestContext());

  it('evaluates JSONata over data and returns {result}', async () => {
    await expect(call({ expression: '$sum(orders[status = "open"].amountCents)', data: orders })).resolves.toEqual({
      result: 1700,
    });
    await expect(call({ expression: '{"who": customer.name, "ids": orders.id}', data: orders })).resolves.toEqual({
      result: { who: 'Ada', ids: ['o1', 'o2', 'o3'] },
    });
  });

  it('returns plain JSON: sequences become arrays, a single match stays an array when asked, nothing is null', async () => {
    const result = await runTransform('orders[status = "open"].{"id": id, "euros": amountCents / 100}', orders);
    expect(result).toEqual([
      { id: 'o1', euros: 12 },
      { id: 'o3', euros: 5 },
    ]);
    expect(Array.isArray(result)).toBe(true);
    expect(Object.getOwnPropertyNames(result)).not.toContain('sequence');
    await expect(runTransform('orders[status = "paid"][].id', orders)).resolves.toEqual(['o2']);
    await expect(runTransform('nothing.here', orders)).resolves.toBeNull();
    await expect(call({ expression: 'missing' })).resolves.toEqual({ result: null });
  });

  it('a parse error is a NonRetryableError TRANSFORM_FAILED naming the problem and where', async () => {
    const err = await failure('orders[status = "open"');
    expect(err).toBeInstanceOf(NonRetryableError);
    expect(err.code).toBe('TRANSFORM_FAILED');
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/does not parse/);
    expect(err.message).toMatch(/S0\d{3} at position \d+/);
    expect(err.message).toMatch(/\]/);
  });

  it('an evaluation error is a NonRetryableError TRANSFORM_FAILED with JSONata’s message', async () => {
    const err = await failure('customer.name + 1');
    expect(err).toBeInstanceOf(NonRetryableError);
    expect(err.code).toBe('TRANSFORM_FAILED');
    expect(err.message).toMatch(/transform expression failed: \(T2001 at position \d+\)/);
    expect(err.message).toMatch(/must evaluate to a number/);
  });

  it('keeps the shared guard rails: runaway recursion and endless loops fail instead of hanging', async () => {
    const deep = await failure('($f := function($n) { 1 + $f($n + 1) }; $f(0))', {});
    expect(deep.code).toBe('TRANSFORM_FAILED');
    expect(deep.message).toMatch(/D1011 .*Stack overflow/);
    const started = Date.now();
    const endless = await failure('($f := function($n) { $f($n + 1) }; $f(0))', {});
    expect(endless.code).toBe('TRANSFORM_FAILED');
    expect(endless.message).toMatch(/D1012 .*timeout/i);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('refuses an empty expression at input validation', () => {
    expect(transformInput.safeParse({ expression: '  ', data: {} }).success).toBe(false);
    expect(transformInput.safeParse({ data: {} }).success).toBe(false);
    expect(transformInput.safeParse({ expression: '$', data: [1] }).success).toBe(true);
  });
});
