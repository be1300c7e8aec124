import type { Client } from '../../cli/src/client';
import { detailLines } from '../../cli/src/main';
import {
  fitWidth,
  formatDuration,
  logLine,
  progressText,
  runFrame,
  startNote,
  stepLine,
  tagText,
} from '../../cli/src/render';
import type { Run, Step } from '../../cli/src/types';
import { watchRun } from '../../cli/src/watch';

/** The CLI's rendering (pure) and the in-place redraw of `runs get --watch` on a terminal. */

const plain = { color: false };
const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const at = (ms: number) => new Date(T0 + ms).toISOString();

function step(over: Partial<Step>): Step {
  return {
    id: 'fetchOrders',
    executionId: `e-${over.id ?? 'fetchOrders'}-${over.status ?? 'queued'}`,
    function: 'fetch-orders',
    status: 'queued',
    attempts: 0,
    maxAttempts: 3,
    queuedAt: at(0),
    startedAt: null,
    finishedAt: null,
    error: null,
    output: null,
    ...over,
  };
}

function run(over: Partial<Run>): Run {
  return {
    id: '6f1c0000-0000-4000-8000-000000000001',
    workflow: 'invoice',
    workflowVersion: 2,
    status: 'running',
    input: {},
    output: null,
    error: null,
    createdAt: at(0),
    startedAt: at(0),
    finishedAt: null,
    steps: [],
    compensations: [],
    ...over,
  };
}

describe('CLI rendering', () => {
  it('formats durations for people', () => {
    expect([850, 1_234, 42_000, 185_000, 7_620_000].map(formatDuration)).toEqual([
      '850ms',
      '1.2s',
      '42s',
      '3m05s',
      '2h07m',
    ]);
  });

  it('puts status, attempts and duration on a step line, and the error of a failed step', () => {
    const done = step({ status: 'succeeded', attempts: 1, startedAt: at(100), finishedAt: at(1_300) });
    expect(stepLine(done, T0 + 5_000, plain)).toBe('✓  fetchOrders  fetch-orders  succeeded       1/3  1.2s');
    const waiting = step({ status: 'queued' });
    expect(stepLine(waiting, T0 + 2_000, plain)).toContain('waiting 2.0s');
    const failed = step({
      status: 'failed',
      attempts: 3,
      startedAt: at(0),
      finishedAt: at(500),
      error: { code: 'CUSTOMER_NOT_FOUND', message: "customer 'x' not found" },
    });
    expect(stepLine(failed, T0, plain)).toMatch(
      /^✗ {2}fetchOrders .* failed +3\/3 {2}500ms +CUSTOMER_NOT_FOUND: customer 'x' not found$/,
    );
    expect(stepLine(done, T0, { color: true })).toContain('\x1b[32m✓\x1b[0m');
  });

  it('frames a run: header, aligned steps, compensations, and why it did not succeed', () => {
    const r = run({
      status: 'compensated',
      finishedAt: at(3_000),
      error: { stepId: 'sendEmail', function: 'send-email', attempt: 5, code: 'EMAIL_REJECTED', message: 'no' },
      steps: [
        step({ status: 'succeeded', attempts: 1, startedAt: at(0), finishedAt: at(100) }),
        step({ id: 'sendEmail', function: 'send-email', status: 'failed', attempts: 5, maxAttempts: 5 }),
      ],
      compensations: [step({ id: 'createInvoice', function: 'void-invoice', status: 'succeeded', attempts: 1 })],
    });
    const lines = runFrame(r, T0 + 3_000, plain, true);
    expect(lines[0]).toBe('run 6f1c0000-0000-4000-8000-000000000001  invoice v2  compensated  3.0s');
    expect(lines[1]).toMatch(/^ {2}✓ {2}fetchOrders +fetch-orders +succeeded/);
    expect(lines[2]).toMatch(/^ {2}✗ {2}sendEmail +send-email +failed/);
    // One set of columns for steps and compensations.
    const column = (line: string, text: string) => line.indexOf(text);
    expect(column(lines[2], 'send-email')).toBe(column(lines[1], 'fetch-orders'));
    expect(column(lines[4], 'void-invoice')).toBe(column(lines[1], 'fetch-orders'));
    expect(lines[3]).toBe('  compensations');
    expect(lines.at(-1)).toBe('run compensated at step sendEmail (send-email), attempt 5: EMAIL_REJECTED: no');
  });

  it('shows a forEach/repeat step’s progress, child run ids and the parent of a child run', () => {
    const fanout = {
      mode: 'forEach' as const,
      total: 30,
      pending: 14,
      running: 3,
      succeeded: 12,
      failed: 1,
      cancelled: 0,
      compensated: 0,
      concurrency: 3,
    };
    const r = run({
      parentRunId: '6f1c0000-0000-4000-8000-00000000000a',
      parentStepId: 'invoiceAll',
      depth: 1,
      steps: [
        step({
          id: 'pdfs',
          function: 'baton.workflow',
          status: 'running',
          attempts: 0,
          startedAt: at(0),
          fanout,
          items: [
            {
              index: 0,
              executionId: 'i0',
              status: 'succeeded',
              attempts: 1,
              childRunId: '6f1c0000-0000-4000-8000-0000000000c0',
              startedAt: at(0),
              finishedAt: at(10),
            },
          ],
          itemsNext: 'next',
        }),
        step({
          id: 'summary',
          function: 'baton.workflow',
          status: 'running',
          attempts: 1,
          startedAt: at(0),
          childRunId: '6f1c0000-0000-4000-8000-0000000000c1',
        }),
        step({
          id: 'poll',
          status: 'succeeded',
          startedAt: at(0),
          finishedAt: at(50),
          fanout: {
            ...fanout,
            mode: 'repeat',
            total: 1,
            pending: 0,
            running: 0,
            succeeded: 1,
            failed: 0,
            concurrency: null,
          },
        }),
      ],
    });
    const lines = runFrame(r, T0 + 1_000, plain, false);
    expect(lines[1]).toBe('  child of run 6f1c0000-0000-4000-8000-00000000000a, step invoiceAll');
    expect(lines[2]).toMatch(/^ {2}\S {2}pdfs +baton\.workflow +running +1\.0s$/);
    expect(lines[3]).toBe('     12 succeeded · 1 failed · 3 running of 30 items (14 pending), at most 3 at a time');
    expect(lines[4]).toBe(`     child runs: baton runs list --parent ${r.id}`);
    expect(lines[5]).toMatch(
      /summary +baton\.workflow +running +1\/3 {2}1\.0s +→ run 6f1c0000-0000-4000-8000-0000000000c1$/,
    );
    expect(lines[7]).toBe('     1 succeeded · 0 failed · 0 running of 1 iteration');
    expect(lines).toHaveLength(8);
    expect(
      progressText({ ...fanout, pending: 0, running: 0, succeeded: 20, failed: 2, cancelled: 5, compensated: 3 }),
    ).toBe('20 succeeded · 2 failed · 0 running of 30 items (5 cancelled, 3 compensated)');
    // A top-level run has no parent line.
    expect(runFrame(run({ parentRunId: null, steps: [] }), T0, plain, false)).toHaveLength(1);
  });

  it("shows a run's tags by key under its header, and nothing without tags", () => {
    const tagged = run({ tags: { tier: 'gold', customer: 'cust-01' }, steps: [] });
    expect(runFrame(tagged, T0, plain, false)).toEqual([
      expect.stringMatching(/^run /),
      '  tags customer=cust-01 tier=gold',
    ]);
    expect(runFrame(run({ tags: {}, steps: [] }), T0, plain, false)).toHaveLength(1);
    expect(tagText(undefined)).toBe('');
    expect(tagText({ b: '2', a: '1' })).toBe('a=1 b=2');
  });

  it('cuts lines to the terminal width without breaking colour codes', () => {
    expect(fitWidth('abcdef', 10)).toBe('abcdef');
    expect(fitWidth('abcdefghijkl', 6)).toBe('abcde…\x1b[0m');
    expect(fitWidth('\x1b[32mabcdefgh\x1b[0m', 4)).toBe('\x1b[32mabc…\x1b[0m');
  });

  it('prints log lines and API error details', () => {
    expect(logLine({ id: 1, time: at(0), level: 'warn', message: 'slow', stepId: 'a', data: { ms: 5 } }, plain)).toBe(
      `${at(0)}  WARN   a  slow {"ms":5}`,
    );
    expect(detailLines([{ path: 'steps[0].id', message: 'duplicate' }])).toEqual(['- steps[0].id: duplicate']);
    expect(detailLines({ database: 'ok', redis: 'connection end' })).toEqual(['database: ok', 'redis: connection end']);
  });

  it('redraws the run in place on a terminal until it ends', async () => {
    const states = [
      run({ status: 'running', steps: [step({ status: 'running', attempts: 1, startedAt: at(0) })] }),
      run({
        status: 'succeeded',
        finishedAt: at(900),
        steps: [step({ status: 'succeeded', attempts: 1, startedAt: at(0), finishedAt: at(800) })],
      }),
    ];
    let calls = 0;
    const client = { request: async () => ({ status: 200, body: states[Math.min(calls++, states.length - 1)] }) };
    let screen = '';
    const final = await watchRun(
      client as unknown as Client,
      'id',
      { write: (t) => (screen += t), isTTY: true, columns: 200 },
      { intervalMs: 1, style: plain },
    );
    expect(final.status).toBe('succeeded');
    const frames = screen.split('\x1b[2F\x1b[J');
    // Frame 1: header + running step (2 lines); frame 2 moves up over them and draws the end.
    expect(frames).toHaveLength(2);
    expect(frames[0]).toMatch(/invoice v2 {2}running {2}\S+\n.*fetchOrders .*running +1\/3/);
    expect(frames[1]).toMatch(
      /succeeded {2}900ms\n.*✓ {2}fetchOrders .*succeeded +1\/3 {2}800ms\nrun succeeded in 900ms\n$/,
    );
  });
});

describe('startNote (runs start, on stderr)', () => {
  const base = { runId: 'r1', status: 'pending', statusUrl: '/v1/runs/r1' };
  it('says nothing for a plain new run, and names an earlier run of the idempotency key', () => {
    expect(startNote(202, base)).toBeUndefined();
    expect(startNote(200, base)).toBe('an earlier run has this idempotency key: r1');
  });
  it('says what a singleton start did', () => {
    expect(
      startNote(200, {
        ...base,
        status: 'running',
        started: false,
        singleton: { key: 'c1', mode: 'skip', skipped: true },
      }),
    ).toBe("singleton: key 'c1' already has an active run (running): r1; nothing started");
    expect(startNote(202, { ...base, singleton: { key: '', mode: 'cancelRunning', cancelled: ['r0'] } })).toBe(
      'singleton: cancelled the active run r0',
    );
  });
  it('says when a debounced run starts', () => {
    const debounce = { key: 'k', count: 3, firesAt: '2026-12-03T15:00:05.000Z', deadline: null };
    expect(startNote(202, { ...base, status: 'debounced', debounce })).toBe(
      "debounced → run r1 (3 triggers so far; starts at 2026-12-03T15:00:05.000Z, unless another trigger of key 'k' comes)",
    );
  });
});
