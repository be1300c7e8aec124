import { z } from 'zod';
import { ErrorCode } from './error-codes';
import { ValidationError, type ValidationProblem } from './errors';
import { ExpressionError, resolveTemplate } from './expressions';

/**
 * Run tags: string → string labels a run carries (`customer: cust-01`), given at start through the
 * API (`{input, tags}`) or resolved from the definition's `tags:` templates over `{input}` for any
 * trigger. Stored in `runs.tags` (jsonb, GIN-indexed), filtered by `GET /v1/runs?tag=k:v`.
 */

export const MAX_TAGS = 20;
export const MAX_TAG_VALUE = 256;
export const TAG_KEY_PATTERN = /^[a-z][a-z0-9_.-]{0,62}$/;

const TAG_KEY_MESSAGE =
  'tag keys use lowercase letters, digits, dots, dashes and underscores, starting with a letter (max 63)';

export const tagKey = z.string().regex(TAG_KEY_PATTERN, TAG_KEY_MESSAGE);

/** A string → string map checked key by key, so a bad key is reported at `tags.<key>` with the rule. */
function tagMap(value: z.ZodString) {
  return z.record(z.string(), value).superRefine((tags, ctx) => {
    const keys = Object.keys(tags);
    for (const key of keys) {
      if (!TAG_KEY_PATTERN.test(key)) ctx.addIssue({ code: 'custom', path: [key], message: TAG_KEY_MESSAGE });
    }
    if (keys.length > MAX_TAGS) ctx.addIssue({ code: 'custom', message: `at most ${MAX_TAGS} tags` });
  });
}

/** Tags as given at start: at most 20, each value a string of at most 256 characters. */
export const runTagsSchema = tagMap(
  z.string().max(MAX_TAG_VALUE, `tag values are at most ${MAX_TAG_VALUE} characters`),
);

/** A definition's `tags:` — a template over `{input}` per key (`'{{ input.customerId }}'`). */
export const definitionTagsSchema = tagMap(z.string().min(1).max(1_000));

export type RunTags = Record<string, string>;

/**
 * The tags a run starts with: the definition's templates resolved over `{input}`, with `explicit`
 * (the API's) merged over them. A template resolving to a number or a boolean is stringified; to
 * null or nothing, the tag is left out. A template that fails, or resolves to an object, an array or
 * a string over 256 characters: `strict` (an API start) refuses the start with a 400 naming
 * `tags.<key>`; otherwise (events, schedules) the tag is left out and the run starts anyway. Past
 * 20 tags, the definition's last ones are left out (explicit ones are at most 20 already).
 */
export async function resolveRunTags(
  templates: Record<string, string> | undefined,
  input: unknown,
  explicit: RunTags | undefined,
  opts: { strict: boolean },
): Promise<RunTags> {
  const tags: RunTags = { ...(explicit ?? {}) };
  if (!templates) return tags;
  const problems: ValidationProblem[] = [];
  for (const [key, template] of Object.entries(templates)) {
    if (key in tags) continue;
    let value: unknown;
    try {
      value = await resolveTemplate(template, { input });
    } catch (err) {
      if (!(err instanceof ExpressionError)) throw err;
      problems.push({ path: `tags.${key}`, message: `the definition's template failed: ${err.message}` });
      continue;
    }
    if (value === null || value === undefined) continue;
    if (typeof value === 'number' || typeof value === 'boolean') value = String(value);
    if (typeof value !== 'string') {
      problems.push({
        path: `tags.${key}`,
        message: `the definition's template resolved to ${Array.isArray(value) ? 'an array' : 'an object'}, not a string`,
      });
      continue;
    }
    if (value.length > MAX_TAG_VALUE) {
      problems.push({
        path: `tags.${key}`,
        message: `the definition's template resolved to over ${MAX_TAG_VALUE} characters`,
      });
      continue;
    }
    if (Object.keys(tags).length < MAX_TAGS) tags[key] = value;
  }
  if (problems.length && opts.strict) {
    throw new ValidationError(
      `run tags: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')} (fix the input or the definition's tags)`,
      problems,
      ErrorCode.INVALID_INPUT,
    );
  }
  return tags;
}
