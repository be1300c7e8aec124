import type { Request } from 'express';
import type { z } from 'zod';
import { ErrorCode, ValidationError, type ValidationProblem } from '@baton/workflow';
import { uuid } from '../api/schemas';
import { ApiError } from './errors';

/** Problems by path; an unknown key is reported at its own path so the message names the field. */
function problemsOf(error: z.ZodError, root: string): ValidationProblem[] {
  return error.issues.flatMap((issue) => {
    const base = [root, ...issue.path.map(String)].filter(Boolean).join('.');
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: base ? `${base}.${key}` : key, message: 'unknown field' }));
    }
    return [{ path: base || '(root)', message: issue.message }];
  });
}

/** Parses `value` or throws a 400 whose details name each bad field. */
export function parseOrThrow<S extends z.ZodType>(
  schema: S,
  value: unknown,
  opts: { code: string; what: string; root?: string },
): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = problemsOf(result.error, opts.root ?? '');
  throw new ValidationError(
    `invalid ${opts.what}: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`,
    problems,
    opts.code,
  );
}

export function parseUuid(value: string, what: string): string {
  if (!uuid.safeParse(value).success)
    throw new ValidationError(`${what} '${value}' is not a UUID`, undefined, ErrorCode.INVALID_ID);
  return value.toLowerCase();
}

/** Deepest nesting a request body may have; deeper is refused before anything recurses over it. */
export const MAX_BODY_DEPTH = 64;

/**
 * Refuses what the body limit lets through but the rest of the stack cannot take: nesting deeper
 * than MAX_BODY_DEPTH (JSON.stringify, ajv and PostgreSQL's jsonb all recurse, and a 10 000-level
 * body would overflow the stack: a 500 instead of a 400), and, in any string or key, the NUL
 * character or an unpaired surrogate (PostgreSQL text and jsonb cannot store them). Iterative, so the check itself cannot overflow.
 */
export function checkBodyShape(body: unknown, what = 'request body'): void {
  const stack: { value: unknown; depth: number; path: string }[] = [{ value: body, depth: 0, path: '' }];
  while (stack.length) {
    const { value, depth, path } = stack.pop()!;
    if (typeof value === 'string') {
      unstorable(value, what, path || '(root)');
      continue;
    }
    if (value === null || typeof value !== 'object') continue;
    if (depth >= MAX_BODY_DEPTH) {
      throw new ValidationError(
        `${what} nests deeper than ${MAX_BODY_DEPTH} levels`,
        [{ path: path || '(root)', message: `nested deeper than ${MAX_BODY_DEPTH} levels` }],
        ErrorCode.BODY_TOO_DEEP,
      );
    }
    for (const [key, child] of Object.entries(value)) {
      const childPath = path ? `${path}.${key}` : key;
      unstorable(key, what, childPath);
      stack.push({ value: child, depth: depth + 1, path: childPath });
    }
  }
}

/** An unpaired UTF-16 surrogate: valid in JSON text as an escape, refused by PostgreSQL's jsonb. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function unstorable(value: string, what: string, path: string): void {
  const problem = value.includes('\u0000')
    ? 'the NUL character (\\u0000)'
    : LONE_SURROGATE.test(value)
      ? 'an unpaired UTF-16 surrogate (not a Unicode character)'
      : undefined;
  if (problem === undefined) return;
  const shown = JSON.stringify(path).slice(1, -1).slice(0, 200);
  throw new ValidationError(
    `${what} contains ${problem} at ${shown}, which cannot be stored`,
    [{ path: shown, message: `contains ${problem}` }],
    ErrorCode.INVALID_REQUEST,
  );
}

/**
 * The JSON body of a request, its shape checked (checkBodyShape). A request without a body counts as
 * `{}`; a body in another media type is refused rather than silently ignored (express.json leaves it
 * unparsed).
 */
export function jsonBody(req: Request): unknown {
  if (req.body !== undefined) {
    checkBodyShape(req.body);
    return req.body;
  }
  const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
  if (hasBody) {
    throw new ApiError(
      415,
      ErrorCode.UNSUPPORTED_MEDIA_TYPE,
      `expected Content-Type application/json, got '${req.headers['content-type'] ?? '(none)'}'`,
    );
  }
  return {};
}
