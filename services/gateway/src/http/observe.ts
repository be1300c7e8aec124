import crypto from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { metrics, type Logger } from '@baton/engine';

/** A caller's request id is kept when it is harmless to echo and log; otherwise we make one. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The route pattern a request matched (`/v1/runs/:id`), never the raw path: metric labels must stay
 * bounded. Routers are mounted at `/` with full paths, so `req.route.path` is the whole pattern.
 */
export function routeLabel(req: Request): string {
  const path: unknown = req.route?.path;
  return typeof path === 'string' ? path : 'unmatched';
}

/** Request id header, a per-request child logger, a debug line per request and the duration metric. */
export function observeRequests(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const incoming = req.headers['x-request-id'];
    const requestId = typeof incoming === 'string' && SAFE_REQUEST_ID.test(incoming) ? incoming : crypto.randomUUID();
    res.setHeader('x-request-id', requestId);
    const log = logger.child({ requestId });
    res.locals.requestId = requestId;
    res.locals.log = log;
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = routeLabel(req);
      metrics.httpDuration.observe({ route, method: req.method, status: String(res.statusCode) }, seconds);
      log.debug(
        {
          method: req.method,
          path: req.path,
          route,
          status: res.statusCode,
          durationMs: Math.round(seconds * 1e4) / 10,
        },
        'request',
      );
    });
    next();
  };
}
