import crypto from 'node:crypto';
import http from 'node:http';
import bytes from 'bytes';
import type { RequestHandler } from 'express';
import { rateLimit, type Store } from 'express-rate-limit';
import helmet from 'helmet';
import { RedisStore, type RedisReply } from 'rate-limit-redis';
import { isCluster, redisKeys, type Logger, type RedisConnection } from '@baton/engine';
import { NOT_RATE_LIMITED } from '../api/openapi';
import { ApiError } from './errors';
import { ErrorCode } from '@baton/workflow';

/**
 * The CSP of everything that is not a dashboard page (JSON answers, errors, OpenAPI): nothing may
 * load, nothing may frame it. The dashboard sets its own, stricter-than-usual policy per page
 * (routes/dashboard.ts, DASHBOARD_CSP), which replaces this one on its responses.
 */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/**
 * Bull Board's own UI: its bundle under 'self', inline styles (its loading screen and its React
 * components use them), the IBM Plex fonts it links from Google Fonts.
 */
export const BULL_BOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com",
  "font-src 'self' https://fonts.gstatic.com",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * helmet's headers on every response: HSTS, nosniff, X-Frame-Options DENY, Referrer-Policy,
 * Cross-Origin-Opener/Resource-Policy, Origin-Agent-Cluster, X-DNS-Prefetch-Control, and so on;
 * the CSP is ours (API_CSP). Stored documents (the invoice PDF) go without a CSP: a browser's PDF
 * viewer is a page of its own that a `default-src 'none'` may keep from rendering.
 */
export function securityHeaders(): RequestHandler {
  const headers = helmet({
    contentSecurityPolicy: false,
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'same-origin' },
  });
  return (req, res, next) => {
    if (!req.path.startsWith('/v1/documents/')) res.setHeader('Content-Security-Policy', API_CSP);
    headers(req, res, next);
  };
}

/** Replaces the API's CSP with Bull Board's on /admin/queues. */
export const bullBoardCsp: RequestHandler = (_req, res, next) => {
  res.setHeader('Content-Security-Policy', BULL_BOARD_CSP);
  next();
};

/** Paths no limit applies to: probes and scrapes come often, from the cluster, and must not fail. */
const UNLIMITED = new Set<string>(NOT_RATE_LIMITED);

/**
 * The Redis store of rate-limit-redis on the gateway's own ioredis connection, tolerant of Redis
 * being away: a command is refused at once while the connection is not ready (ioredis would queue
 * it until Redis is back, holding the request), and a script load that failed that way is retried
 * on the next request instead of failing every later one.
 */
class SharedRedisStore extends RedisStore {
  constructor(redis: RedisConnection, prefix: string) {
    // On a Redis Cluster a SCRIPT LOAD reaches one node and the EVALSHA of a key another (NOSCRIPT
    // each time): there the scripts are kept here and sent with EVAL, which the cluster client
    // routes by its one key.
    const scripts = new Map<string, string>();
    super({
      prefix,
      sendCommand: async (command: string, ...args: string[]) => {
        if (redis.status !== 'ready') throw new Error(`redis connection ${redis.status}`);
        if (isCluster(redis) && command.toUpperCase() === 'SCRIPT' && args[0]?.toUpperCase() === 'LOAD') {
          const sha = crypto.createHash('sha1').update(args[1]).digest('hex');
          scripts.set(sha, args[1]);
          return sha;
        }
        if (isCluster(redis) && command.toUpperCase() === 'EVALSHA' && scripts.has(args[0])) {
          return (await redis.call('EVAL', scripts.get(args[0]) as string, ...args.slice(1))) as RedisReply;
        }
        return (await redis.call(command, ...args)) as RedisReply;
      },
    });
  }

  override async increment(key: string) {
    this.incrementScriptSha = this.incrementScriptSha.catch(() => this.loadIncrementScript());
    return super.increment(key);
  }

  override async get(key: string) {
    this.getScriptSha = this.getScriptSha.catch(() => this.loadGetScript());
    return super.get(key);
  }
}

/**
 * A fixed one-minute window per client IP (`req.ip`, so BATON_TRUST_PROXY decides what the client
 * is behind an ingress; IPv6 clients are grouped by /56), shared by every replica through Redis
 * under `<queue prefix>:ratelimit:`. Over the limit: 429 in the API's error shape with
 * `Retry-After`, plus the IETF `RateLimit`/`RateLimit-Policy` headers on every limited response.
 * When Redis is unreachable the request goes through unlimited (the API then fails on its own
 * terms, and /readyz reports Redis): a limiter must not become the outage.
 */
export function rateLimiter(opts: {
  limit: number;
  redis: RedisConnection;
  prefix: string;
  logger: Logger;
}): RequestHandler {
  const store: Store = new SharedRedisStore(opts.redis, redisKeys(opts.prefix).rateLimit);
  let lastStoreWarning = 0;
  return rateLimit({
    windowMs: 60_000,
    limit: opts.limit,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    store,
    passOnStoreError: true,
    skip: (req) => UNLIMITED.has(req.path),
    logger: {
      // Store errors come once per request while Redis is down: one line every 10 s is enough.
      error: (err, message) => {
        if (Date.now() - lastStoreWarning < 10_000) return;
        lastStoreWarning = Date.now();
        opts.logger.warn({ err: (err as Error)?.message ?? String(err) }, message ?? 'rate limiter error');
      },
      warn: (err, message) => opts.logger.warn({ err: (err as Error)?.message ?? String(err) }, message ?? ''),
    },
    // The library has set Retry-After (seconds to the window's end) before calling this.
    handler: (_req, _res, next, options) => {
      next(
        new ApiError(
          429,
          ErrorCode.RATE_LIMITED,
          `too many requests: at most ${String(options.limit)} per minute from one client; retry after the time in Retry-After`,
        ),
      );
    },
  });
}

/** Default time a client has to send a whole request (BATON_REQUEST_TIMEOUT_MS). */
export const REQUEST_TIMEOUT_MS = 30_000;
/** Longest time a client may take to send a request's headers. */
export const HEADERS_TIMEOUT_MS = 10_000;

/**
 * The API's HTTP server with request timeouts: the whole request (headers and body) within
 * `requestTimeoutMs`, its headers within the smaller of that and HEADERS_TIMEOUT_MS; a slower
 * client (slowloris, a stalled upload) gets 408 and its connection closed. Node checks the
 * deadlines every `checkIntervalMs` (its default, 30 s, would let a deadline slip by that much).
 */
export function createApiServer(
  handler: http.RequestListener,
  opts: { requestTimeoutMs?: number; checkIntervalMs?: number } = {},
): http.Server {
  const requestTimeout = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  return http.createServer(
    {
      requestTimeout,
      headersTimeout: Math.min(HEADERS_TIMEOUT_MS, requestTimeout),
      connectionsCheckingInterval: opts.checkIntervalMs ?? 1_000,
    },
    handler,
  );
}

/**
 * A body that declares itself larger than BATON_BODY_LIMIT is refused from its Content-Length, before
 * a byte of it is read, and the connection is closed after the answer. express.json alone would
 * answer the same 413 only after reading the whole body off the socket (body-parser drains a refused
 * body so the connection can be reused): 50 MB sent to any route that parses JSON was 50 MB received.
 * A chunked body, which declares no length, is still cut at the limit by express.json.
 */
export function refuseOversizedBody(limit: string): RequestHandler {
  const max = bytes.parse(limit);
  if (max === null) throw new Error(`BATON_BODY_LIMIT ${limit} is not a size`);
  return (req, res, next) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > max) {
      res.setHeader('Connection', 'close');
      next(
        new ApiError(
          413,
          ErrorCode.PAYLOAD_TOO_LARGE,
          `the request body is ${declared} bytes, over the gateway's limit of ${limit} (BATON_BODY_LIMIT)`,
        ),
      );
      return;
    }
    next();
  };
}

/**
 * A URL with an encoded NUL (`%00`) in its path or query is refused at once: PostgreSQL cannot take
 * the character in a text parameter, so it would otherwise surface as a 500 from whichever query
 * the value reached.
 */
export const refuseNulInUrl: RequestHandler = (req, _res, next) => {
  if (/%00/i.test(req.url)) {
    next(new ApiError(400, ErrorCode.INVALID_REQUEST, 'the URL contains an encoded NUL character (%00)'));
    return;
  }
  next();
};
