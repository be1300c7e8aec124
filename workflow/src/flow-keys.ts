import { ErrorCode } from './error-codes';
import { ValidationError } from './errors';
import { evaluate, ExpressionError } from './expressions';

/**
 * The key of a `singleton:` or `debounce:` workflow for one trigger: its `key` (JSONata over
 * `{input}`, like `concurrency.key`) evaluated on the input — a string as is, anything else as JSON
 * (`null` when it yields nothing) — or `''` without one (one key for the whole workflow).
 */

/** A longer key is refused: it goes into a btree index. */
export const MAX_FLOW_KEY = 512;

/** Throws a ValidationError (INVALID_INPUT) naming `<field>.key` when the key cannot be had. */
export async function resolveFlowKey(
  field: 'singleton' | 'debounce',
  expression: string | undefined,
  input: unknown,
): Promise<string> {
  if (expression === undefined) return '';
  let raw: unknown;
  try {
    raw = await evaluate(expression, { input });
  } catch (err) {
    if (!(err instanceof ExpressionError)) throw err;
    throw refused(field, `the definition's key failed on this input: ${err.message}`);
  }
  const key = typeof raw === 'string' ? raw : JSON.stringify(raw ?? null);
  if (key.length > MAX_FLOW_KEY)
    throw refused(field, `the definition's key resolved to over ${MAX_FLOW_KEY} characters`);
  return key;
}

function refused(field: string, message: string): ValidationError {
  return new ValidationError(`${field}.key: ${message}`, [{ path: `${field}.key`, message }], ErrorCode.INVALID_INPUT);
}
