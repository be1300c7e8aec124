import type { Request } from 'express';
import type { z } from 'zod';
import { ValidationError, type ValidationProblem } from '@baton/shared';
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
    throw new ValidationError(`${what} '${value}' is not a UUID`, undefined, 'INVALID_ID');
  return value.toLowerCase();
}

/**
 * The JSON body of a request. A request without a body counts as `{}`; a body in another media
 * type is refused rather than silently ignored (express.json leaves it unparsed).
 */
export function jsonBody(req: Request): unknown {
  if (req.body !== undefined) return req.body;
  const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
  if (hasBody) {
    throw new ApiError(
      415,
      'UNSUPPORTED_MEDIA_TYPE',
      `expected Content-Type application/json, got '${req.headers['content-type'] ?? '(none)'}'`,
    );
  }
  return {};
}
