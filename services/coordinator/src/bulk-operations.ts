import crypto from 'node:crypto';
import { ACTIVE_RUN_STATUSES, RETRYABLE_RUN_STATUSES } from '@baton/workflow';
import {
  withTransaction,
  type CoordinatorClient,
  type Logger,
  type Pool,
  type PoolClient,
  type RunControlMessage,
} from '@baton/engine';
import {
  advanceOperation,
  claimOperation,
  doneInLastSecond,
  markRun,
  nextRuns,
  noteOperationError,
  purgeEndedOperations,
  recordCancel,
  recordRetry,
  type ClaimedOperation,
  type RecordedRequest,
  type RunOutcome,
} from './bulk-store';
import { Periodic } from './periodic';

/**
 * Bulk operations (`POST /v1/runs/bulk/retry|cancel`), carried out by the coordinator: a pass every
 * `intervalMs` (a `Periodic`) takes each running operation in turn, in a transaction of its own
 * (bulk-store.ts: claimed with `FOR UPDATE SKIP LOCKED`), and handles its next runs in keyset order
 * over the run ids the gateway snapshotted when it created the operation:
 *
 * - a run still retryable (cancellable) gets a `run.retry` (`run.cancel`) request in
 *   `control_requests`, exactly what `POST /v1/runs/:id/retry` (`/cancel`) records, so it is applied by
 *   the same code (run-control.ts) under the run's lock, once; after commit the coordinator is woken
 *   for it, and the control outbox's re-drive applies it if that wake-up is lost;
 * - a run that is no longer (it finished, was retried, was deleted) is `skipped`, with the reason;
 * - a run whose request cannot be written (an error, rolled back to its savepoint) is `failed`.
 *
 * Pacing: at most `ratePerSec` requests in any one second, counted from the stored `processed_at`
 * of the operation's recorded requests (so a restarted or another replica continues the same
 * window), and at most a pass's share (`ratePerSec × intervalMs`) a pass, so they spread over the
 * second. Skipped runs cost nothing downstream and do not count.
 *
 * The cursor moves in the transaction that records the requests: a coordinator killed mid-slice
 * rolls the slice back, and the next pass (here or on another replica) does it again, once.
 */
export interface BulkOperationsOptions {
  pool: Pool;
  coordinator: CoordinatorClient;
  logger: Logger;
  intervalMs: number;
  /** Most runs looked at in one operation's slice (default 500). */
  maxRunsPerSlice?: number;
}

export interface BulkPassResult {
  /** Operations given a slice. */
  operations: number;
  requests: number;
  skipped: number;
  failed: number;
  /** Ended operations deleted (past BULK_KEEP_SECS). */
  purged: number;
}

/** Ended operations (with their runs) are kept this long, then deleted by the pass. */
export const BULK_KEEP_SECS = 30 * 86_400;
/** How often a pass also deletes ended operations past BULK_KEEP_SECS, and how many at most. */
const PURGE_EVERY_MS = 60_000;
const PURGE_LIMIT = 100;

/** A slice that fails this many times in a row fails its operation. */
export const MAX_SLICE_FAILURES = 10;

const DEFAULT_MAX_RUNS_PER_SLICE = 500;

/**
 * How many requests an operation may record now: what is left of `ratePerSec` in the last second,
 * and no more than its share of one pass (at least 1), so that a second's requests are spread over
 * its passes. Pure.
 */
export function sliceBudget(ratePerSec: number, doneInLastSecond: number, intervalMs: number): number {
  const left = ratePerSec - doneInLastSecond;
  const share = Math.max(1, Math.ceil((ratePerSec * intervalMs) / 1000));
  return Math.max(0, Math.min(left, share));
}

/** Why a run was not retried or cancelled (undefined: its request was recorded). */
export function skipReason(kind: ClaimedOperation['kind'], found: RecordedRequest): string | undefined {
  if (found.requestId) return undefined;
  if (found.status === undefined) return 'the run no longer exists';
  if (found.alreadyRequested) return `a ${kind} of the run is already requested`;
  return kind === 'retry'
    ? `the run is ${found.status}: only ${RETRYABLE_RUN_STATUSES.join(', ')} runs can be retried`
    : `the run is ${found.status}: nothing to cancel`;
}

export class BulkOperations {
  private readonly periodic: Periodic;
  private lastPurge = 0;

  constructor(private readonly opts: BulkOperationsOptions) {
    this.periodic = new Periodic(() => this.passOnce(), { ...opts, what: 'bulk operations pass' });
  }

  start(): void {
    this.periodic.start();
  }

  async stop(): Promise<void> {
    await this.periodic.stop();
  }

  /**
   * One slice of every running operation (each once), oldest operation first; once a minute, ended
   * operations past BULK_KEEP_SECS are deleted.
   */
  async passOnce(): Promise<BulkPassResult> {
    const { pool, logger } = this.opts;
    const result: BulkPassResult = { operations: 0, requests: 0, skipped: 0, failed: 0, purged: 0 };
    if (Date.now() - this.lastPurge >= PURGE_EVERY_MS) {
      this.lastPurge = Date.now();
      result.purged = await purgeEndedOperations(pool, BULK_KEEP_SECS, PURGE_LIMIT);
      if (result.purged) logger.info({ purged: result.purged }, 'ended bulk operations deleted');
    }
    const seen: string[] = [];
    for (;;) {
      let claimed: string | undefined;
      let slice: Slice | undefined;
      try {
        slice = await withTransaction(pool, async (client) => {
          const op = await claimOperation(client, seen);
          if (!op) return undefined;
          claimed = op.id;
          seen.push(op.id);
          return this.slice(client, op);
        });
      } catch (err) {
        if (claimed === undefined) throw err;
        const message = (err as Error).message ?? String(err);
        const gaveUp = await noteOperationError(pool, claimed, message, MAX_SLICE_FAILURES).catch(() => false);
        logger.warn(
          { err, operationId: claimed },
          gaveUp ? 'bulk operation failed: its slices kept failing' : 'bulk operation slice failed',
        );
        continue;
      }
      if (!slice) break;
      result.operations += 1;
      result.requests += slice.counts.done;
      result.skipped += slice.counts.skipped;
      result.failed += slice.counts.failed;
      if (slice.finished) logger.info({ operationId: slice.id }, 'bulk operation finished');
      await this.wake(slice.wakeups);
    }
    return result;
  }

  /** The operation's next runs, as many as its pace allows now. */
  private async slice(client: PoolClient, op: ClaimedOperation): Promise<Slice> {
    const counts: Record<RunOutcome, number> = { done: 0, skipped: 0, failed: 0 };
    const wakeups: RunControlMessage[] = [];
    let budget = sliceBudget(op.ratePerSec, await doneInLastSecond(client, op.id), this.opts.intervalMs);
    let cursor = op.cursor;
    const limit = this.opts.maxRunsPerSlice ?? DEFAULT_MAX_RUNS_PER_SLICE;
    const runs = budget > 0 ? await nextRuns(client, op.id, cursor, limit) : [];
    for (const run of runs) {
      if (budget <= 0) break;
      const requestId = crypto.randomUUID();
      await client.query('SAVEPOINT bulk_run');
      let outcome: RunOutcome;
      let reason: string | null;
      try {
        const found =
          op.kind === 'retry'
            ? await recordRetry(
                client,
                run.runId,
                requestId,
                op.params.input === undefined ? {} : { input: op.params.input },
                RETRYABLE_RUN_STATUSES,
              )
            : await recordCancel(client, run.runId, requestId, op.params.compensate === true, ACTIVE_RUN_STATUSES);
        reason = skipReason(op.kind, found) ?? null;
        outcome = reason === null ? 'done' : 'skipped';
        if (outcome === 'done') wakeups.push(wakeup(op, run.runId, requestId, found.retries ?? 0));
        await client.query('RELEASE SAVEPOINT bulk_run');
      } catch (err) {
        await client.query('ROLLBACK TO SAVEPOINT bulk_run');
        outcome = 'failed';
        reason = (err as Error).message ?? String(err);
        this.opts.logger.warn({ err, operationId: op.id, runId: run.runId }, 'bulk operation: run failed');
      }
      await markRun(client, op.id, run.seq, outcome, reason, outcome === 'done' ? requestId : null);
      counts[outcome] += 1;
      if (outcome === 'done') budget -= 1;
      cursor = run.seq;
    }
    // Runs are numbered 1..matched: the last one handled ends the operation.
    const finished = cursor >= op.matched;
    await advanceOperation(client, op.id, cursor, counts, finished);
    return { id: op.id, counts, finished, wakeups };
  }

  /** Best effort, after commit: a lost wake-up is applied by the control outbox's re-drive. */
  private async wake(messages: RunControlMessage[]): Promise<void> {
    await Promise.all(
      messages.map((message) =>
        this.opts.coordinator
          .send(message)
          .catch((err: unknown) =>
            this.opts.logger.warn(
              { err, runId: message.runId },
              'coordinator not woken; the reconciler will apply the request',
            ),
          ),
      ),
    );
  }
}

interface Slice {
  id: string;
  counts: Record<RunOutcome, number>;
  finished: boolean;
  wakeups: RunControlMessage[];
}

function wakeup(op: ClaimedOperation, runId: string, requestId: string, retries: number): RunControlMessage {
  return op.kind === 'retry'
    ? {
        type: 'run.retry',
        runId,
        attempt: retries,
        ...(op.params.input === undefined ? {} : { input: op.params.input }),
        requestId,
      }
    : { type: 'run.cancel', runId, compensate: op.params.compensate === true, requestId };
}
