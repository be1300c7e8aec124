import type { RunStatus } from '@baton/workflow';
import type { PoolClient } from '@baton/engine';

/**
 * The SQL of the bulk pass (bulk-operations.ts) over `bulk_operations` and `bulk_operation_runs`
 * (migrations/012). A slice is one transaction: `claimOperation` locks one running operation with
 * `FOR UPDATE SKIP LOCKED` (a replica in the middle of it is skipped, never waited for), the
 * requests of its next runs are recorded in `control_requests` — the outbox the single-run cancel and
 * retry use — each run's outcome is written on its row, and `advanceOperation` moves the cursor. All
 * of it commits together, so a run is handled once whatever crashes or restarts.
 */

export type BulkKind = 'retry' | 'cancel';

export interface ClaimedOperation {
  id: string;
  kind: BulkKind;
  /** `{input?}` for a retry, `{compensate}` for a cancel. */
  params: { input?: unknown; compensate?: boolean };
  ratePerSec: number;
  /** Runs with `seq <= cursor` are handled. */
  cursor: number;
  matched: number;
}

/** The oldest running operation no other transaction holds, except those in `skip`; locked. */
export async function claimOperation(client: PoolClient, skip: string[]): Promise<ClaimedOperation | undefined> {
  const { rows } = await client.query<{
    id: string;
    kind: BulkKind;
    params: ClaimedOperation['params'] | null;
    rate_per_sec: number;
    cursor: number;
    matched: number;
  }>(
    `SELECT id, kind, params, rate_per_sec, cursor, matched FROM bulk_operations
      WHERE status = 'running' AND NOT (id = ANY($1::uuid[]))
      ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED`,
    [skip],
  );
  const row = rows[0];
  if (!row) return undefined;
  return {
    id: row.id,
    kind: row.kind,
    params: row.params ?? {},
    ratePerSec: row.rate_per_sec,
    cursor: row.cursor,
    matched: row.matched,
  };
}

/** Requests the operation recorded within the last second (its pacing window), by their stored times. */
export async function doneInLastSecond(client: PoolClient, operationId: string): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM bulk_operation_runs
      WHERE operation_id = $1 AND outcome = 'done' AND processed_at > clock_timestamp() - interval '1 second'`,
    [operationId],
  );
  return rows[0]?.n ?? 0;
}

export interface OperationRun {
  seq: number;
  runId: string;
}

/** The next runs after the cursor, in keyset order. */
export async function nextRuns(
  client: PoolClient,
  operationId: string,
  cursor: number,
  limit: number,
): Promise<OperationRun[]> {
  const { rows } = await client.query<{ seq: number; run_id: string }>(
    `SELECT seq, run_id FROM bulk_operation_runs WHERE operation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
    [operationId, cursor, limit],
  );
  return rows.map((r) => ({ seq: r.seq, runId: r.run_id }));
}

/** What recording a run's request found: no run, a request already waiting, or the request recorded. */
export interface RecordedRequest {
  /** Undefined: the run no longer exists (deleted by retention). */
  status?: RunStatus;
  /** The run's `retries`: the attempt a retry resumes. */
  retries?: number;
  /** A request of this kind is recorded for the run and not yet applied. */
  alreadyRequested: boolean;
  /** Set when this statement recorded one. */
  requestId?: string;
}

/**
 * Records a retry of the run if its status is one of `retryable` and no retry of it waits to be
 * applied, in one statement (the gateway's single retry has the same guard on status and attempt).
 */
export async function recordRetry(
  client: PoolClient,
  runId: string,
  requestId: string,
  extra: { input?: unknown },
  retryable: readonly RunStatus[],
): Promise<RecordedRequest> {
  const { rows } = await client.query<RecordRow>(
    `WITH run AS (SELECT id, status, retries FROM runs WHERE id = $1),
     waiting AS (SELECT 1 FROM control_requests WHERE run_id = $1 AND type = 'run.retry' AND done_at IS NULL LIMIT 1),
     recorded AS (
       INSERT INTO control_requests (id, run_id, type, payload)
       SELECT $2, id, 'run.retry', jsonb_build_object('attempt', retries) || $3::jsonb FROM run
        WHERE status = ANY($4) AND NOT EXISTS (SELECT 1 FROM waiting)
       RETURNING id
     )
     SELECT run.status, run.retries, EXISTS (SELECT 1 FROM waiting) AS already, (SELECT id FROM recorded) AS request_id
       FROM run`,
    [runId, requestId, JSON.stringify(extra), retryable],
  );
  return toRecorded(rows[0]);
}

/** Records a cancel of the run unless it has finished or a cancel of it waits to be applied. */
export async function recordCancel(
  client: PoolClient,
  runId: string,
  requestId: string,
  compensate: boolean,
  active: readonly RunStatus[],
): Promise<RecordedRequest> {
  const { rows } = await client.query<RecordRow>(
    `WITH run AS (SELECT id, status, retries FROM runs WHERE id = $1),
     waiting AS (SELECT 1 FROM control_requests WHERE run_id = $1 AND type = 'run.cancel' AND done_at IS NULL LIMIT 1),
     recorded AS (
       INSERT INTO control_requests (id, run_id, type, payload)
       SELECT $2, id, 'run.cancel', jsonb_build_object('compensate', $3::boolean) FROM run
        WHERE status = ANY($4) AND NOT EXISTS (SELECT 1 FROM waiting)
       RETURNING id
     )
     SELECT run.status, run.retries, EXISTS (SELECT 1 FROM waiting) AS already, (SELECT id FROM recorded) AS request_id
       FROM run`,
    [runId, requestId, compensate, active],
  );
  return toRecorded(rows[0]);
}

interface RecordRow {
  status: RunStatus;
  retries: number;
  already: boolean;
  request_id: string | null;
}

function toRecorded(row: RecordRow | undefined): RecordedRequest {
  if (!row) return { alreadyRequested: false };
  return {
    status: row.status,
    retries: row.retries,
    alreadyRequested: row.already,
    ...(row.request_id ? { requestId: row.request_id } : {}),
  };
}

export type RunOutcome = 'done' | 'skipped' | 'failed';

/** A run handled: its outcome, why (skipped, failed), its request (done), and when (pacing). */
export async function markRun(
  client: PoolClient,
  operationId: string,
  seq: number,
  outcome: RunOutcome,
  reason: string | null,
  requestId: string | null,
): Promise<void> {
  await client.query(
    `UPDATE bulk_operation_runs SET outcome = $3, reason = $4, request_id = $5, processed_at = clock_timestamp()
      WHERE operation_id = $1 AND seq = $2`,
    [operationId, seq, outcome, reason, requestId],
  );
}

/** Moves the cursor and adds the slice's counts; `finished`: every run handled, the operation succeeded. */
export async function advanceOperation(
  client: PoolClient,
  operationId: string,
  cursor: number,
  counts: Record<RunOutcome, number>,
  finished: boolean,
): Promise<void> {
  await client.query(
    `UPDATE bulk_operations
        SET cursor = $2, done = done + $3, skipped = skipped + $4, failed = failed + $5,
            status = CASE WHEN $6 THEN 'succeeded' ELSE status END,
            finished_at = CASE WHEN $6 THEN now() ELSE finished_at END,
            attempts = 0, error = NULL, updated_at = now()
      WHERE id = $1`,
    [operationId, cursor, counts.done, counts.skipped, counts.failed, finished],
  );
}

/**
 * A slice that failed as a whole (rolled back): counted, and after `maxAttempts` in a row the
 * operation ends `failed` with the error. Returns whether it did.
 */
export async function noteOperationError(
  client: Pick<PoolClient, 'query'>,
  operationId: string,
  message: string,
  maxAttempts: number,
): Promise<boolean> {
  const { rows } = await client.query<{ status: string }>(
    `UPDATE bulk_operations
        SET attempts = attempts + 1, error = $2,
            status = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE status END,
            finished_at = CASE WHEN attempts + 1 >= $3 THEN now() ELSE finished_at END,
            updated_at = now()
      WHERE id = $1 AND status = 'running'
      RETURNING status`,
    [operationId, message, maxAttempts],
  );
  return rows[0]?.status === 'failed';
}

/**
 * Deletes up to `limit` operations that ended more than `keepSecs` ago, with their runs (cascade);
 * returns how many.
 */
export async function purgeEndedOperations(
  client: Pick<PoolClient, 'query'>,
  keepSecs: number,
  limit: number,
): Promise<number> {
  const { rowCount } = await client.query(
    `DELETE FROM bulk_operations WHERE id IN (
       SELECT id FROM bulk_operations
        WHERE status <> 'running' AND finished_at < now() - make_interval(secs => $1)
        ORDER BY finished_at LIMIT $2)`,
    [keepSecs, limit],
  );
  return rowCount ?? 0;
}
