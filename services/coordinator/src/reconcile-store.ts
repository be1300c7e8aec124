import { OUTSTANDING_STEP_STATUSES } from '@baton/workflow';
import { stepJobData, type Pool, type StepJobData } from '@baton/engine';

/**
 * The reconciler's SQL: keyset pages of the rows it compares with Redis (reconciler.ts), and the job
 * data of the few that need a repair. Reads only, outside any run lock: every repair goes through the
 * coordinator, which takes the lock. Each page takes `after` (the ordering columns of the last row of
 * the previous page, as text) and `limit`; with no cursor the condition folds away (plans are custom
 * per execution).
 */

/** A keyset position: the text of the ordering columns of the last row seen. */
export type Cursor = [string, string];

export interface OutstandingRow {
  id: string;
  run_id: string;
  step_id: string;
  function_name: string;
  at: string;
}

/**
 * One page of outstanding executions past the grace period, in (updated_at, id) order, without
 * their payloads (read only for the few that need a repair). The partial index
 * step_executions_outstanding (updated_at) serves the range; ties are sorted incrementally.
 */
export async function outstandingPage(
  pool: Pool,
  graceSecs: number,
  after: Cursor | undefined,
  limit: number,
): Promise<(OutstandingRow & { cursor: Cursor })[]> {
  const params: unknown[] = [OUTSTANDING_STEP_STATUSES, graceSecs, limit, after?.[0] ?? null, after?.[1] ?? null];
  const { rows } = await pool.query<OutstandingRow>(
    `SELECT e.id, e.run_id, e.step_id, e.function_name, e.updated_at::text AS at
       FROM step_executions e
      WHERE e.status = ANY($1) AND e.updated_at < now() - make_interval(secs => $2)
        AND ($4::timestamptz IS NULL OR (e.updated_at >= $4::timestamptz AND (e.updated_at, e.id) > ($4::timestamptz, $5::uuid)))
        -- A forEach/repeat step's own execution has no job: its items do (they are checked here).
        AND NOT EXISTS (SELECT 1 FROM step_fanouts f WHERE f.execution_id = e.id)
      ORDER BY e.updated_at, e.id LIMIT $3`,
    params,
  );
  return rows.map((r) => ({ ...r, cursor: [r.at, r.id] }));
}

interface JobDataRow {
  id: string;
  run_id: string;
  step_id: string;
  kind: 'action' | 'compensation';
  function_name: string;
  input: unknown;
  retry_policy: StepJobData['retry'];
  timeout_ms: number | null;
  idempotency_key: string | null;
  workflow_name: string;
  priority: number;
}

/** The job data of executions still outstanding, by id (the same a first enqueue carries, trace aside). */
export async function outstandingJobData(pool: Pool, ids: string[]): Promise<Map<string, StepJobData>> {
  const { rows } = await pool.query<JobDataRow>(
    `SELECT e.id, e.run_id, e.step_id, e.kind, e.function_name, e.input, e.retry_policy, e.timeout_ms,
            e.metadata->>'idempotencyKey' AS idempotency_key, r.workflow_name, r.priority
       FROM step_executions e JOIN runs r ON r.id = e.run_id
      WHERE e.id = ANY($1::uuid[]) AND e.status = ANY($2)`,
    [ids, OUTSTANDING_STEP_STATUSES],
  );
  return new Map(
    rows.map((row): [string, StepJobData] => [
      row.id,
      stepJobData(
        { id: row.run_id, workflow: row.workflow_name, priority: row.priority },
        {
          id: row.id,
          stepId: row.step_id,
          kind: row.kind,
          function: row.function_name,
          input: row.input,
          retry: row.retry_policy,
          timeoutMs: row.timeout_ms ?? undefined,
          idempotencyKey: row.idempotency_key ?? undefined,
        },
      ),
    ]),
  );
}

/**
 * Active runs with nothing outstanding, in (updated_at, id) order (index runs_active). A pending
 * run with a concurrency key went through admission and waits for a slot (see heldKeysPage); a
 * pending run without one never did: its `run.start` was lost. A run's row changes only with its
 * status (a report that starts the next step leaves it alone), so an execution changed within the
 * grace period keeps the run out too: its batch may still be advancing it (a re-plan after commit).
 */
export async function idlePage(
  pool: Pool,
  graceSecs: number,
  after: Cursor | undefined,
  limit: number,
): Promise<{ id: string; cursor: Cursor }[]> {
  const params: unknown[] = [graceSecs, OUTSTANDING_STEP_STATUSES, limit, after?.[0] ?? null, after?.[1] ?? null];
  const { rows } = await pool.query<{ id: string; at: string }>(
    `SELECT r.id, r.updated_at::text AS at FROM runs r
      WHERE r.status IN ('pending', 'running', 'compensating')
        AND r.updated_at < now() - make_interval(secs => $1)
          AND ($4::timestamptz IS NULL OR (r.updated_at >= $4::timestamptz AND (r.updated_at, r.id) > ($4::timestamptz, $5::uuid)))
        AND NOT (r.status = 'pending' AND r.concurrency_key IS NOT NULL)
        AND NOT EXISTS (SELECT 1 FROM step_executions e WHERE e.run_id = r.id AND e.status = ANY($2))
        AND NOT EXISTS (SELECT 1 FROM step_executions e
                         WHERE e.run_id = r.id AND e.updated_at >= now() - make_interval(secs => $1))
      ORDER BY r.updated_at, r.id LIMIT $3`,
    params,
  );
  return rows.map((r) => ({ id: r.id, cursor: [r.at, r.id] }));
}

export interface HeldKey {
  workflow: string;
  key: string;
  /** The version of the oldest held run, whose limit applies next. */
  version: number;
  /** Runs of the key holding a slot. */
  holding: number;
  cursor: Cursor;
}

/**
 * Admission groups (`concurrency_key`: the concurrency key, else the rate key, else '') with held
 * runs (pending, admission done) of workflows not paused, with the version of the oldest held run and
 * how many runs of the group hold a slot (index runs_concurrency).
 */
export async function heldKeysPage(
  pool: Pool,
  graceSecs: number,
  after: Cursor | undefined,
  limit: number,
): Promise<HeldKey[]> {
  const params: unknown[] = [graceSecs, limit, after?.[0] ?? null, after?.[1] ?? null];
  const { rows } = await pool.query<{
    workflow_name: string;
    concurrency_key: string;
    version: number;
    holding: number;
  }>(
    `SELECT h.workflow_name, h.concurrency_key, h.version,
            (SELECT count(*)::int FROM runs r
              WHERE r.workflow_name = h.workflow_name AND r.concurrency_key = h.concurrency_key
                AND r.status IN ('running', 'compensating')) AS holding
       FROM (SELECT workflow_name, concurrency_key,
                    (array_agg(workflow_version ORDER BY created_at, id))[1] AS version
               FROM runs
              WHERE status = 'pending' AND concurrency_key IS NOT NULL
                AND updated_at < now() - make_interval(secs => $1)
                -- A paused workflow's runs stay held until it is resumed.
                AND NOT EXISTS (SELECT 1 FROM workflow_pauses p WHERE p.workflow_name = runs.workflow_name)
                  AND ($3::text IS NULL OR (workflow_name, concurrency_key) > ($3::text, $4::text))
              GROUP BY workflow_name, concurrency_key
              ORDER BY workflow_name, concurrency_key LIMIT $2) h
      ORDER BY h.workflow_name, h.concurrency_key`,
    params,
  );
  return rows.map((r) => ({
    workflow: r.workflow_name,
    key: r.concurrency_key,
    version: r.version,
    holding: r.holding,
    cursor: [r.workflow_name, r.concurrency_key],
  }));
}

/** Running runs past their deadline, in (deadline_at, id) order (index runs_deadline). */
export async function overduePage(
  pool: Pool,
  graceSecs: number,
  after: Cursor | undefined,
  limit: number,
): Promise<{ id: string; retries: number; cursor: Cursor }[]> {
  const params: unknown[] = [graceSecs, limit, after?.[0] ?? null, after?.[1] ?? null];
  const { rows } = await pool.query<{ id: string; retries: number; at: string }>(
    `SELECT id, retries, deadline_at::text AS at FROM runs
      WHERE status = 'running' AND deadline_at < now() - make_interval(secs => $1)
        AND ($3::timestamptz IS NULL OR (deadline_at >= $3::timestamptz AND (deadline_at, id) > ($3::timestamptz, $4::uuid)))
      ORDER BY deadline_at, id LIMIT $2`,
    params,
  );
  return rows.map((r) => ({ id: r.id, retries: r.retries, cursor: [r.at, r.id] }));
}

/**
 * Active child runs whose parent step (or item) has ended without them — cancelled, failed, its
 * run stopped — more than the grace period ago, in (updated_at, id) order: their cancellation was
 * lost (index runs_active). The grace counts from the parent execution's end: the child's own row
 * changes only with its status.
 */
export async function orphanedChildrenPage(
  pool: Pool,
  graceSecs: number,
  after: Cursor | undefined,
  limit: number,
): Promise<{ id: string; compensate: boolean; cursor: Cursor }[]> {
  const params: unknown[] = [graceSecs, OUTSTANDING_STEP_STATUSES, limit, after?.[0] ?? null, after?.[1] ?? null];
  const { rows } = await pool.query<{ id: string; at: string; compensate: boolean }>(
    `SELECT c.id, c.updated_at::text AS at, (p.status <> 'cancelled') AS compensate
       FROM runs c
       JOIN step_executions e ON e.id = c.parent_execution_id
       JOIN runs p ON p.id = c.parent_run_id
      WHERE c.status IN ('pending', 'running', 'compensating') AND c.parent_execution_id IS NOT NULL
        AND c.updated_at < now() - make_interval(secs => $1)
        AND ($4::timestamptz IS NULL OR (c.updated_at >= $4::timestamptz AND (c.updated_at, c.id) > ($4::timestamptz, $5::uuid)))
        AND NOT (e.status = ANY($2)) AND e.updated_at < now() - make_interval(secs => $1)
      ORDER BY c.updated_at, c.id LIMIT $3`,
    params,
  );
  return rows.map((r) => ({ id: r.id, compensate: r.compensate, cursor: [r.at, r.id] }));
}
