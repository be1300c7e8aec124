import {
  backoffDelayMs,
  evaluateCondition,
  ExpressionError,
  resolveTemplate,
  retryPolicySchema,
} from '@baton/workflow';

const data = { input: { customerId: 'cust-01', n: 3 }, steps: { a: { output: { items: [1, 2, 3], name: 'Ada' } } } };

describe('templates', () => {
  it('keeps the JSON type of an exact {{ }} and interpolates inside text', async () => {
    expect(await resolveTemplate('{{ steps.a.output.items }}', data)).toEqual([1, 2, 3]);
    expect(await resolveTemplate('{{ input.n * 2 }}', data)).toBe(6);
    expect(await resolveTemplate(' {{ input.n > 2 }} ', data)).toBe(true);
    expect(
      await resolveTemplate('Hello {{ steps.a.output.name }}, {{ $count(steps.a.output.items) }} items', data),
    ).toBe('Hello Ada, 3 items');
    expect(await resolveTemplate('{{ steps.a.output.items }}!', data)).toBe('[1,2,3]!');
  });

  it('resolves nested objects and arrays, dropping keys whose value is missing', async () => {
    expect(
      await resolveTemplate({ a: ['{{ input.customerId }}', 1], b: '{{ input.missing }}', c: { d: null } }, data),
    ).toEqual({
      a: ['cust-01', 1],
      c: { d: null },
    });
    expect(await resolveTemplate('x{{ input.missing }}y', data)).toBe('xy');
  });

  it('cannot reach outside its data', async () => {
    expect(await resolveTemplate('{{ process }}', data)).toBeUndefined();
    expect(await resolveTemplate('{{ $string(constructor) }}', data)).toBeUndefined();
    // $eval evaluates JSONata, not JavaScript: this is a path lookup that finds nothing.
    expect(await resolveTemplate('{{ $eval("process.exit(1)") }}', data)).toBeUndefined();
    expect(await resolveTemplate('{{ $eval("$sum(input.n)") }}', data)).toBe(3);
  });

  it('stops runaway expressions with a clear error', async () => {
    await expect(resolveTemplate('{{ ($f := function($x){ $f($x + 1) }; $f(0)) }}', data)).rejects.toThrow(/failed/);
    await expect(resolveTemplate('{{ [1..10000000] }}', data)).rejects.toBeInstanceOf(ExpressionError);
  });

  it('evaluates conditions with JSONata truthiness; missing is false', async () => {
    expect(await evaluateCondition('input.n > 2', data)).toBe(true);
    expect(await evaluateCondition('input.nothing', data)).toBe(false);
    expect(await evaluateCondition('steps.a.output.items[$ > 5]', data)).toBe(false);
  });
});

describe('backoff', () => {
  const policy = (backoff: object) => retryPolicySchema.parse({ backoff });
  it('grows exponentially up to the cap, with jitter only shortening it', () => {
    const p = policy({ type: 'exponential', delayMs: 100, maxDelayMs: 1000, jitter: 0 });
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelayMs(p, n))).toEqual([100, 200, 400, 800, 1000, 1000]);
    const jittered = policy({ type: 'exponential', delayMs: 100, maxDelayMs: 1000, jitter: 0.5 });
    expect(backoffDelayMs(jittered, 2, () => 1)).toBe(100);
    expect(backoffDelayMs(jittered, 2, () => 0)).toBe(200);
  });
  it('keeps fixed delays fixed', () => {
    const p = policy({ type: 'fixed', delayMs: 250, jitter: 0 });
    expect([1, 5, 9].map((n) => backoffDelayMs(p, n))).toEqual([250, 250, 250]);
  });
});
