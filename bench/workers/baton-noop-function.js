'use strict';
/**
 * Baton's side of the benchmark: a step function that does nothing but note when it ran, started
 * through the same entry point every deployed function uses (`runFunctionMain`). Lives under bench/
 * because functions/ is deployed.
 */
const { performance } = require('node:perf_hooks');
const { z } = require('zod');
const { defineFunction, runFunctionMain } = require('@baton/sdk');

const NAME = 'bench-noop';

runFunctionMain(NAME, () => ({
  definition: defineFunction({
    name: NAME,
    input: z.object({ step: z.number().int() }),
    handler: async (input) => ({ step: input.step, at: performance.timeOrigin + performance.now() }),
  }),
})).catch((err) => {
  process.stderr.write(`${NAME} failed to start: ${err.message}\n`);
  process.exit(1);
});
