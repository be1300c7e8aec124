import crypto from 'node:crypto';
import type { RequestHandler } from 'express';
import { ApiError } from './errors';
import { ErrorCode } from '@baton/workflow';

const sha256 = (value: string): Buffer => crypto.createHash('sha256').update(value).digest();

/** Methods a read-only key may use. */
const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Bearer-token auth against fixed key lists. Keys are compared as SHA-256 digests with
 * timingSafeEqual: equal-length buffers whatever the presented token, so neither the comparison nor
 * the token's length leaks how close a guess is. Every key of both lists is checked, with no early exit.
 *
 * 401: no token, or one that matches no key (who are you?). 403: a read-only key
 * (`BATON_READONLY_API_KEYS`) on a method that changes something (you may not).
 */
export function requireApiKey(apiKeys: readonly string[], readOnlyKeys: readonly string[] = []): RequestHandler {
  const digests = apiKeys.map(sha256);
  const readOnlyDigests = readOnlyKeys.map(sha256);
  return (req, _res, next) => {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '');
    if (!match) {
      throw new ApiError(401, ErrorCode.UNAUTHORIZED, 'missing bearer token (Authorization: Bearer <api key>)', {
        headers: { 'WWW-Authenticate': 'Bearer realm="baton"' },
      });
    }
    const presented = sha256(match[1]);
    let full = false;
    let readOnly = false;
    for (const digest of digests) full = crypto.timingSafeEqual(presented, digest) || full;
    for (const digest of readOnlyDigests) readOnly = crypto.timingSafeEqual(presented, digest) || readOnly;
    if (!full && !readOnly) {
      throw new ApiError(401, ErrorCode.UNAUTHORIZED, 'invalid API key', {
        headers: { 'WWW-Authenticate': 'Bearer realm="baton", error="invalid_token"' },
      });
    }
    if (!full && !READ_METHODS.has(req.method)) {
      throw new ApiError(
        403,
        ErrorCode.FORBIDDEN,
        `this API key is read-only: ${req.method} needs a key from BATON_API_KEYS`,
      );
    }
    next();
  };
}
