import crypto from 'node:crypto';
import type { RequestHandler } from 'express';
import { ApiError } from './errors';

const sha256 = (value: string): Buffer => crypto.createHash('sha256').update(value).digest();

/**
 * Bearer-token auth against a fixed key list. Keys are compared as SHA-256 digests with
 * timingSafeEqual: equal-length buffers whatever the presented token, so neither the comparison nor
 * the token's length leaks how close a guess is. Every key is checked, with no early exit.
 */
export function requireApiKey(apiKeys: readonly string[]): RequestHandler {
  const digests = apiKeys.map(sha256);
  return (req, _res, next) => {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '');
    if (!match) {
      throw new ApiError(401, 'UNAUTHORIZED', 'missing bearer token (Authorization: Bearer <api key>)', {
        headers: { 'WWW-Authenticate': 'Bearer realm="baton"' },
      });
    }
    const presented = sha256(match[1]);
    let valid = false;
    for (const digest of digests) valid = crypto.timingSafeEqual(presented, digest) || valid;
    if (!valid) {
      throw new ApiError(401, 'UNAUTHORIZED', 'invalid API key', {
        headers: { 'WWW-Authenticate': 'Bearer realm="baton", error="invalid_token"' },
      });
    }
    next();
  };
}
