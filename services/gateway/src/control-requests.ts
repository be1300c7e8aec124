import crypto from 'node:crypto';
import { TERMINAL_RUN_STATUSES, type RunStatus } from '@baton/workflow';
import type { Pool } from '@baton/engine';

/**
 * Cancel and retry requests are recorded in PostgreSQL (`control_requests`) before the 202: the
 * coordinator message that follows is only a wake-up, and the coordinator's reconciler applies a
 * request whose message Redis lost. Each insert carries its own check, so a request is recorded only
 * for a run in a state that accepts it.
 */

/**
 * Records a cancel unless the run has finished, in one statement. Undefined: no such run;
 * `requestId` undefined: the run has finished (`status`), nothing was recorded.
 */
export async function recordCancelRequest(
  pool: Pool,
  runId: string,
  compensate: boolean,
): Promise<{ status: RunStatus; requestId?: string } | undefined> {
  const { rows } = await pool.query(
    `WITH run AS (SELECT id, status FROM runs WHERE id = $1),
     recorded AS (
       INSERT INTO control_requests (id, run_id, type, payload)
       SELECT $2, id, 'run.cancel', $3::jsonb FROM run WHERE NOT (status = ANY($4))
       RETURNING id
     )
     SELECT run.status, (SELECT id FROM recorded) AS request_id FROM run`,
    [runId, crypto.randomUUID(), JSON.stringify({ compensate }), TERMINAL_RUN_STATUSES],
  );
  const row = rows[0];
  if (!row) return undefined;
  return { status: row.status, ...(row.request_id ? { requestId: row.request_id } : {}) };
}

export interface RetryRequest {
  /** The run's `retries` when the request was checked: the retry resumes that attempt only. */
  attempt: number;
  input?: unknown;
  stepId?: string;
}

/**
 * Records a retry if the run is still in one of `retryable` at the attempt the caller checked, in one
 * statement; the request id, or undefined when the run changed since (nothing recorded).
 */
export async function recordRetryRequest(
  pool: Pool,
  runId: string,
  retryable: readonly RunStatus[],
  request: RetryRequest,
): Promise<string | undefined> {
  const { rows } = await pool.query(
    `INSERT INTO control_requests (id, run_id, type, payload)
     SELECT $2, id, 'run.retry', $3::jsonb FROM runs WHERE id = $1 AND status = ANY($4) AND retries = $5
     RETURNING id`,
    [runId, crypto.randomUUID(), JSON.stringify(request), retryable, request.attempt],
  );
  return rows[0]?.id;
}
