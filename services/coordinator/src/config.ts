import { z } from 'zod';
import { baseEnv, parseEnv, toBaseConfig, type BaseConfig } from '@baton/shared';

const coordinatorEnv = baseEnv.extend({
  /** Folder of workflow definitions saved at start (the chart mounts a ConfigMap there). */
  WORKFLOWS_DIR: z.string().min(1).optional(),
  /** Coordinator messages handled at once; runs are serialised by their row lock. */
  COORDINATOR_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(16),
  /** How often the reconciler compares PostgreSQL with Redis. */
  RECONCILE_INTERVAL_MS: z.coerce.number().int().min(100).default(10_000),
  /** Rows younger than this are left alone: their enqueue may simply not have happened yet. */
  RECONCILE_GRACE_MS: z.coerce.number().int().min(0).default(5_000),
});

export interface CoordinatorConfig extends BaseConfig {
  workflowsDir?: string;
  concurrency: number;
  reconcileIntervalMs: number;
  reconcileGraceMs: number;
}

export function loadCoordinatorConfig(env: NodeJS.ProcessEnv = process.env): CoordinatorConfig {
  const parsed = parseEnv(coordinatorEnv, env);
  return {
    ...toBaseConfig(parsed),
    ...(parsed.WORKFLOWS_DIR ? { workflowsDir: parsed.WORKFLOWS_DIR } : {}),
    concurrency: parsed.COORDINATOR_CONCURRENCY,
    reconcileIntervalMs: parsed.RECONCILE_INTERVAL_MS,
    reconcileGraceMs: parsed.RECONCILE_GRACE_MS,
  };
}
