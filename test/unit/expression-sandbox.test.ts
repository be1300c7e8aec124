import {
  closeExpressionPool,
  configureExpressions,
  evaluate,
  evaluateCondition,
  ExpressionError,
  isCheap,
  resolveTemplate,
  resolveTemplateEach,
  TEMPLATE_EACH_CHUNK,
} from '@baton/workflow';

/**
 * The expression sandbox (workflow/src/expressions.ts): what JSONata's own guard cannot stop —
 * a backtracking regex (one evaluation step) and a huge string — fails as an ExpressionError, off the
 * caller's event loop, and the pool replaces the process it killed. No assertion on elapsed time.
 */

// Exponential backtracking: about 5 s of one regex step on a 2020s CPU (each extra 'a' doubles it).
const CATASTROPHIC = '$match("aaaaaaaaaaaaaaaaaaaaaaaaaaa!", /^(a+)+$/)';

beforeAll(async () => {
  // Far below the regex's run time, so a fast machine still hits the limit.
  await configureExpressions({ timeoutMs: 300 });
});

afterAll(async () => {
  await closeExpressionPool();
});

describe('expression sandbox', () => {
  it('stops a catastrophic regex with EXPRESSION_FAILED (timed out)', async () => {
    const failure = evaluateCondition(CATASTROPHIC, {});
    await expect(failure).rejects.toBeInstanceOf(ExpressionError);
    await expect(failure).rejects.toMatchObject({
      code: 'EXPRESSION_FAILED',
      message: expect.stringMatching(/timed out after 300 ms/),
    });
  });

  it('stops a 200 MB $pad with EXPRESSION_FAILED (memory)', async () => {
    // Time enough that only the memory bound can stop it, however busy the machine.
    await configureExpressions({ timeoutMs: 30_000 });
    try {
      const failure = resolveTemplate({ note: 'x{{ $pad("", 200000000) }}' }, {});
      await expect(failure).rejects.toBeInstanceOf(ExpressionError);
      await expect(failure).rejects.toMatchObject({
        code: 'EXPRESSION_FAILED',
        message: expect.stringMatching(/used more than 128 MB of memory/),
      });
    } finally {
      await configureExpressions({ timeoutMs: 300 });
    }
  });

  it('fails each of more memory-exhausting $pads at once than it has processes, none left waiting', async () => {
    // Four requests for two processes: two wait for a process that dies under the one before them.
    // workerpool's own queue never started such a task (nor armed its timeout): it hung for ever,
    // and this test failed at its jest timeout (as did three run starts at once in the gateway).
    await configureExpressions({ timeoutMs: 30_000 });
    try {
      const failures = await Promise.allSettled(
        Array.from({ length: 4 }, (_, i) => resolveTemplate({ note: `${i}{{ $pad("", 200000000) }}` }, {})),
      );
      for (const failure of failures) {
        expect(failure).toMatchObject({
          status: 'rejected',
          reason: { code: 'EXPRESSION_FAILED', message: expect.stringMatching(/used more than 128 MB of memory/) },
        });
      }
      expect(await evaluate('$string(1 + 1)', {})).toBe('2');
    } finally {
      await configureExpressions({ timeoutMs: 300 });
    }
  }, 120_000);

  it('evaluates normally again after its process was killed (the pool recovers)', async () => {
    await expect(evaluate(CATASTROPHIC, {})).rejects.toMatchObject({ code: 'EXPRESSION_FAILED' });
    // `$string` and `$sum` are not on the cheap path: these go through the sandbox.
    expect(await evaluate('$string(1 + 1)', {})).toBe('2');
    expect(await resolveTemplate({ total: '{{ $sum(input.items) }}' }, { input: { items: [1, 2, 3] } })).toEqual({
      total: 6,
    });
  });

  it("keeps the caller's event loop turning during a hostile evaluation", async () => {
    let ticks = 0;
    const interval = setInterval(() => (ticks += 1), 5);
    let ticksWhenSettled = -1;
    try {
      const hostile = evaluateCondition(CATASTROPHIC, {}).finally(() => (ticksWhenSettled = ticks));
      await hostile.catch(() => undefined);
    } finally {
      clearInterval(interval);
    }
    // Evaluated on this thread, the regex would hold it until it finished: not one tick in between.
    expect(ticksWhenSettled).toBeGreaterThan(0);
  });

  it('fails a result over the size limit, on either path', async () => {
    await configureExpressions({ maxResultBytes: 1024 });
    try {
      await expect(resolveTemplate('{{ $pad("x", 5000) }}', {})).rejects.toMatchObject({
        code: 'EXPRESSION_FAILED',
        message: expect.stringMatching(/result larger than 1024 bytes/),
      });
      // A cheap path expression, evaluated in this process.
      await expect(resolveTemplate({ copy: '{{ input }}' }, { input: 'y'.repeat(2000) })).rejects.toMatchObject({
        message: expect.stringMatching(/result larger than 1024 bytes/),
      });
      // Each part fits, the whole does not.
      const parts = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`k${i}`, '{{ input }}']));
      await expect(resolveTemplate(parts, { input: 'z'.repeat(200) })).rejects.toMatchObject({
        message: expect.stringMatching(/result larger than 1024 bytes/),
      });
      expect(await resolveTemplate({ copy: '{{ input }}' }, { input: 'ok' })).toEqual({ copy: 'ok' });
    } finally {
      await configureExpressions({ maxResultBytes: 4 * 1024 * 1024 });
    }
  });

  it('resolves a forEach template once per item, in chunks through the sandbox, with item and index', async () => {
    const items = Array.from({ length: TEMPLATE_EACH_CHUNK * 2 + 7 }, (_, i) => `v${i}`);
    const data = { input: { prefix: 'p' } };
    // Sandboxed ($uppercase is a function call): 3 requests, the shared data sent once each.
    const sandboxed = await resolveTemplateEach({ v: '{{ $uppercase(item) }}', i: '{{ index }}' }, data, items);
    expect(sandboxed).toEqual(items.map((v, i) => ({ v: v.toUpperCase(), i })));
    // Cheap: on this thread, the same answers (explicit indexes, as a compensation's are).
    const cheap = await resolveTemplateEach('{{ input.prefix }}-{{ item }}-{{ index }}', data, ['a', 'b'], [7, 3]);
    expect(cheap).toEqual(['p-a-7', 'p-b-3']);
    // A failure in any item fails the whole resolution as an ExpressionError.
    await expect(resolveTemplateEach('{{ $error("no " & item) }}', data, ['x'])).rejects.toBeInstanceOf(
      ExpressionError,
    );
  });

  it('keeps on this thread only what walks data, compares and computes numbers', () => {
    for (const cheap of [
      'input.orderId',
      'steps.a.output.items',
      'input.n * 2 > 3',
      'input.a = "x" ? 1 : -2',
      '$$.x',
    ]) {
      expect([cheap, isCheap(cheap)]).toEqual([cheap, true]);
    }
    for (const costly of [
      CATASTROPHIC,
      '$pad("", 9)',
      'input.items[price > 1]',
      '[1..10]',
      'input.a & input.b',
      'input.**.x',
      '$f := function($x){ $x }',
      '$x',
      'input.a.$string()',
    ]) {
      expect([costly, isCheap(costly)]).toEqual([costly, false]);
    }
  });
});
