import { createLogger, defineFunction, saveDefinition, startFunctionWorker, type FunctionWorker } from '@baton/engine';
import { z } from 'zod';
import { createTransform } from '../../functions/transform/src/index';
import { createTestEnv, type TestEnv } from '../support/env';
import { startEngine, type Engine } from '../support/engine';

/**
 * Step outputs, logs and errors PostgreSQL cannot store as sent (issue #12, defect 1). Before the
 * report guard, a NUL character in an output failed every batch holding its report, the report was
 * dead-lettered and the run stayed `running` for good. Each run here must end.
 */
const MAX_OUTPUT_BYTES = 64 * 1024;

// Counted outside Baton: how many times each handler really ran.
const calls = new Map<string, number>();
const count = (name: string): void => void calls.set(name, (calls.get(name) ?? 0) + 1);

const hostile = defineFunction({
  name: 'hostile',
  input: z.object({ kind: z.enum(['nul', 'huge', 'bad-log-time']) }),
  handler: async ({ kind }, ctx) => {
    count(`hostile:${kind}`);
    if (kind === 'nul') {
      ctx.log.info('a log line with a NUL \u0000 inside', { lone: '\uD800' });
      return { text: 'binary\u0000body', ['key\u0000']: ['\uDC00'] };
    }
    if (kind === 'huge') return { blob: 'x'.repeat(MAX_OUTPUT_BYTES + 1) };
    return { fine: true };
  },
});
const reserve = defineFunction({
  name: 'reserve',
  input: z.object({}).passthrough(),
  handler: async () => {
    count('reserve');
    return { reserved: true };
  },
});
const release = defineFunction({
  name: 'release',
  input: z.object({}).passthrough(),
  handler: async () => {
    count('release');
    return { released: true };
  },
});

const chatty = defineFunction({
  name: 'chatty',
  input: z.object({}).passthrough(),
  handler: async () => {
    count('chatty');
    return { text: 'y'.repeat(2048) };
  },
});

describe('poison outputs: what PostgreSQL cannot store never strands a run', () => {
  let env: TestEnv;
  let engine: Engine;
  let runtimeCapped: FunctionWorker;

  beforeAll(async () => {
    env = await createTestEnv('poison-output');
    engine = await startEngine(env, [hostile, reserve, release, createTransform()], {
      maxOutputBytes: MAX_OUTPUT_BYTES,
    });
    await saveDefinition(env.pool, {
      name: 'poison',
      input: { type: 'object', properties: { kind: { type: 'string' } } },
      steps: [
        { id: 'reserve', function: 'reserve', compensate: { function: 'release' } },
        { id: 'hostile', function: 'hostile', needs: ['reserve'], input: { kind: '{{ input.kind }}' } },
      ],
    });
    // A function runtime with a 1 KiB output limit, below the coordinator's 64 KiB: a 2 KiB output
    // that fails can only have been refused by the runtime, before it was sent through Redis.
    runtimeCapped = startFunctionWorker(chatty, {
      queues: env.queues,
      logger: createLogger('test', env.config.logLevel),
      maxOutputBytes: 1024,
    });
    await saveDefinition(env.pool, { name: 'chatty', steps: [{ id: 'chatty', function: 'chatty' }] });
    await saveDefinition(env.pool, {
      name: 'decode-into-input',
      steps: [
        { id: 'first', function: 'reserve' },
        { id: 'second', function: 'reserve', input: { text: '{{ "a" & $base64decode("AA==") & "b" }}' } },
      ],
    });
    await saveDefinition(env.pool, {
      name: 'decode',
      steps: [{ id: 'decode', function: 'transform', input: { expression: '$base64decode("AA==")' } }],
    });
  });

  afterAll(async () => {
    await runtimeCapped?.close();
    await engine?.close();
    await env?.cleanup();
  });

  it('stores an output, its logs and keys with NUL and lone surrogates as U+FFFD, and the run succeeds', async () => {
    const runId = await engine.start('poison', { kind: 'nul' });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('succeeded');
    const { rows } = await env.pool.query(
      `SELECT output FROM step_executions WHERE run_id = $1 AND step_id = 'hostile'`,
      [runId],
    );
    expect(rows[0].output).toEqual({ text: 'binary\uFFFDbody', 'key\uFFFD': ['\uFFFD'] });
    const logs = await env.pool.query(`SELECT message, data FROM run_logs WHERE run_id = $1`, [runId]);
    expect(logs.rows).toContainEqual({ message: 'a log line with a NUL \uFFFD inside', data: { lone: '\uFFFD' } });
  });

  it('the issue\'s transform: $base64decode("AA==") returns a NUL, and the run still succeeds', async () => {
    const runId = await engine.start('decode', {});
    const run = await engine.waitForRun(runId);
    expect({ status: run.status, output: run.output }).toEqual({
      status: 'succeeded',
      output: { decode: { result: '\uFFFD' } },
    });
  });

  it('a template that produces a NUL in the next step input stores it as U+FFFD, and the run succeeds', async () => {
    const runId = await engine.start('decode-into-input', {});
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('succeeded');
    const { rows } = await env.pool.query(
      `SELECT input FROM step_executions WHERE run_id = $1 AND step_id = 'second'`,
      [runId],
    );
    expect(rows[0].input).toEqual({ text: 'a\uFFFDb' });
  });

  it('fails an output over BATON_MAX_OUTPUT_BYTES with OUTPUT_TOO_LARGE, once, and compensates what came before', async () => {
    const before = { hostile: calls.get('hostile:huge') ?? 0, release: calls.get('release') ?? 0 };
    const runId = await engine.start('poison', { kind: 'huge' });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('compensated');
    const { rows } = await env.pool.query(
      `SELECT status, error, output FROM step_executions WHERE run_id = $1 AND step_id = 'hostile'`,
      [runId],
    );
    expect(rows).toEqual([
      {
        status: 'failed',
        output: null,
        error: expect.objectContaining({ code: 'OUTPUT_TOO_LARGE', nonRetryable: true }),
      },
    ]);
    // The handler ran once: its success is not retried into a second side effect.
    expect((calls.get('hostile:huge') ?? 0) - before.hostile).toBe(1);
    expect((calls.get('release') ?? 0) - before.release).toBe(1);
  });

  it('the function runtime refuses an output over its limit before sending it, once, without a retry', async () => {
    const before = calls.get('chatty') ?? 0;
    const runId = await engine.start('chatty', {});
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({ code: 'OUTPUT_TOO_LARGE', nonRetryable: true });
    expect(run.error.message).toContain('over the limit of 1024');
    expect((calls.get('chatty') ?? 0) - before).toBe(1);
  });

  it('applies a report whose log line PostgreSQL refuses without its logs, saying so in one line', async () => {
    // A report from a function on another SDK: a log time JavaScript accepts and PostgreSQL does not
    // (30 February). The report travels through the real inbox; only its log line is altered.
    const handleBatch = engine.coordinator.handleBatch.bind(engine.coordinator);
    const spy = jest.spyOn(engine.coordinator, 'handleBatch').mockImplementation((messages, onCommit) =>
      handleBatch(
        messages.map((m) =>
          m.type === 'step.succeeded' && (m.output as { fine?: boolean } | null)?.fine
            ? { ...m, logs: [{ level: 'info', message: 'odd time', time: '2022-02-30T00:00:00Z' }] }
            : m,
        ),
        onCommit,
      ),
    );
    try {
      const runId = await engine.start('poison', { kind: 'bad-log-time' });
      const run = await engine.waitForRun(runId);
      expect(run.status).toBe('succeeded');
      const logs = await env.pool.query(
        `SELECT level, message FROM run_logs WHERE run_id = $1 AND step_id = 'hostile'`,
        [runId],
      );
      expect(logs.rows).toEqual([
        { level: 'warn', message: expect.stringContaining('1 log line(s) of this attempt could not be stored') },
      ]);
    } finally {
      spy.mockRestore();
    }
  });
});
