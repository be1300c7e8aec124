import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NonRetryableError, type FunctionContext } from '@baton/sdk';
import { shout, shoutInput, shoutText } from '../src/index';

/** A ctx for calling the handler directly, without Redis or a coordinator. */
function testContext(logs: string[] = []): FunctionContext {
  const log = (message: string) => void logs.push(message);
  return {
    runId: 'run-1',
    stepId: 'shout',
    stepExecutionId: 'exec-1',
    workflow: 'test',
    kind: 'action',
    attempt: 1,
    maxAttempts: 3,
    idempotencyKey: 'run-1:shout',
    signal: new AbortController().signal,
    log: { debug: log, info: log, warn: log, error: log },
    logger: console as unknown as FunctionContext['logger'],
    emit: () => undefined,
  };
}

test('shouts', () => {
  assert.equal(shoutText({ text: 'hello', excitement: 3 }), 'HELLO!!!');
});

test('the input schema fills in the default and refuses what it must', () => {
  assert.deepEqual(shoutInput.parse({ text: 'hi' }), { text: 'hi', excitement: 1 });
  assert.equal(shoutInput.safeParse({ text: 'hi', excitement: 11 }).success, false);
});

test('the handler returns the output and logs', async () => {
  const logs: string[] = [];
  assert.deepEqual(await shout.handler({ text: 'hello', excitement: 1 }, testContext(logs)), { shouted: 'HELLO!' });
  assert.deepEqual(logs, ['shouting']);
});

test('an empty text fails the step for good', async () => {
  await assert.rejects(
    shout.handler({ text: ' ', excitement: 1 }, testContext()),
    (err: unknown) => err instanceof NonRetryableError && err.code === 'EMPTY_TEXT',
  );
});
