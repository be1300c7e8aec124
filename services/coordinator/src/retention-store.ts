import { OUTSTANDING_STEP_STATUSES, WAIT_FOR_EVENT_FUNCTION } from '@baton/workflow';
import type { Pool, PoolClient } from '@baton/engine';

/**
 * The retention sweep's SQL (retention.ts). A batch is one transaction: `lockExpiredRuns` locks up to
 * `limit` finished runs past their retention with `FOR UPDATE SKIP LOCKED` (a replica sweeping at
 * the same time skips them and takes others; the coordinator applying a retry to one of them holds
 * its lock, so that run is skipped too), then `deleteRunDocuments` and `deleteRuns` delete them.
 * Everything else a run owns goes with its row by `ON DELETE CASCADE`: step executions (items
 * included) and through them their attempts and step_fanouts, run_logs, control_requests.
 */

/** A workflow's `retention` block as its latest version has it (durations as written). */
export interface WorkflowRetentionRow {
  workflow: string;
  retention: unknown;
}

/** Every workflow with the `retention` of its latest version (NULL: none given). */
export async function latestRetentions(pool: Pick<Pool, 'query'>): Promise<WorkflowRetentionRow[]> {
  const { rows } = await pool.query<WorkflowRetentionRow>(
    `SELECT DISTINCT ON (name) name AS workflow, spec->'retention' AS retention
       FROM workflow_definitions ORDER BY name, version DESC`,
  );
  return rows;
}

/** One (workflow, run status) kept for `seconds` after it finished. */
export interface RetentionRule {
  workflow: string;
  status: string;
  seconds: number;
}

export interface ExpiredRun {
  id: string;
  workflow_name: string;
  status: string;
}

/**
 * Locks up to `limit` finished runs past their rule, oldest first within each rule (index
 * runs_finished: one range per rule). A child run whose awaiting execution is still outstanding is
 * left alone: the reconciler may still have to re-send its end to the parent.
 */
export async function lockExpiredRuns(
  client: Pick<PoolClient, 'query'>,
  rules: RetentionRule[],
  limit: number,
): Promise<ExpiredRun[]> {
  if (!rules.length) return [];
  const { rows } = await client.query<ExpiredRun>(
    `SELECT r.id, r.workflow_name, r.status
       FROM unnest($1::text[], $2::text[], $3::int[]) AS p(workflow, status, secs)
       CROSS JOIN LATERAL (
         SELECT id, workflow_name, status FROM runs
          WHERE workflow_name = p.workflow AND status = p.status AND finished_at IS NOT NULL
            AND finished_at < now() - make_interval(secs => p.secs)
            AND (parent_execution_id IS NULL OR NOT EXISTS (
                  SELECT 1 FROM step_executions e WHERE e.id = runs.parent_execution_id AND e.status = ANY($5)))
          ORDER BY finished_at LIMIT $4
          FOR UPDATE SKIP LOCKED) r
      LIMIT $4`,
    [
      rules.map((r) => r.workflow),
      rules.map((r) => r.status),
      rules.map((r) => r.seconds),
      limit,
      [...OUTSTANDING_STEP_STATUSES, 'pending'],
    ],
  );
  return rows;
}

/** The documents the runs' steps stored (no foreign key: a document may outlive a failed insert). */
export async function deleteRunDocuments(client: Pick<PoolClient, 'query'>, runIds: string[]): Promise<number> {
  const { rowCount } = await client.query('DELETE FROM documents WHERE run_id = ANY($1::uuid[])', [runIds]);
  return rowCount ?? 0;
}

/** The runs, and by cascade every row they own. Returns how many were deleted. */
export async function deleteRuns(client: Pick<PoolClient, 'query'>, runIds: string[]): Promise<number> {
  const { rowCount } = await client.query('DELETE FROM runs WHERE id = ANY($1::uuid[])', [runIds]);
  return rowCount ?? 0;
}

/**
 * Up to `limit` control requests done more than `olderThanSecs` ago (index control_requests_done),
 * skipping rows another replica is deleting. Returns how many were deleted.
 */
export async function purgeDoneControlRequests(
  pool: Pick<Pool, 'query'>,
  olderThanSecs: number,
  limit: number,
): Promise<number> {
  const { rowCount } = await pool.query(
    `DELETE FROM control_requests WHERE id IN (
       SELECT id FROM control_requests
        WHERE done_at IS NOT NULL AND done_at < now() - make_interval(secs => $1)
        ORDER BY done_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
    [olderThanSecs, limit],
  );
  return rowCount ?? 0;
}

/**
 * Up to `limit` events delivered (offered to the waits parked on their name) more than
 * `olderThanSecs` ago, oldest first (index events_delivered), skipping rows another replica is
 * deleting. An event still inside the window of a parked wait — a `waitForEvent` execution running
 * on its name, queued at or before it (the rule of control-store.ts `storedEventsFor`) — is kept
 * whatever its age, so no wait can miss an event it could still match. Returns how many were deleted.
 */
export async function purgeDeliveredEvents(
  pool: Pick<Pool, 'query'>,
  olderThanSecs: number,
  limit: number,
): Promise<number> {
  const { rowCount } = await pool.query(
    `DELETE FROM events WHERE id IN (
       SELECT ev.id FROM events ev
        WHERE ev.delivered_at < now() - make_interval(secs => $1)
          AND NOT EXISTS (
                SELECT 1 FROM step_executions e
                 WHERE e.function_name = $3 AND e.status = 'running' AND e.superseded_at IS NULL
                   AND e.input->>'name' = ev.name AND e.queued_at <= ev.created_at)
        ORDER BY ev.delivered_at LIMIT $2 FOR UPDATE OF ev SKIP LOCKED)`,
    [olderThanSecs, limit, WAIT_FOR_EVENT_FUNCTION],
  );
  return rowCount ?? 0;
}
