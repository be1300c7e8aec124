import {
  effectiveRetention,
  RETENTION_CLASSES,
  RETENTION_STATUSES,
  retentionPolicyOf,
  retentionSchema,
  type RetentionPolicy,
} from '@baton/workflow';
import { metrics, withTransaction, type Logger, type Pool } from '@baton/engine';
import {
  deleteRunDocuments,
  deleteRuns,
  latestRetentions,
  lockExpiredRuns,
  purgeDeliveredEvents,
  purgeDoneControlRequests,
  type RetentionRule,
} from './retention-store';
import { Periodic } from './periodic';

/**
 * The retention sweep: every `intervalMs`, deletes the finished runs past their retention (measured
 * from `finished_at`) with everything they own, and the control requests done more than a day ago.
 *
 * A workflow's retention is the `retention` block of its latest version (so shortening it applies to
 * the runs of earlier versions too), class by class over the global default (`BATON_RETENTION`); a
 * class given by neither is kept forever. Child runs follow their own workflow's retention; a parent
 * whose child is gone still reads (its step keeps the child's id, the child is a 404).
 *
 * Runs go in batches of `batchSize`, each its own short transaction locking its runs with
 * `FOR UPDATE SKIP LOCKED` (retention-store.ts): any number of replicas sweep at once, each run is
 * deleted by exactly one of them, none waits for another, and no lock is held longer than one batch.
 * A sweep stops after `maxBatches` batches; the rest waits for the next.
 *
 * Events (POST /v1/events, ctx.emit) belong to no run: they go `eventRetentionSecs`
 * (BATON_EVENT_RETENTION, default 7 days) after they were delivered, unless they are in the window of
 * a wait still parked on their name (retention-store.ts `purgeDeliveredEvents`). An event's
 * idempotency key is remembered as long as the event is kept.
 */
export interface RetentionSweeperOptions {
  pool: Pool;
  logger: Logger;
  /** BATON_RETENTION: the default of every workflow, class by class. */
  global: RetentionPolicy;
  intervalMs: number;
  /** Runs a transaction (default 500). */
  batchSize?: number;
  /** Batches a sweep (default 20). */
  maxBatches?: number;
  /** BATON_EVENT_RETENTION in seconds: events delivered longer ago are deleted; undefined keeps them. */
  eventRetentionSecs?: number;
}

export interface SweepResult {
  /** Runs deleted. */
  runs: number;
  /** Documents deleted with them. */
  documents: number;
  /** Control requests done for more than a day, deleted. */
  controlRequests: number;
  /** Delivered events past the event retention, deleted. */
  events: number;
}

const DEFAULT_BATCH_SIZE = 500;
const DEFAULT_MAX_BATCHES = 20;
/** Done control requests are kept this long (their id is the dedup key of a re-sent message). */
const CONTROL_REQUEST_KEEP_SECS = 86_400;

export class RetentionSweeper {
  private readonly periodic: Periodic;

  constructor(private readonly opts: RetentionSweeperOptions) {
    this.periodic = new Periodic(() => this.sweepOnce(), { ...opts, what: 'retention sweep' });
  }

  start(): void {
    this.periodic.start();
  }

  async stop(): Promise<void> {
    await this.periodic.stop();
  }

  async sweepOnce(): Promise<SweepResult> {
    const { pool, logger } = this.opts;
    const batchSize = this.opts.batchSize ?? DEFAULT_BATCH_SIZE;
    const maxBatches = this.opts.maxBatches ?? DEFAULT_MAX_BATCHES;
    const result: SweepResult = { runs: 0, documents: 0, controlRequests: 0, events: 0 };
    const rules = await this.rules();
    for (let batch = 0; batch < maxBatches && rules.length; batch++) {
      const deleted = await withTransaction(pool, async (client) => {
        const runs = await lockExpiredRuns(client, rules, batchSize);
        if (!runs.length) return { runs, documents: 0 };
        const ids = runs.map((r) => r.id);
        const documents = await deleteRunDocuments(client, ids);
        await deleteRuns(client, ids);
        return { runs, documents };
      });
      // Counted once committed: a rolled-back batch deleted nothing.
      for (const run of deleted.runs)
        metrics.retentionDeletedTotal.inc({ workflow: run.workflow_name, status: run.status });
      result.runs += deleted.runs.length;
      result.documents += deleted.documents;
      if (deleted.runs.length < batchSize) break;
    }
    for (let batch = 0; batch < maxBatches; batch++) {
      const purged = await purgeDoneControlRequests(pool, CONTROL_REQUEST_KEEP_SECS, batchSize);
      result.controlRequests += purged;
      if (purged < batchSize) break;
    }
    const eventSecs = this.opts.eventRetentionSecs;
    for (let batch = 0; eventSecs !== undefined && batch < maxBatches; batch++) {
      const purged = await purgeDeliveredEvents(pool, eventSecs, batchSize);
      result.events += purged;
      if (purged < batchSize) break;
    }
    if (result.runs || result.controlRequests || result.events) logger.info(result, 'retention sweep deleted');
    return result;
  }

  /** One rule per (workflow, run status) with a retention, from the latest definitions and the default. */
  private async rules(): Promise<RetentionRule[]> {
    const rules: RetentionRule[] = [];
    for (const row of await latestRetentions(this.opts.pool)) {
      // Stored definitions were checked when saved; one that no longer parses keeps only the default.
      const own = retentionSchema.safeParse(row.retention ?? undefined);
      const policy = effectiveRetention(retentionPolicyOf(own.success ? own.data : undefined), this.opts.global);
      for (const cls of RETENTION_CLASSES) {
        const seconds = policy[cls];
        if (seconds === undefined) continue;
        for (const status of RETENTION_STATUSES[cls]) rules.push({ workflow: row.workflow, status, seconds });
      }
    }
    return rules;
  }
}
