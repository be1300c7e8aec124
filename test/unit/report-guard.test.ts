import { jsonByteLength, storableJson, storableString, storableText } from '@baton/workflow';
import type { InboxMessage } from '@baton/engine';
import { guardReport, quarantineReport, withoutLogs } from '../../services/coordinator/src/report-guard';

const base = {
  runId: '00000000-0000-4000-8000-000000000001',
  stepExecutionId: '00000000-0000-4000-8000-000000000002',
  attempt: 1,
  workerId: 'w1',
  at: '2026-12-03T10:00:00.000Z',
};
const limits = { maxOutputBytes: 1024 };

describe('storable values (what jsonb refuses, replaced)', () => {
  it('replaces NUL and lone surrogates with U+FFFD, in strings and keys, at any depth', () => {
    expect(storableString('a\u0000b')).toBe('a\uFFFDb');
    expect(storableString('x\uD800y')).toBe('x\uFFFDy');
    expect(storableString('emoji \uD83D\uDE00 kept')).toBe('emoji \uD83D\uDE00 kept');
    expect(storableJson({ 'k\u0000': [{ deep: ['\u0000', 1, null, true] }] })).toEqual({
      'k\uFFFD': [{ deep: ['\uFFFD', 1, null, true] }],
    });
  });

  it('returns the same object when nothing needs a change', () => {
    const clean = { a: [1, 'two', { three: null }] };
    expect(storableJson(clean)).toBe(clean);
  });

  it('caps texts without splitting a surrogate pair', () => {
    const capped = storableText(`${'a'.repeat(9)}\uD83D\uDE00`, 10);
    expect(capped.isWellFormed()).toBe(true);
    expect(capped).toContain('more characters cut');
  });
});

describe('guardReport', () => {
  it('cleans a success output, its events and its logs', () => {
    const guarded = guardReport(
      {
        ...base,
        type: 'step.succeeded',
        output: { text: 'bin\u0000ary' },
        events: [{ name: 'e', payload: { p: '\u0000' } }],
        logs: [{ level: 'info', message: 'nul \u0000 here', data: { d: '\uDC00' }, time: base.at }],
      },
      limits,
    );
    expect(guarded).toMatchObject({
      type: 'step.succeeded',
      output: { text: 'bin\uFFFDary' },
      events: [{ name: 'e', payload: { p: '\uFFFD' } }],
      logs: [{ message: 'nul \uFFFD here', data: { d: '\uFFFD' } }],
    });
  });

  it('turns an output over the limit into a failure that is not retried, naming the setting', () => {
    const output = { big: 'x'.repeat(2000) };
    const guarded = guardReport({ ...base, type: 'step.succeeded', output }, limits);
    expect(guarded).toMatchObject({
      type: 'step.failed',
      error: { code: 'OUTPUT_TOO_LARGE', nonRetryable: true },
    });
    expect((guarded as { error: { message: string } }).error.message).toContain('BATON_MAX_OUTPUT_BYTES');
    expect(guarded).not.toHaveProperty('output');
    // At the limit exactly, it is kept.
    const fits = { s: 'x'.repeat(limits.maxOutputBytes - jsonByteLength({ s: '' })) };
    expect(guardReport({ ...base, type: 'step.succeeded', output: fits }, limits).type).toBe('step.succeeded');
  });

  it('caps error messages and details, and replaces protocol times that are not ISO times', () => {
    const guarded = guardReport(
      {
        ...base,
        at: 'yesterday',
        startedAt: 'not a time',
        type: 'step.failed',
        error: {
          code: 'E\u0000',
          message: 'm'.repeat(20_000),
          nonRetryable: false,
          details: { x: 'y'.repeat(70_000) },
        },
      },
      limits,
    ) as Extract<InboxMessage, { type: 'step.failed' }>;
    expect(guarded.error.code).toBe('E\uFFFD');
    expect(guarded.error.message.length).toBeLessThan(8_300);
    expect(guarded.error.details).toEqual({ omitted: 'larger than 64 KiB' });
    expect(Date.parse(guarded.at)).not.toBeNaN();
    expect(guarded.startedAt).toBe(guarded.at);
  });

  it('keeps at most 500 log lines and says how many more there were', () => {
    const logs = Array.from({ length: 600 }, (_, i) => ({ level: 'info' as const, message: `l${i}`, time: base.at }));
    const guarded = guardReport({ ...base, type: 'step.started', logs }, limits);
    expect(guarded.type === 'step.started' && guarded.logs).toHaveLength(501);
    expect((guarded as { logs: { message: string }[] }).logs[500].message).toContain('100 more log lines');
  });
});

describe('quarantine', () => {
  it('drops a refused success payload and fails its step with UNSTORABLE_OUTPUT', () => {
    const q = quarantineReport({ ...base, type: 'step.succeeded', output: { x: 1 }, events: [] }, 'invalid input');
    expect(q).toMatchObject({ type: 'step.failed', error: { code: 'UNSTORABLE_OUTPUT', nonRetryable: true } });
    expect(q).not.toHaveProperty('output');
    expect(q).not.toHaveProperty('events');
  });

  it('keeps a failure failed, with its code, and replaces logs by one line saying why', () => {
    const failed = {
      ...base,
      type: 'step.failed' as const,
      error: { code: 'BOOM', message: 'm', nonRetryable: false, details: { bad: true } },
    };
    expect(quarantineReport(failed, 'why')).toMatchObject({ type: 'step.failed', error: { code: 'BOOM' } });
    const dropped = withoutLogs({ ...failed, logs: [{ level: 'info', message: 'a', time: 'x' }] }, 'bad time');
    expect(dropped.logs).toHaveLength(1);
    expect(dropped.logs?.[0].message).toContain('1 log line(s) of this attempt could not be stored: bad time');
  });
});
