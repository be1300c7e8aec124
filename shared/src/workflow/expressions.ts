import jsonata from 'jsonata';

/**
 * JSONata expressions and `{{ }}` templates. JSONata evaluates over the data it is given and nothing
 * else: no JavaScript `eval`, no `Function`, no access to the process.
 *
 * Template rules: a string that is exactly `{{ expr }}` becomes the expression's value with its JSON
 * type; `{{ expr }}` inside longer text interpolates (objects as JSON, missing values as '').
 */

const EXACT = /^\s*\{\{([\s\S]+?)\}\}\s*$/;
const INLINE = /\{\{([\s\S]+?)\}\}/g;

/**
 * JSONata's own guardrails, so a hostile expression (deep recursion, an endless loop, a huge range)
 * fails with an error instead of stalling the process.
 */
export const EXPRESSION_LIMITS = { stack: 200, timeout: 1_000, sequence: 100_000 } as const;

const cache = new Map<string, jsonata.Expression>();

export function compileExpression(expression: string): jsonata.Expression {
  let compiled = cache.get(expression);
  if (!compiled) {
    compiled = jsonata(expression, EXPRESSION_LIMITS as jsonata.JsonataOptions);
    if (cache.size > 5_000) cache.clear();
    cache.set(expression, compiled);
  }
  return compiled;
}

export class ExpressionError extends Error {
  readonly code = 'EXPRESSION_FAILED';
  constructor(
    readonly expression: string,
    message: string,
  ) {
    super(`expression '${expression}' failed: ${message}`);
  }
}

export async function evaluate(expression: string, data: unknown): Promise<unknown> {
  let compiled: jsonata.Expression;
  try {
    compiled = compileExpression(expression);
  } catch (err) {
    throw new ExpressionError(expression, (err as Error).message);
  }
  try {
    return normalize(await compiled.evaluate(data));
  } catch (err) {
    throw new ExpressionError(expression, (err as Error).message);
  }
}

/** JSONata returns arrays with a `sequence` flag and undefined for no match: make them plain JSON. */
function normalize(value: unknown): unknown {
  if (value === undefined) return undefined;
  return JSON.parse(JSON.stringify(value)) as unknown;
}

/** Every expression inside a template value, with its path, for validation. */
export function templateExpressions(value: unknown, path: string): { path: string; expression: string }[] {
  const found: { path: string; expression: string }[] = [];
  const walk = (v: unknown, p: string): void => {
    if (typeof v === 'string') {
      for (const match of v.matchAll(INLINE)) found.push({ path: p, expression: match[1].trim() });
    } else if (Array.isArray(v)) {
      v.forEach((item, i) => walk(item, `${p}[${i}]`));
    } else if (v && typeof v === 'object') {
      for (const [key, item] of Object.entries(v)) walk(item, `${p}.${key}`);
    }
  };
  walk(value, path);
  return found;
}

/** Resolves every template in `value` (recursively) against `data`. */
export async function resolveTemplate(value: unknown, data: unknown): Promise<unknown> {
  if (typeof value === 'string') {
    const exact = EXACT.exec(value);
    if (exact && !exact[1].includes('}}')) return evaluate(exact[1].trim(), data);
    const parts: string[] = [];
    let last = 0;
    for (const match of value.matchAll(INLINE)) {
      parts.push(value.slice(last, match.index));
      const result = await evaluate(match[1].trim(), data);
      parts.push(
        result === undefined || result === null ? '' : typeof result === 'string' ? result : JSON.stringify(result),
      );
      last = (match.index ?? 0) + match[0].length;
    }
    parts.push(value.slice(last));
    return parts.join('');
  }
  if (Array.isArray(value)) return Promise.all(value.map((item) => resolveTemplate(item, data)));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      const resolved = await resolveTemplate(item, data);
      if (resolved !== undefined) out[key] = resolved;
    }
    return out;
  }
  return value;
}

/** `if:` conditions: JSONata truthiness, with a missing value counting as false. */
export async function evaluateCondition(expression: string, data: unknown): Promise<boolean> {
  const result = await evaluate(expression, data);
  if (Array.isArray(result)) return result.length > 0;
  return Boolean(result);
}
