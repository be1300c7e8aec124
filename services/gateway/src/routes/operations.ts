import { Queue } from 'bullmq';
import { Router } from 'express';
import {
  boundedRedisCall,
  functionQueueName,
  listTargets,
  toHttpServiceDiscovery,
  knownFunctions,
} from '@baton/shared';
import type { AppDeps } from '../deps';

const COUNTED_STATES = ['waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed'] as const;

/** `GET /v1/functions` (queues, workers, replicas) and `GET /v1/prometheus/targets` (HTTP SD). */
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
    const known = await knownFunctions(pool);
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

  router.get('/v1/prometheus/targets', async (_req, res) => {
    const targets = await boundedRedisCall(redis, 'reading the metrics targets', () =>
      listTargets(redis, config.queuePrefix),
    );
    res.json(toHttpServiceDiscovery(targets));
  });

  return router;
}
