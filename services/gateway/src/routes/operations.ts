import { Queue } from 'bullmq';
import { Router } from 'express';
import { functionQueueName, listTargets, toHttpServiceDiscovery, listLatestDefinitions } from '@baton/shared';
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
      queue = new Queue(functionQueueName(fn), { connection: redis, prefix: config.queuePrefix });
      queues.set(fn, queue);
    }
    return queue;
  };

  router.get('/v1/functions', async (_req, res) => {
    const [{ rows }, definitions] = await Promise.all([
      pool.query<{ name: string; last_seen_at: Date }>('SELECT name, last_seen_at FROM known_functions'),
      listLatestDefinitions(pool),
    ]);
    const lastSeen = new Map(rows.map((r) => [r.name, r.last_seen_at]));
    const names = new Set(lastSeen.keys());
    for (const d of definitions) {
      for (const step of d.definition.steps) {
        if (!step.function.startsWith('baton.')) names.add(step.function);
        if (step.compensate) names.add(step.compensate.function);
      }
    }
    const replicas = deps.deployments ? await deps.deployments.replicasByFunction().catch(() => undefined) : undefined;
    const functions = await Promise.all(
      [...names].sort().map(async (name) => {
        const queue = queueOf(name);
        const [counts, workers] = await Promise.all([queue.getJobCounts(...COUNTED_STATES), queue.getWorkers()]);
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
      }),
    );
    res.json({ functions, kubernetes: deps.deployments !== undefined });
  });

  router.get('/v1/prometheus/targets', async (_req, res) => {
    res.json(toHttpServiceDiscovery(await listTargets(redis, config.queuePrefix)));
  });

  return router;
}
