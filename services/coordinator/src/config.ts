import { z } from 'zod';
import { DEFAULT_FOREACH_MAX_ITEMS, parseDuration, parseRetentionEnv, type RetentionPolicy } from '@baton/workflow';
import { baseEnv, outputLimitEnv, parseEnv, toBaseConfig, type BaseConfig } from '@baton/engine';
import { DEFAULT_MAX_CHILD_DEPTH } from './child-runs';
import { INBOX_BATCH_SIZE, INBOX_CLAIM_IDLE_MS, INBOX_LOOPS } from './inbox-consumer';

const coordinatorEnv = baseEnv.extend({
  /** Folder of workflow definitions saved at start (the chart mounts a ConfigMap there). */
  WORKFLOWS_DIR: z.string().min(1).optional(),
  /** Coordinator messages handled at once; runs are serialised by their row lock. */
  COORDINATOR_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(16),
  /** Inbox reading loops: each applies its own batches (one can read while another commits). */
  COORDINATOR_INBOX_LOOPS: z.coerce.number().int().min(1).max(16).default(INBOX_LOOPS),
  /** Most inbox messages applied in one transaction. */
  COORDINATOR_INBOX_BATCH: z.coerce.number().int().min(1).max(1000).default(INBOX_BATCH_SIZE),
  /**
   * Inbox shards read besides BATON_INBOX_SHARDS' (0..n-1), while the shards of a larger former
   * count are drained (docs/SCALING.md). 0: only BATON_INBOX_SHARDS'.
   */
  BATON_INBOX_DRAIN_SHARDS: z.coerce.number().int().min(0).max(1024).default(0),
  /** An inbox entry read by a coordinator that died unacknowledged is taken over after this long. */
  COORDINATOR_INBOX_CLAIM_MS: z.coerce.number().int().min(100).default(INBOX_CLAIM_IDLE_MS),
  /** How often the reconciler compares PostgreSQL with Redis. */
  RECONCILE_INTERVAL_MS: z.coerce.number().int().min(100).default(10_000),
  /** Rows younger than this are left alone: their enqueue may simply not have happened yet. */
  RECONCILE_GRACE_MS: z.coerce.number().int().min(0).default(5_000),
  /** Largest step output (with its emitted events) stored; larger fails the step with OUTPUT_TOO_LARGE. */
  ...outputLimitEnv.shape,
  /** Most items a forEach list may have; more fails the step with FOREACH_TOO_MANY_ITEMS. */
  BATON_FOREACH_MAX_ITEMS: z.coerce.number().int().min(1).max(1_000_000).default(DEFAULT_FOREACH_MAX_ITEMS),
  /** Deepest child run (a top-level run is 0); deeper fails the step with CHILD_DEPTH_EXCEEDED. */
  BATON_MAX_CHILD_DEPTH: z.coerce.number().int().min(0).max(1_000).default(DEFAULT_MAX_CHILD_DEPTH),
  /** Default retention of finished runs (`succeeded=7d,failed=30d,cancelled=30d`); empty: keep forever. */
  BATON_RETENTION: z
    .string()
    .default('')
    .superRefine((text, ctx) => {
      try {
        parseRetentionEnv(text);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
      }
    }),
  /** How often the retention sweep deletes finished runs past their retention. */
  BATON_RETENTION_SWEEP_MS: z.coerce.number().int().min(100).default(60_000),
  /** How often the bulk pass hands running bulk operations their next slice (pacing is per second). */
  BATON_BULK_INTERVAL_MS: z.coerce.number().int().min(10).max(1000).default(200),
  /** Events delivered longer ago than this are deleted by the sweep (`forever`: never). */
  BATON_EVENT_RETENTION: z
    .string()
    .default('7d')
    .refine(
      (text) => text.trim() === 'forever' || parseDuration(text) !== undefined,
      "a duration like 30s, 15m, 12h or 7d (at most 3650d), or 'forever'",
    ),
});

export interface CoordinatorConfig extends BaseConfig {
  workflowsDir?: string;
  concurrency: number;
  inboxLoops: number;
  inboxBatch: number;
  inboxClaimMs: number;
  /** Inbox shards read: max(BATON_INBOX_SHARDS, BATON_INBOX_DRAIN_SHARDS). */
  inboxReadShards: number;
  reconcileIntervalMs: number;
  reconcileGraceMs: number;
  maxOutputBytes: number;
  maxForEachItems: number;
  maxChildDepth: number;
  retention: RetentionPolicy;
  retentionSweepMs: number;
  bulkIntervalMs: number;
  /** BATON_EVENT_RETENTION in seconds; undefined: events are kept forever. */
  eventRetentionSecs?: number;
}

export function loadCoordinatorConfig(env: NodeJS.ProcessEnv = process.env): CoordinatorConfig {
  const parsed = parseEnv(coordinatorEnv, env);
  return {
    ...toBaseConfig(parsed),
    ...(parsed.WORKFLOWS_DIR ? { workflowsDir: parsed.WORKFLOWS_DIR } : {}),
    concurrency: parsed.COORDINATOR_CONCURRENCY,
    inboxLoops: parsed.COORDINATOR_INBOX_LOOPS,
    inboxBatch: parsed.COORDINATOR_INBOX_BATCH,
    inboxClaimMs: parsed.COORDINATOR_INBOX_CLAIM_MS,
    inboxReadShards: Math.max(parsed.BATON_INBOX_SHARDS, parsed.BATON_INBOX_DRAIN_SHARDS),
    reconcileIntervalMs: parsed.RECONCILE_INTERVAL_MS,
    reconcileGraceMs: parsed.RECONCILE_GRACE_MS,
    maxOutputBytes: parsed.BATON_MAX_OUTPUT_BYTES,
    maxForEachItems: parsed.BATON_FOREACH_MAX_ITEMS,
    maxChildDepth: parsed.BATON_MAX_CHILD_DEPTH,
    retention: parseRetentionEnv(parsed.BATON_RETENTION),
    retentionSweepMs: parsed.BATON_RETENTION_SWEEP_MS,
    bulkIntervalMs: parsed.BATON_BULK_INTERVAL_MS,
    ...(parsed.BATON_EVENT_RETENTION.trim() === 'forever'
      ? {}
      : { eventRetentionSecs: parseDuration(parsed.BATON_EVENT_RETENTION) }),
  };
}
