import { Router } from 'express';
import { ErrorCode } from '@baton/workflow';
import { registry } from '@baton/engine';
import type { AppDeps } from '../deps';
import { errorBody } from '../http/errors';

/** Readiness checks must answer quickly: a probe that hangs is as bad as one that fails. */
export const READY_TIMEOUT_MS = 1_000;

async function within(ms: number, check: () => Promise<unknown>): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
    return undefined;
  } catch (err) {
    return (err as Error).message || String(err);
  } finally {
    clearTimeout(timer);
  }
}

export function healthRouter(deps: AppDeps): Router {
  const router = Router();

  // Liveness: the process answers. Dependencies are /readyz's business, so a database outage
  // does not make Kubernetes restart every gateway pod.
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    if (deps.isDraining?.()) {
      res.status(503).json(errorBody(ErrorCode.NOT_READY, 'shutting down', { shuttingDown: true }));
      return;
    }
    const [database, redis] = await Promise.all([
      within(READY_TIMEOUT_MS, () => deps.pool.query('SELECT 1')),
      // While disconnected, ioredis would queue the PING until it reconnects: answer at once instead.
      deps.redis.status === 'ready'
        ? within(READY_TIMEOUT_MS, () => deps.redis.ping())
        : Promise.resolve(`connection ${deps.redis.status}`),
    ]);
    const checks = { database: database ?? 'ok', redis: redis ?? 'ok' };
    if (database === undefined && redis === undefined) {
      res.json({ status: 'ok', checks });
      return;
    }
    const down = Object.entries({ database, redis })
      .filter(([, problem]) => problem !== undefined)
      .map(([name, problem]) => `${name} unreachable (${problem})`);
    res.status(503).json(errorBody(ErrorCode.NOT_READY, `not ready: ${down.join(' and ')}`, checks));
  });

  // With BATON_METRICS_PORT set, main.ts serves /metrics on that port and the API port has none
  // (404), so an Ingress in front of the API cannot expose it.
  if (deps.config.gatewayMetricsPort === undefined) {
    router.get('/metrics', async (_req, res) => {
      res.set('Content-Type', registry.contentType).send(await registry.metrics());
    });
  }

  return router;
}
