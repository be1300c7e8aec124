import { parseRateLimit, rateLimitEnvName } from '@baton/sdk';

/** `<FUNCTION>_RATE_LIMIT` values and names (sdk/src/config.ts, sdk/src/function.ts). */
describe('function rate limits', () => {
  it.each([
    ['100/1s', { max: 100, durationMs: 1_000 }],
    ['10/500ms', { max: 10, durationMs: 500 }],
    ['600/m', { max: 600, durationMs: 60_000 }],
    [' 5 / 2h ', { max: 5, durationMs: 7_200_000 }],
    ['1/1ms', { max: 1, durationMs: 1 }],
  ])('reads %j', (text, expected) => {
    expect(parseRateLimit(text)).toEqual(expected);
  });

  it.each(['', 'fast', '100', '100/', '100/1', '100/1d', '-1/1s', '0/1s', '1.5/1s', '1/0s', '1/25h', '2000000/1s'])(
    'refuses %j with a message saying what is expected',
    (text) => {
      const problem = parseRateLimit(text);
      expect(typeof problem).toBe('string');
      expect(problem).toMatch(/expected|max|duration/);
    },
  );

  it('names the variable after the function', () => {
    expect(rateLimitEnvName('send-email')).toBe('SEND_EMAIL_RATE_LIMIT');
    expect(rateLimitEnvName('transform')).toBe('TRANSFORM_RATE_LIMIT');
  });
});
