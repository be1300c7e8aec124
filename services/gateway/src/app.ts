import express, { type Express } from 'express';
import { BULL_BOARD_PATH, bullBoardHandler, requireAdminKey } from './bull-board';
import { bulkRouter } from './routes/bulk';
import { forkRouter } from './routes/fork';
import type { AppDeps } from './deps';
import { requireApiKey } from './http/auth';
import { errorHandler, notFoundHandler } from './http/errors';
import { observeRequests } from './http/observe';
import { bullBoardCsp, rateLimiter, refuseNulInUrl, refuseOversizedBody, securityHeaders } from './http/security';
import { dashboardRouter } from './routes/dashboard';
import { documentsRouter } from './routes/documents';
import { healthRouter } from './routes/health';
import { openapiRouter } from './routes/openapi';
import { operationsRouter } from './routes/operations';
import { runsRouter } from './routes/runs';
import { triggersRouter } from './routes/triggers';
import { workflowsRouter } from './routes/workflows';

export type { AppDeps } from './deps';

/** The gateway's express app, without listening: main.ts serves it, tests drive it with supertest. */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  // Who the client is behind the ingress (req.ip, the rate limit's key); false: the TCP peer.
  app.set('trust proxy', deps.config.trustProxy ?? false);

  app.use(observeRequests(deps.logger));
  app.use(securityHeaders());
  app.use(refuseNulInUrl);
  // Before auth, so guessing API keys is limited too; /healthz, /readyz and /metrics are exempt.
  if (deps.config.rateLimit) {
    app.use(
      rateLimiter({
        limit: deps.config.rateLimit,
        redis: deps.redis,
        prefix: deps.config.queuePrefix,
        logger: deps.logger,
      }),
    );
  }
  // Before any body parsing, so an unauthenticated caller cannot make us read a large body.
  const { apiKeys, readOnlyApiKeys = [] } = deps.config;
  if (apiKeys.length || readOnlyApiKeys.length) {
    app.use(['/v1', '/invoice/start'], requireApiKey(apiKeys, readOnlyApiKeys));
    // The queue board (read-only itself): any key, also as HTTP Basic's password so a browser can sign in.
    app.use(BULL_BOARD_PATH, requireAdminKey([...apiKeys, ...readOnlyApiKeys]));
  }

  // After auth (a caller without a key is refused first), before every router that parses a body.
  app.use(refuseOversizedBody(deps.config.bodyLimit));

  // Routers carry full paths and are mounted at `/`: then `req.route.path` is the whole pattern,
  // which is what the duration metric is labelled with. Body parsers sit on the routes themselves
  // for the same reason (a 413 or bad JSON is still counted under its route).
  app.use(healthRouter(deps));
  // Before the runs router: /v1/runs/bulk/* is not /v1/runs/:id/*.
  app.use(bulkRouter(deps));
  app.use(runsRouter(deps));
  app.use(forkRouter(deps));
  app.use(workflowsRouter(deps));
  app.use(documentsRouter(deps));
  app.use(triggersRouter(deps));
  // The web dashboard (/, /runs/:id, /workflows, /functions, /assets/...): public pages whose
  // scripts call /v1 with the user's key; and Bull Board for queue-level inspection.
  app.use(dashboardRouter(deps.logger));
  app.use(BULL_BOARD_PATH, bullBoardCsp, bullBoardHandler(deps));
  app.use(openapiRouter(deps));
  app.use(operationsRouter(deps));

  app.use(notFoundHandler);
  app.use(errorHandler(deps.logger));
  return app;
}
