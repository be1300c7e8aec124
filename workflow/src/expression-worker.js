// @ts-check
'use strict';

/**
 * The evaluation core of workflow expressions (JSONata) and `{{ }}` templates, used in two places:
 * by `expressions.ts` in the calling process, for expressions proven cheap, and as the entry of the
 * expression sandbox, a child process run by workerpool, for everything else (see expressions.ts).
 * Plain JavaScript so the child process runs the same file from the sources (tests) and from dist/.
 *
 * Template rules: a string that is exactly `{{ expr }}` becomes the expression's value with its JSON
 * type; `{{ expr }}` inside longer text interpolates (objects as JSON, missing values as '').
 */

const jsonata = require('jsonata');
const { Buffer } = require('node:buffer');

/**
 * JSONata's own guardrails (checked between evaluation steps): a deep recursion, an endless loop or
 * a huge range fails with a clear error. They cannot stop one long step (a backtracking regex) or a
 * huge string: the sandbox's hard bounds do (expressions.ts).
 */
const EXPRESSION_LIMITS = Object.freeze({ stack: 200, timeout: 1_000, sequence: 100_000 });

const EXACT = /^\s*\{\{([\s\S]+?)\}\}\s*$/;
const INLINE = /\{\{([\s\S]+?)\}\}/g;

/** @type {Map<string, jsonata.Expression>} */
const cache = new Map();

/**
 * A compiled expression, cached by its text. Throws JSONata's syntax error.
 * @param {string} expression
 * @returns {jsonata.Expression}
 */
function compile(expression) {
  let compiled = cache.get(expression);
  if (!compiled) {
    compiled = jsonata(expression, /** @type {jsonata.JsonataOptions} */ (/** @type {unknown} */ (EXPRESSION_LIMITS)));
    if (cache.size > 5_000) cache.clear();
    cache.set(expression, compiled);
  }
  return compiled;
}

/**
 * An expression that failed on its data. Crosses the process boundary as a plain error with these
 * properties (workerpool copies them); expressions.ts turns it into an ExpressionError.
 */
class EvaluationFailure extends Error {
  /**
   * @param {string} expression
   * @param {string} reason
   */
  constructor(expression, reason) {
    super(`expression '${expression}' failed: ${reason}`);
    this.expression = expression;
    this.reason = reason;
    this.expressionFailed = true;
  }
}

/** @param {unknown} err */
function reasonOf(err) {
  return err && typeof err === 'object' && 'message' in err ? String(err.message) : String(err);
}

/**
 * Plain JSON (JSONata returns arrays flagged as sequences, and undefined for no match), at most
 * `maxResultBytes` serialized.
 * @param {string} expression
 * @param {unknown} value
 * @param {number} maxResultBytes
 * @param {{ units: number }} [size] adds the result's serialized length (UTF-16 units)
 * @returns {unknown}
 */
function normalize(expression, value, maxResultBytes, size) {
  if (value === undefined) return undefined;
  let json;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    throw new EvaluationFailure(expression, reasonOf(err));
  }
  // A function value (`$string` alone) has no JSON form: like a missing value.
  if (json === undefined) return undefined;
  if (tooLarge(json, maxResultBytes))
    throw new EvaluationFailure(expression, `result larger than ${maxResultBytes} bytes`);
  if (size) size.units += json.length;
  return JSON.parse(json);
}

/**
 * UTF-8 size over the limit; a string of n UTF-16 units is n to 3n bytes, so most need no count.
 * @param {string} text
 * @param {number} maxBytes
 */
function tooLarge(text, maxBytes) {
  return text.length > maxBytes || (text.length * 3 > maxBytes && Buffer.byteLength(text) > maxBytes);
}

/**
 * @param {string} expression
 * @param {unknown} data
 * @param {number} maxResultBytes
 * @param {{ units: number }} [size]
 * @returns {Promise<unknown>}
 */
async function evaluate(expression, data, maxResultBytes, size) {
  let value;
  try {
    value = await compile(expression).evaluate(data);
  } catch (err) {
    throw new EvaluationFailure(expression, reasonOf(err));
  }
  return normalize(expression, value, maxResultBytes, size);
}

/**
 * Every expression inside a template value, with its path (`path` prefixes it).
 * @param {unknown} value
 * @param {string} path
 * @returns {{ path: string; expression: string }[]}
 */
function templateExpressions(value, path) {
  /** @type {{ path: string; expression: string }[]} */
  const found = [];
  /**
   * @param {unknown} v
   * @param {string} p
   */
  const walk = (v, p) => {
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

/**
 * @param {unknown} value
 * @param {unknown} data
 * @param {number} maxResultBytes
 * @param {{ units: number }} size
 * @returns {Promise<unknown>}
 */
async function resolveValue(value, data, maxResultBytes, size) {
  if (typeof value === 'string') {
    const exact = EXACT.exec(value);
    if (exact && !exact[1].includes('}}')) return evaluate(exact[1].trim(), data, maxResultBytes, size);
    const parts = [];
    let last = 0;
    for (const match of value.matchAll(INLINE)) {
      parts.push(value.slice(last, match.index));
      const result = await evaluate(match[1].trim(), data, maxResultBytes, size);
      parts.push(
        result === undefined || result === null ? '' : typeof result === 'string' ? result : JSON.stringify(result),
      );
      last = (match.index ?? 0) + match[0].length;
    }
    parts.push(value.slice(last));
    return parts.join('');
  }
  if (Array.isArray(value)) return Promise.all(value.map((item) => resolveValue(item, data, maxResultBytes, size)));
  if (value && typeof value === 'object') {
    /** @type {Record<string, unknown>} */
    const out = {};
    for (const [key, item] of Object.entries(value)) {
      const resolved = await resolveValue(item, data, maxResultBytes, size);
      if (resolved !== undefined) out[key] = resolved;
    }
    return out;
  }
  return value;
}

/** @type {WeakMap<object, number>} */
const templateUnits = new WeakMap();

/**
 * Resolves every template in `value` (recursively) against `data`; the whole result, like each
 * expression's, is at most `maxResultBytes` serialized. Its JSON is at most the template's plus twice
 * the results' (a JSON result interpolated into text is escaped once more), 3 UTF-8 bytes a unit: it
 * is serialized again only when that bound passes the limit.
 * @param {unknown} value
 * @param {unknown} data
 * @param {number} maxResultBytes
 * @returns {Promise<unknown>}
 */
async function resolveTemplate(value, data, maxResultBytes) {
  const size = { units: 0 };
  const resolved = await resolveValue(value, data, maxResultBytes, size);
  if (resolved === null || (typeof resolved !== 'object' && typeof resolved !== 'string')) return resolved;
  let own = typeof value === 'string' ? value.length : 0;
  if (value !== null && typeof value === 'object') {
    own = templateUnits.get(value) ?? JSON.stringify(value).length;
    templateUnits.set(value, own);
  }
  if ((own + 2 * size.units) * 3 <= maxResultBytes) return resolved;
  const text = typeof resolved === 'string' ? resolved : JSON.stringify(resolved);
  if (tooLarge(text, maxResultBytes)) {
    throw new EvaluationFailure(describeTemplate(value), `result larger than ${maxResultBytes} bytes`);
  }
  return resolved;
}

/**
 * How an error names a template: its expressions (shortened).
 * @param {unknown} value
 * @returns {string}
 */
function describeTemplate(value) {
  const text = templateExpressions(value, '')
    .map((e) => e.expression)
    .join(', ');
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

module.exports = {
  EXPRESSION_LIMITS,
  EvaluationFailure,
  compile,
  evaluate,
  resolveTemplate,
  templateExpressions,
  describeTemplate,
};

// Run by workerpool as a child process: one request at a time. 'started' tells the caller that the
// request has arrived and been decoded: its time limit counts from there (not from a cold start).
if (require.main === module) {
  const workerpool = require('workerpool');
  workerpool.worker({
    /**
     * @param {'expression' | 'template' | 'templateEach'} kind
     * @param {unknown} subject
     * @param {any} data for 'templateEach': `{ data, items, indexes }`, one resolution per item with
     *   `item` and `index` (`indexes[i]`) added to `data`: the shared data crosses once, not per item.
     * @param {number} maxResultBytes
     */
    async run(kind, subject, data, maxResultBytes) {
      workerpool.workerEmit('started');
      if (kind === 'templateEach') {
        const results = [];
        for (let i = 0; i < data.items.length; i++) {
          results.push(
            await resolveTemplate(
              subject,
              { ...data.data, item: data.items[i], index: data.indexes[i] },
              maxResultBytes,
            ),
          );
        }
        return results;
      }
      return kind === 'template'
        ? resolveTemplate(subject, data, maxResultBytes)
        : evaluate(String(subject), data, maxResultBytes);
    },
  });
}
