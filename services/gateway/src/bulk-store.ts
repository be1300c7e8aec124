import type { RunStatus } from '@baton/workflow';
import type { Pool } from '@baton/engine';

/**
 * The gateway's SQL of bulk operations (migrations/012): counting the runs a filter matches (dry
 * run), creating an operation with the snapshot of the runs it matched (one statement), reading
 * operations with their progress, and cancelling one. The coordinator carries them out
 * (services/coordinator/src/bulk-operations.ts).
 */

export type BulkKind = 'retry' | 'cancel';

export interface BulkFilter {
  workflow?: string;
  /** Resolved by the route: the statuses given, or every status the operation applies to. */
  statuses: readonly RunStatus[];
  tags?: Record<string, string>;
  createdAfter?: string;
  createdBefore?: string;
}

/** Most runs one operation may match; a broader filter is refused (narrow it, or split it by time). */
export const BULK_MAX_RUNS = 100_000;

/**
 * The matching runs, top-level only (a child run is retried or cancelled through its parent), in the
 * order they are handled: oldest first. Every parameter is bound; an absent one disables its test.
 */
const MATCHING = `SELECT id, created_at FROM runs
  WHERE parent_run_id IS NULL
    AND ($1::text IS NULL OR workflow_name = $1)
    AND status = ANY($2::text[])
    AND tags @> $3::jsonb
    AND ($4::timestamptz IS NULL OR created_at > $4)
    AND ($5::timestamptz IS NULL OR created_at < $5)`;

const filterParams = (f: BulkFilter): unknown[] => [
  f.workflow ?? null,
  f.statuses,
  JSON.stringify(f.tags ?? {}),
  f.createdAfter ?? null,
  f.createdBefore ?? null,
];

/** How many runs the filter matches now (a dry run): nothing is stored. */
export async function countMatching(pool: Pool, filter: BulkFilter): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (${MATCHING}) m`,
    filterParams(filter),
  );
  return rows[0]?.n ?? 0;
}

export interface NewOperation {
  id: string;
  kind: BulkKind;
  /** The filter as the client gave it (shown back). */
  shownFilter: Record<string, unknown>;
  filter: BulkFilter;
  params: Record<string, unknown>;
  ratePerSec: number;
}

/**
 * Creates the operation and its snapshot of matched runs in one statement: `{matched}`, or
 * `{tooMany}` with the count when the filter matches more than BULK_MAX_RUNS (nothing stored).
 */
export async function createOperation(pool: Pool, op: NewOperation): Promise<{ matched: number; created: boolean }> {
  const { rows } = await pool.query<{ matched: number; created: boolean }>(
    `WITH matched AS (
       SELECT id, row_number() OVER (ORDER BY created_at, id) AS seq FROM (${MATCHING}) m
     ),
     total AS (SELECT count(*)::int AS n FROM matched),
     op AS (
       INSERT INTO bulk_operations (id, kind, filter, params, rate_per_sec, matched)
       SELECT $6, $7, $8::jsonb, $9::jsonb, $10, n FROM total WHERE n <= $11
       RETURNING id
     ),
     runs AS (
       INSERT INTO bulk_operation_runs (operation_id, seq, run_id)
       SELECT op.id, matched.seq, matched.id FROM op CROSS JOIN matched
     )
     SELECT (SELECT n FROM total) AS matched, EXISTS (SELECT 1 FROM op) AS created`,
    [
      ...filterParams(op.filter),
      op.id,
      op.kind,
      JSON.stringify(op.shownFilter),
      JSON.stringify(op.params),
      op.ratePerSec,
      BULK_MAX_RUNS,
    ],
  );
  return { matched: rows[0]?.matched ?? 0, created: rows[0]?.created ?? false };
}

export interface OperationView {
  id: string;
  kind: BulkKind;
  status: 'running' | 'succeeded' | 'cancelled' | 'failed';
  filter: Record<string, unknown>;
  /** `{input?}` of a retry, `{compensate}` of a cancel. */
  params: Record<string, unknown>;
  ratePerSec: number;
  matched: number;
  /** Requests recorded (each run then retried or cancelled by the coordinator). */
  done: number;
  skipped: number;
  failed: number;
  /** Runs not handled yet. */
  remaining: number;
  error: string | null;
  createdAt: string;
  updatedAt: string;
  /** When the first and the latest run were handled (null before). */
  firstProcessedAt: string | null;
  lastProcessedAt: string | null;
  finishedAt: string | null;
}

export interface OperationRunView {
  runId: string;
  outcome: 'skipped' | 'failed';
  reason: string;
  processedAt: string;
}

interface OperationRow {
  id: string;
  kind: BulkKind;
  status: OperationView['status'];
  filter: Record<string, unknown>;
  params: Record<string, unknown>;
  rate_per_sec: number;
  matched: number;
  done: number;
  skipped: number;
  failed: number;
  cursor: number;
  error: string | null;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
  first_processed_at: Date | null;
  last_processed_at: Date | null;
}

const OPERATION_COLUMNS = `o.id, o.kind, o.status, o.filter, o.params, o.rate_per_sec, o.matched, o.done, o.skipped,
  o.failed, o.cursor, o.error, o.created_at, o.updated_at, o.finished_at,
  (SELECT processed_at FROM bulk_operation_runs r WHERE r.operation_id = o.id AND r.seq = 1 AND o.cursor >= 1)
    AS first_processed_at,
  (SELECT processed_at FROM bulk_operation_runs r WHERE r.operation_id = o.id AND r.seq = o.cursor)
    AS last_processed_at`;

const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);

const toView = (r: OperationRow): OperationView => ({
  id: r.id,
  kind: r.kind,
  status: r.status,
  filter: r.filter,
  params: r.params,
  ratePerSec: r.rate_per_sec,
  matched: r.matched,
  done: r.done,
  skipped: r.skipped,
  failed: r.failed,
  remaining: Math.max(0, r.matched - r.cursor),
  error: r.error,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
  firstProcessedAt: iso(r.first_processed_at),
  lastProcessedAt: iso(r.last_processed_at),
  finishedAt: iso(r.finished_at),
});

/** Skipped and failed runs shown with an operation (the first ones, in handling order). */
export const PROBLEMS_SHOWN = 100;

/** An operation with its progress and its first skipped or failed runs with their reasons. */
export async function getOperation(
  pool: Pool,
  id: string,
): Promise<(OperationView & { problems: OperationRunView[] }) | undefined> {
  const { rows } = await pool.query<OperationRow>(
    `SELECT ${OPERATION_COLUMNS} FROM bulk_operations o WHERE o.id = $1`,
    [id],
  );
  if (!rows[0]) return undefined;
  const problems = await pool.query<{
    run_id: string;
    outcome: 'skipped' | 'failed';
    reason: string;
    processed_at: Date;
  }>(
    `SELECT run_id, outcome, reason, processed_at FROM bulk_operation_runs
      WHERE operation_id = $1 AND seq <= $2 AND outcome IN ('skipped', 'failed')
      ORDER BY seq LIMIT $3`,
    [id, rows[0].cursor, PROBLEMS_SHOWN],
  );
  return {
    ...toView(rows[0]),
    problems: problems.rows.map((p) => ({
      runId: p.run_id,
      outcome: p.outcome,
      reason: p.reason,
      processedAt: p.processed_at.toISOString(),
    })),
  };
}

/** Newest first, optionally of one status. */
export async function listOperations(
  pool: Pool,
  q: { limit: number; status?: OperationView['status'] },
): Promise<OperationView[]> {
  const { rows } = await pool.query<OperationRow>(
    `SELECT ${OPERATION_COLUMNS} FROM bulk_operations o
      WHERE ($1::text IS NULL OR o.status = $1)
      ORDER BY o.created_at DESC, o.id DESC LIMIT $2`,
    [q.status ?? null, q.limit],
  );
  return rows.map(toView);
}

/**
 * Stops a running operation: the runs it has not handled are left as they are. It waits for a slice
 * under way (the row lock) and takes effect before the next. Undefined: no such operation; otherwise
 * its status, and whether this request cancelled it.
 */
export async function cancelOperation(
  pool: Pool,
  id: string,
): Promise<{ status: OperationView['status']; cancelled: boolean } | undefined> {
  const { rows } = await pool.query<{ status: OperationView['status']; cancelled: boolean }>(
    `WITH cancelled AS (
       UPDATE bulk_operations SET status = 'cancelled', finished_at = now(), updated_at = now()
        WHERE id = $1 AND status = 'running'
        RETURNING status
     )
     SELECT COALESCE((SELECT status FROM cancelled), o.status) AS status, EXISTS (SELECT 1 FROM cancelled) AS cancelled
       FROM bulk_operations o WHERE o.id = $1`,
    [id],
  );
  return rows[0];
}
