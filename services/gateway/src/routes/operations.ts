import { Queue } from 'bullmq';
import express, { Router } from 'express';
import { ErrorCode } from '@baton/workflow';
import {
  applyFunctionPause,
  boundedRedisCall,
  functionControls,
  functionQueueName,
  listTargets,
  recordFunctionPaused,
  toHttpServiceDiscovery,
  knownFunctions,
  type FunctionControl,
} from '@baton/engine';
import { functionPauseBody } from '../api/schemas';
import type { AppDeps } from '../deps';
import { ApiError } from '../http/errors';
import { jsonBody, parseOrThrow } from '../http/validation';

const COUNTED_STATES = ['waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed'] as const;

/** What GET /v1/functions and the pause routes say of a function's pause (PostgreSQL's, the truth). */
function pauseFields(control: FunctionControl | undefined): {
  paused: boolean;
  pausedAt: string | null;
  pauseReason: string | null;
} {
  return {
    paused: control?.paused ?? false,
    pausedAt: control?.pausedAt?.toISOString() ?? null,
    pauseReason: control?.reason ?? null,
  };
}

/**
 * `GET /v1/functions` (queues, workers, replicas, pause), `POST /v1/functions/:name/pause|resume`
 * and `GET /v1/prometheus/targets` (HTTP SD).
 */
export function operationsRouter(deps: AppDeps): Router {
  const { pool, redis, config } = deps;
  const router = Router();
  const queues = new Map<string, Queue>();
  const queueOf = (fn: string): Queue => {
    let queue = queues.get(fn);
    if (!queue) {
      const created = new Queue(functionQueueName(fn), { connection: redis, prefix: config.queuePrefix });
      // Connection errors are logged once, by main.ts's listener on the connection itself.
      created.on('error', () => undefined);
      // A queue created while Redis did not answer never becomes usable (BullMQ's start-up check
      // failed for good): forget it, the next request makes a new one.
      created.waitUntilReady().catch(() => {
        if (queues.get(fn) === created) queues.delete(fn);
      });
      queues.set(fn, created);
      queue = created;
    }
    return queue;
  };

  router.get('/v1/functions', async (_req, res) => {
    const [known, controls] = await Promise.all([knownFunctions(pool), functionControls(pool)]);
    const lastSeen = new Map(known.map((f) => [f.name, f.lastSeenAt]));
    const names = new Set(lastSeen.keys());
    // Replicas only add to the page: a Kubernetes API that fails (missing RBAC, an API-server
    // outage) leaves them null rather than fail the listing, but is logged, so that it is not
    // mistaken for functions without a Deployment.
    const replicas = deps.deployments
      ? await deps.deployments.replicasByFunction().catch((err: unknown) => {
          res.locals.log.warn({ err }, 'reading Deployment replicas failed; replicas shown as null');
          return undefined;
        })
      : undefined;
    // Job counts and workers come from Redis: bounded as a whole, 503 REDIS_UNAVAILABLE when it does not answer.
    const fromRedis = await boundedRedisCall(redis, 'reading the function queues', () =>
      Promise.all(
        [...names].sort().map(async (name) => {
          const queue = queueOf(name);
          const [counts, workers] = await Promise.all([queue.getJobCounts(...COUNTED_STATES), queue.getWorkers()]);
          return { name, counts, workers };
        }),
      ),
    );
    const functions = fromRedis.map(({ name, counts, workers }) => {
      const r = replicas?.get(name);
      return {
        name,
        ...pauseFields(controls.get(name)),
        queue: functionQueueName(name),
        jobs: Object.fromEntries(COUNTED_STATES.map((s) => [s, counts[s] ?? 0])),
        workers: workers.length,
        lastSeenAt: lastSeen.get(name)?.toISOString() ?? null,
        // Outside a cluster (or before a Deployment exists) the replica fields are null.
        replicas: r ? { desired: r.desired, ready: r.ready } : null,
      };
    });
    res.json({ functions, kubernetes: deps.deployments !== undefined });
  });

  // Pause and resume: PostgreSQL first (the truth, re-applied by the coordinator after a Redis
  // wipe), then the queue itself. If Redis does not answer, the stored state stands and the
  // reconciler applies it within a pass: logged, not an error.
  const json = express.json({ limit: config.bodyLimit });
  const setPaused = async (
    req: express.Request,
    res: express.Response,
    paused: boolean,
    reason: string | undefined,
  ): Promise<void> => {
    const name = req.params.name as string;
    if (!(await knownFunctions(pool)).some((f) => f.name === name)) {
      throw new ApiError(
        404,
        ErrorCode.NOT_FOUND,
        `function '${name}' not found: no worker has reported it and no stored workflow names it`,
      );
    }
    const control = await recordFunctionPaused(pool, name, paused, reason);
    await boundedRedisCall(redis, paused ? 'pausing the queue' : 'resuming the queue', () =>
      applyFunctionPause({ connection: redis, prefix: config.queuePrefix }, name, paused),
    ).catch((err: unknown) =>
      res.locals.log.warn({ err, function: name }, 'queue not updated now; the coordinator applies the stored state'),
    );
    res.locals.log.info({ function: name, paused, reason }, paused ? 'function paused' : 'function resumed');
    res.json({ name, ...pauseFields(control) });
  };

  router.post('/v1/functions/:name/pause', json, async (req, res) => {
    const body = parseOrThrow(functionPauseBody, jsonBody(req), {
      code: ErrorCode.INVALID_REQUEST,
      what: 'request body',
    });
    await setPaused(req, res, true, body.reason);
  });

  router.post('/v1/functions/:name/resume', async (req, res) => {
    await setPaused(req, res, false, undefined);
  });

  router.get('/v1/prometheus/targets', async (_req, res) => {
    const targets = await boundedRedisCall(redis, 'reading the metrics targets', () =>
      listTargets(redis, config.queuePrefix),
    );
    res.json(toHttpServiceDiscovery(targets));
  });

  return router;
}
