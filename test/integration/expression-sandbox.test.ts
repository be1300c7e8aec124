import { configureExpressions } from '@baton/workflow';
import { defineFunction, publishEvent, saveDefinition } from '@baton/engine';
import { z } from 'zod';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, type TestEnv } from '../support/env';

/**
 * Hostile expressions against the real coordinator (PostgreSQL + Redis): a backtracking regex in an
 * `if:`, a 200 MB `$pad` in a step input and a failing concurrency key each end their run `failed`
 * with EXPRESSION_FAILED, without starting a step; the coordinator goes on to run a plain workflow.
 */

const done: string[] = [];
const work = defineFunction({
  name: 'work',
  input: z.object({ tag: z.string() }).passthrough(),
  handler: async ({ tag }) => {
    done.push(tag);
    return { tag };
  },
});

// About 5 s of one regex step (each extra 'a' doubles it): well past the limit set below.
const CATASTROPHIC = '$match("aaaaaaaaaaaaaaaaaaaaaaaaaaa!", /^(a+)+$/)';

describe('expression sandbox in the coordinator', () => {
  let env: TestEnv;
  let engine: Engine;

  beforeAll(async () => {
    await configureExpressions({ timeoutMs: 500 });
    env = await createTestEnv('expr_sandbox');
    engine = await startEngine(env, [work]);
    await saveDefinition(env.pool, {
      name: 'regex-if',
      steps: [{ id: 'a', function: 'work', if: CATASTROPHIC, input: { tag: 'regex' } }],
    });
    await saveDefinition(env.pool, {
      name: 'huge-input',
      steps: [{ id: 'a', function: 'work', input: { tag: 'pad', filler: '{{ $pad("", 200000000) }}' } }],
    });
    await saveDefinition(env.pool, {
      name: 'bad-key',
      concurrency: { limit: 1, key: '$error("no key for " & input.who)' },
      steps: [{ id: 'a', function: 'work', input: { tag: 'key' } }],
    });
    await saveDefinition(env.pool, {
      name: 'hostile-filter',
      triggers: [{ event: { name: 'ping', filter: CATASTROPHIC } }],
      steps: [{ id: 'a', function: 'work', input: { tag: 'filtered' } }],
    });
    await saveDefinition(env.pool, {
      name: 'plain',
      triggers: [{ event: { name: 'ping' } }],
      steps: [{ id: 'a', function: 'work', input: { tag: '{{ "plain-" & $string(input.n) }}' } }],
    });
  });

  afterAll(async () => {
    await engine?.close();
    await env?.cleanup();
    await configureExpressions({ timeoutMs: 1_000 });
  });

  const executionsOf = async (runId: string) =>
    Number((await env.pool.query('SELECT count(*) FROM step_executions WHERE run_id = $1', [runId])).rows[0].count);

  it('fails the runs whose expressions hang, exhaust memory or fail, and keeps running others', async () => {
    // Time enough that only the memory bound can stop the $pad, however busy the machine.
    await configureExpressions({ timeoutMs: 30_000 });
    const huge = await engine.start('huge-input', {});
    const hugeRun = await engine.waitForRun(huge);
    expect(hugeRun.status).toBe('failed');
    expect(hugeRun.error).toMatchObject({
      code: 'EXPRESSION_FAILED',
      message: expect.stringMatching(/used more than 128 MB of memory/),
    });

    await configureExpressions({ timeoutMs: 500 });
    const regex = await engine.start('regex-if', {});
    const badKey = await engine.start('bad-key', { who: 'ada' });
    const regexRun = await engine.waitForRun(regex);
    expect(regexRun.status).toBe('failed');
    expect(regexRun.error).toMatchObject({
      code: 'EXPRESSION_FAILED',
      message: expect.stringMatching(/timed out after 500 ms/),
    });

    const badKeyRun = await engine.waitForRun(badKey);
    expect(badKeyRun.status).toBe('failed');
    expect(badKeyRun.error).toMatchObject({
      code: 'EXPRESSION_FAILED',
      message: expect.stringMatching(/no key for ada/),
    });

    // Failed where they were planned: no step started, so nothing for the reconciler to re-plan.
    for (const runId of [regex, huge, badKey]) expect(await executionsOf(runId)).toBe(0);
    expect(done).toEqual([]);

    const plain = await engine.waitForRun(await engine.start('plain', { n: 7 }));
    expect(plain.status).toBe('succeeded');
    expect(done).toEqual(['plain-7']);
  });

  it('starts no run for a subscription whose filter fails, and still starts the others', async () => {
    const published = await publishEvent(env.pool, engine.coordinatorQueue, {
      name: 'ping',
      payload: { n: 8 },
      source: { type: 'test' },
    });
    await published.notify();
    expect(published.rejected).toEqual([
      { workflow: 'hostile-filter', message: expect.stringMatching(/failed: timed out after 500 ms/) },
    ]);
    expect(published.runIds).toHaveLength(1);
    expect((await engine.waitForRun(published.runIds[0])).status).toBe('succeeded');
    expect(done).toContain('plain-8');
  });
});
