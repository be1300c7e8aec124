import { defineFunction, NonRetryableError, type FunctionDefinition } from '@baton/sdk';
import jsonata from 'jsonata';
import { z } from 'zod';
import { ErrorCode } from './error-codes';

export const TRANSFORM = 'transform';

export const transformInput = z.object({
  /** A JSONata expression, evaluated over `data` (and nothing else). */
  expression: z.string().trim().min(1).max(100_000),
  data: z.unknown().optional(),
});
export type TransformInput = z.infer<typeof transformInput>;

export interface TransformOutput {
  /** The expression's value as plain JSON; `null` when it matched nothing. */
  result: unknown;
}

interface JsonataFailure {
  code?: string;
  position?: number;
  message?: string;
}

/** `(S0202 at position 7) Expected ")", got "]"` — JSONata's error code and position say where to look. */
export function describeJsonataError(err: unknown): string {
  const e = (err ?? {}) as JsonataFailure;
  const message = typeof e.message === 'string' && e.message ? e.message : String(err);
  const where = [e.code, typeof e.position === 'number' ? `at position ${e.position}` : undefined]
    .filter(Boolean)
    .join(' ');
  return where ? `(${where}) ${message}` : message;
}

/**
 * JSONata's own guard rails, the same the engine applies to workflow templates
 * (workflow/src/expression-worker.js): a deep recursion, an endless loop or a huge range fails
 * with a clear error. The step's `timeoutMs` bounds the rest.
 */
export const TRANSFORM_LIMITS: Readonly<jsonata.JsonataOptions> = Object.freeze({
  stack: 200,
  timeout: 1_000,
  sequence: 100_000,
});

const cache = new Map<string, jsonata.Expression>();

/** A compiled expression, cached by its text. Throws JSONata's syntax error. */
export function compileTransform(expression: string): jsonata.Expression {
  let compiled = cache.get(expression);
  if (!compiled) {
    compiled = jsonata(expression, { ...TRANSFORM_LIMITS });
    if (cache.size > 1_000) cache.clear();
    cache.set(expression, compiled);
  }
  return compiled;
}

/** The JSONata evaluation of `expression` over `data`, with the guard rails above. */
export async function runTransform(expression: string, data: unknown): Promise<unknown> {
  let compiled: jsonata.Expression;
  try {
    compiled = compileTransform(expression);
  } catch (err) {
    throw new NonRetryableError(
      ErrorCode.TRANSFORM_FAILED,
      `transform expression does not parse: ${describeJsonataError(err)}`,
    );
  }
  let value: unknown;
  try {
    value = await compiled.evaluate(data);
  } catch (err) {
    throw new NonRetryableError(
      ErrorCode.TRANSFORM_FAILED,
      `transform expression failed: ${describeJsonataError(err)}`,
    );
  }
  // JSONata marks arrays as sequences and answers undefined for "no match": make it plain JSON.
  return value === undefined ? null : ((JSON.parse(JSON.stringify(value)) as unknown) ?? null);
}

/** The data-processing step: `{expression, data}` → `{result}`. */
export function createTransform(): FunctionDefinition<TransformInput, TransformOutput> {
  return defineFunction({
    name: TRANSFORM,
    description: 'Evaluates a JSONata expression over data',
    input: transformInput,
    concurrency: 8,
    handler: async ({ expression, data }) => ({ result: await runTransform(expression, data) }),
  });
}
