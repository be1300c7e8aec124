/**
 * What PostgreSQL's jsonb and text columns refuse, removed before a value is written, so that one
 * step's odd output cannot fail the transaction that records it (and every report batched with it):
 *
 * - U+0000 (NUL): jsonb and text reject it (SQLSTATE 22P05, "unsupported Unicode escape sequence").
 *   A binary HTTP body decoded as text, `$base64decode("AA==")` or a C string from a native module
 *   carries one. Replaced with U+FFFD, the Unicode replacement character, so the value keeps its
 *   length and shows where something was.
 * - Lone surrogates (half of a UTF-16 pair, e.g. a string cut in the middle of an emoji): jsonb
 *   rejects the `\ud800` escape JSON.stringify writes for them. Replaced with U+FFFD as well
 *   (`String.prototype.toWellFormed`).
 *
 * Pure, no I/O. Object keys are cleaned too. Non-JSON values (undefined, functions, symbols, bigint)
 * follow JSON.stringify's rules, since that is how pg sends the value.
 */

// ES2024 string methods, present in Node 20 (V8 11.3); the project's lib stays ES2023 so that nothing
// newer than Node 20 (Promise.withResolvers…) type-checks by accident.
declare global {
  interface String {
    isWellFormed(): boolean;
    toWellFormed(): string;
  }
}

const REPLACEMENT = '\uFFFD';

/** True when `s` holds nothing PostgreSQL refuses. Fast path: most strings are clean. */
function isClean(s: string): boolean {
  return !s.includes('\u0000') && s.isWellFormed();
}

export function storableString(s: string): string {
  return isClean(s) ? s : s.toWellFormed().replaceAll('\u0000', REPLACEMENT);
}

/**
 * `value` with every string (and key) made storable. Returns the same object when nothing needed a
 * change, so the common case allocates nothing.
 */
export function storableJson<T>(value: T): T {
  return clean(value, 0) as T;
}

/** Deeper than this is not walked (JSON.parse of a report cannot build one: its nesting is bounded by the sender's). */
const MAX_DEPTH = 1_000;

function clean(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return storableString(value);
  if (value === null || typeof value !== 'object' || depth > MAX_DEPTH) return value;
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i += 1) {
      const item = clean(value[i], depth + 1);
      if (item !== value[i]) (out ??= value.slice())[i] = item;
    }
    return out ?? value;
  }
  let changed = false;
  const cleaned = Object.entries(value as Record<string, unknown>).map(([key, item]): [string, unknown] => {
    const pair: [string, unknown] = [storableString(key), clean(item, depth + 1)];
    if (pair[0] !== key || pair[1] !== item) changed = true;
    return pair;
  });
  return changed ? Object.fromEntries(cleaned) : value;
}

/**
 * The default output limit (BATON_MAX_OUTPUT_BYTES) and the JSON byte size are the SDK's: the
 * function runtime refuses a larger output before it travels through Redis, the coordinator before
 * it reaches PostgreSQL.
 */
export { DEFAULT_MAX_OUTPUT_BYTES, jsonByteLength } from '@baton/sdk';

/** Caps a text for a column meant for people (error messages, log lines), keeping it valid. */
export function storableText(s: string, maxChars: number): string {
  const cleaned = storableString(s);
  if (cleaned.length <= maxChars) return cleaned;
  return `${cleaned.slice(0, maxChars).toWellFormed()}… (${cleaned.length - maxChars} more characters cut)`;
}
