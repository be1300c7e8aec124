import type { RunStatus } from '@baton/workflow';
import type { Pool } from '@baton/engine';

/**
 * The gateway's read side: plain SQL over the tables the coordinator writes, shaped for the API.
 * Timestamps leave as ISO strings (null when unset); keyset cursors come back as raw values and
 * are encoded by the routes.
 */

const iso = (value: Date | null): string | null => (value ? value.toISOString() : null);

export interface RunSummary {
  id: string;
  workflow: string;
  workflowVersion: number;
  status: string;
  input: unknown;
  output: unknown;
  error: unknown;
  trigger: unknown;
  idempotencyKey: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** A child run (a `workflow:` step's): the run and step that started it; null for a top-level run. */
  parentRunId: string | null;
  /** Set when the parent run was deleted (retention). */
  parentRunDeleted?: true;
  parentStepId: string | null;
  /** 0 for a top-level run, a child its parent's + 1. */
  depth: number;
  tags: Record<string, string>;
  /** A fork: the run it was forked from. */
  forkedFrom: string | null;
  /** 1 (highest) … 10: its step jobs' priority and its place among held runs (5 until admitted). */
  priority: number;
}

export interface AttemptView {
  attempt: number;
  status: string;
  workerId: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  error: unknown;
}

export interface StepView {
  id: string;
  executionId: string;
  function: string;
  status: string;
  attempts: number;
  maxAttempts: number;
  queuedAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  error: unknown;
  output: unknown;
  attemptHistory: AttemptView[];
  /** A `workflow:` step: the child run it started (a forEach/repeat step's items carry their own). */
  childRunId?: string;
  /** Set when that child run was deleted (retention). */
  childRunDeleted?: true;
  /** A fork's kept step: the source run's execution it was copied from. */
  copiedFrom?: string;
  /** A forEach/repeat step: its items' counts, its first items in index order, the cursor to the rest. */
  fanout?: FanoutView;
  items?: ItemView[];
  itemsNext?: string;
}

/** How many items of a forEach/repeat step are in each state (step_fanouts). */
export interface FanoutView {
  mode: 'forEach' | 'repeat';
  total: number;
  pending: number;
  /** Dispatched and not finished. */
  running: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  /** Succeeded items whose effect is being, or was, undone. */
  compensated: number;
  concurrency: number | null;
}

/** One item of a forEach step (its list position) or one iteration of a repeat step (from 0). */
export interface ItemView {
  index: number;
  executionId: string;
  status: string;
  attempts: number;
  childRunId?: string;
  /** Set when that child run was deleted (retention). */
  childRunDeleted?: true;
  error?: unknown;
  output?: unknown;
  startedAt: string | null;
  finishedAt: string | null;
}

/** Items the run detail shows per step; the rest through the items route. */
export const FIRST_ITEMS = 20;

export interface RunDetail extends RunSummary {
  steps: StepView[];
  compensations: StepView[];
}

interface RunRow {
  id: string;
  workflow_name: string;
  workflow_version: number;
  status: string;
  input: unknown;
  output: unknown;
  error: unknown;
  trigger: unknown;
  idempotency_key: string | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  parent_run_id: string | null;
  parent_step_id: string | null;
  depth: number;
  tags: Record<string, string>;
  forked_from: string | null;
  priority: number;
  /** A child run whose parent was deleted (retention): the link names a run that is gone. */
  parent_run_deleted: boolean;
  /** created_at at full microsecond precision; a JS Date would drop the microseconds. */
  created_at_key: string;
}

const RUN_COLUMNS = `id, workflow_name, workflow_version, status, input, output, error, trigger, idempotency_key,
  created_at, started_at, finished_at, parent_run_id, parent_step_id, depth, tags, forked_from, priority,
  (parent_run_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM runs p WHERE p.id = runs.parent_run_id)) AS parent_run_deleted,
  to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at_key`;

const toSummary = (row: RunRow): RunSummary => ({
  id: row.id,
  workflow: row.workflow_name,
  workflowVersion: row.workflow_version,
  status: row.status,
  input: row.input,
  output: row.output,
  error: row.error,
  trigger: row.trigger,
  idempotencyKey: row.idempotency_key,
  createdAt: row.created_at.toISOString(),
  startedAt: iso(row.started_at),
  finishedAt: iso(row.finished_at),
  parentRunId: row.parent_run_id,
  parentStepId: row.parent_step_id,
  ...(row.parent_run_deleted ? { parentRunDeleted: true } : {}),
  depth: row.depth,
  tags: row.tags,
  forkedFrom: row.forked_from,
  priority: row.priority,
});

interface StepRow {
  id: string;
  step_id: string;
  kind: 'action' | 'compensation';
  function_name: string;
  status: string;
  output: unknown;
  error: unknown;
  attempt: number;
  max_attempts: number;
  queued_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
  child_run_id: string | null;
  /** Its child run was deleted (retention): `childRunId` names a run that is gone. */
  child_run_deleted: boolean;
  copied_from: string | null;
  /** From step_fanouts: set for a forEach/repeat step's execution only. */
  mode: 'forEach' | 'repeat' | null;
  total: number | null;
  pending: number | null;
  succeeded: number | null;
  failed: number | null;
  cancelled: number | null;
  undone: number | null;
  concurrency: number | null;
}

interface ItemRow {
  parent_execution_id: string;
  id: string;
  item_index: number;
  status: string;
  attempt: number;
  child_run_id: string | null;
  child_run_deleted: boolean;
  error: unknown;
  output: unknown;
  started_at: Date | null;
  finished_at: Date | null;
}

const toItem = (r: ItemRow): ItemView => ({
  index: r.item_index,
  executionId: r.id,
  status: r.status,
  attempts: r.attempt,
  ...(r.child_run_id ? { childRunId: r.child_run_id } : {}),
  ...(r.child_run_deleted ? { childRunDeleted: true } : {}),
  ...(r.error == null ? {} : { error: r.error }),
  ...(r.output == null ? {} : { output: r.output }),
  startedAt: iso(r.started_at),
  finishedAt: iso(r.finished_at),
});

const toFanout = (s: StepRow): FanoutView | undefined => {
  if (s.mode === null) return undefined;
  const [total, pending, succeeded, failed, cancelled, undone] = [
    s.total,
    s.pending,
    s.succeeded,
    s.failed,
    s.cancelled,
    s.undone,
  ].map((n) => n ?? 0);
  return {
    mode: s.mode,
    total,
    pending,
    running: Math.max(0, total - pending - succeeded - failed - cancelled - undone),
    succeeded,
    failed,
    cancelled,
    compensated: undone,
    concurrency: s.concurrency,
  };
};

/** The key an items page goes on after: the last item's index. */
export interface ItemKey {
  index: number;
}

interface AttemptRow {
  step_execution_id: string;
  attempt: number;
  status: string;
  worker_id: string | null;
  error: unknown;
  started_at: Date | null;
  finished_at: Date | null;
}

/**
 * A run with its step and compensation executions (oldest first), or undefined. Each step lists only
 * its own executions, never a forEach/repeat step's items: those come as counts (step_fanouts) and
 * the first FIRST_ITEMS of each step, whatever the number of items — four queries in all. An item
 * is listed under an execution of its own kind (a compensation's items under the compensation).
 * `encodeItemsCursor` turns the key after a step's first items into its `itemsNext`.
 */
export async function getRunDetail(
  pool: Pool,
  runId: string,
  encodeItemsCursor: (key: ItemKey) => string,
): Promise<RunDetail | undefined> {
  const run = await pool.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = $1`, [runId]);
  if (!run.rows[0]) return undefined;
  const [steps, attempts, items] = await Promise.all([
    // step_executions_steps_by_run: a run's own executions without their items. `child_run_deleted`
    // (here and for items): its child run was deleted by retention, so its link names a 404.
    pool.query<StepRow>(
      `SELECT e.id, e.step_id, e.kind, e.function_name, e.status, e.output, e.error, e.attempt, e.max_attempts,
              e.queued_at, e.started_at, e.finished_at, e.child_run_id, e.copied_from,
              (e.child_run_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.id = e.child_run_id))
                AS child_run_deleted,
              f.mode, f.total, f.pending, f.succeeded, f.failed, f.cancelled, f.undone, f.concurrency
         FROM step_executions e LEFT JOIN step_fanouts f ON f.execution_id = e.id
        WHERE e.run_id = $1 AND e.parent_execution_id IS NULL
        ORDER BY e.created_at, e.id`,
      [runId],
    ),
    pool.query<AttemptRow>(
      `SELECT a.step_execution_id, a.attempt, a.status, a.worker_id, a.error, a.started_at, a.finished_at
         FROM step_attempts a JOIN step_executions s ON s.id = a.step_execution_id
        WHERE s.run_id = $1 AND s.parent_execution_id IS NULL ORDER BY a.step_execution_id, a.attempt`,
      [runId],
    ),
    // One more than shown per step, to know whether there are more: from each of the run's own
    // executions (step_executions_steps_by_run) to its first items (step_executions_items), an index
    // probe each; a plain step's finds none. (Not from step_fanouts: it has no index on run_id.)
    pool.query<ItemRow>(
      `SELECT i.parent_execution_id, i.id, i.item_index, i.status, i.attempt, i.child_run_id,
              (i.child_run_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.id = i.child_run_id))
              AS child_run_deleted,
            i.error, i.output, i.started_at, i.finished_at
         FROM step_executions p
        CROSS JOIN LATERAL (
              SELECT i.parent_execution_id, i.id, i.item_index, i.status, i.attempt, i.child_run_id, i.error, i.output,
                     i.started_at, i.finished_at
                FROM step_executions i
               WHERE i.parent_execution_id = p.id AND i.kind = p.kind AND i.superseded_at IS NULL
               ORDER BY i.item_index LIMIT $2) i
        WHERE p.run_id = $1 AND p.parent_execution_id IS NULL
        ORDER BY i.parent_execution_id, i.item_index`,
      [runId, FIRST_ITEMS + 1],
    ),
  ]);
  const history = new Map<string, AttemptView[]>();
  for (const a of attempts.rows) {
    const list = history.get(a.step_execution_id) ?? [];
    list.push({
      attempt: a.attempt,
      status: a.status,
      workerId: a.worker_id,
      startedAt: iso(a.started_at),
      finishedAt: iso(a.finished_at),
      error: a.error,
    });
    history.set(a.step_execution_id, list);
  }
  const itemsOf = new Map<string, ItemRow[]>();
  for (const item of items.rows) {
    const list = itemsOf.get(item.parent_execution_id) ?? [];
    list.push(item);
    itemsOf.set(item.parent_execution_id, list);
  }
  const toStep = (s: StepRow): StepView => {
    const fanout = toFanout(s);
    const first = itemsOf.get(s.id) ?? [];
    const shown = first.slice(0, FIRST_ITEMS);
    return {
      id: s.step_id,
      executionId: s.id,
      function: s.function_name,
      status: s.status,
      attempts: s.attempt,
      maxAttempts: s.max_attempts,
      queuedAt: iso(s.queued_at),
      startedAt: iso(s.started_at),
      finishedAt: iso(s.finished_at),
      error: s.error,
      output: s.output,
      attemptHistory: history.get(s.id) ?? [],
      ...(s.child_run_id && !fanout ? { childRunId: s.child_run_id } : {}),
      ...(s.child_run_deleted && !fanout ? { childRunDeleted: true } : {}),
      ...(s.copied_from ? { copiedFrom: s.copied_from } : {}),
      ...(fanout
        ? {
            fanout,
            items: shown.map(toItem),
            ...(first.length > FIRST_ITEMS
              ? { itemsNext: encodeItemsCursor({ index: shown[shown.length - 1].item_index }) }
              : {}),
          }
        : {}),
    };
  };
  return {
    ...toSummary(run.rows[0]),
    steps: steps.rows.filter((s) => s.kind === 'action').map(toStep),
    compensations: steps.rows.filter((s) => s.kind === 'compensation').map(toStep),
  };
}

export interface ItemQuery {
  runId: string;
  stepId: string;
  limit: number;
  /** Items with a larger index than this. */
  after?: ItemKey;
}

/**
 * A page of a forEach/repeat step's current items in index order (keyset on item_index over the
 * index step_executions_items), or undefined when the run has no such step. The step's execution in
 * force is its newest one not superseded by a retry (the newest of all when every one was).
 */
export async function listStepItems(
  pool: Pool,
  q: ItemQuery,
): Promise<{ items: ItemView[]; next?: ItemKey } | undefined> {
  const parent = await pool.query<{ id: string }>(
    `SELECT e.id FROM step_executions e JOIN step_fanouts f ON f.execution_id = e.id
      WHERE e.run_id = $1 AND e.step_id = $2 AND e.kind = 'action' AND e.parent_execution_id IS NULL
      ORDER BY e.superseded_at IS NULL DESC, e.created_at DESC, e.id DESC LIMIT 1`,
    [q.runId, q.stepId],
  );
  if (!parent.rows[0]) return undefined;
  const { rows } = await pool.query<ItemRow>(
    `SELECT i.parent_execution_id, i.id, i.item_index, i.status, i.attempt, i.child_run_id,
            (i.child_run_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.id = i.child_run_id))
              AS child_run_deleted,
            i.error, i.output, i.started_at, i.finished_at
       FROM step_executions i
      WHERE i.parent_execution_id = $1 AND i.kind = 'action' AND i.superseded_at IS NULL AND i.item_index > $2
      ORDER BY i.item_index LIMIT $3`,
    [parent.rows[0].id, q.after?.index ?? -1, q.limit + 1],
  );
  const page = rows.slice(0, q.limit);
  return {
    items: page.map(toItem),
    ...(rows.length > q.limit ? { next: { index: page[page.length - 1].item_index } } : {}),
  };
}

export interface RunKey {
  createdAt: string;
  id: string;
}

export interface RunListQuery {
  workflow?: string;
  statuses?: string[];
  /** Only the children of this run. */
  parentRunId?: string;
  /** Only runs without a parent. */
  topLevel?: boolean;
  /** Only runs carrying every one of these tags. */
  tags?: { key: string; value: string }[];
  limit: number;
  /** Rows strictly older than this key in (created_at, id) order. */
  after?: RunKey;
}

/** Newest first; `next` is the key of the last row when another page exists. */
export async function listRuns(pool: Pool, q: RunListQuery): Promise<{ runs: RunSummary[]; next?: RunKey }> {
  const where: string[] = [];
  const params: unknown[] = [];
  const param = (value: unknown): string => {
    params.push(value);
    return `$${params.length}`;
  };
  if (q.workflow !== undefined) where.push(`workflow_name = ${param(q.workflow)}`);
  if (q.statuses?.length) where.push(`status = ANY(${param(q.statuses)}::text[])`);
  // Indexes runs_by_parent and runs_top_level, both in (created_at DESC, id DESC) order.
  if (q.parentRunId !== undefined) where.push(`parent_run_id = ${param(q.parentRunId)}::uuid`);
  if (q.topLevel) where.push('parent_run_id IS NULL');
  // One containment per tag, all must hold: each is served by the GIN index runs_tags (008).
  for (const tag of q.tags ?? []) where.push(`tags @> ${param(JSON.stringify({ [tag.key]: tag.value }))}::jsonb`);
  // Row comparison matches the (created_at DESC, id DESC) indexes, so each page is an index range.
  if (q.after) where.push(`(created_at, id) < (${param(q.after.createdAt)}::timestamptz, ${param(q.after.id)}::uuid)`);
  const { rows } = await pool.query<RunRow>(
    `SELECT ${RUN_COLUMNS} FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY created_at DESC, id DESC LIMIT ${param(q.limit + 1)}`,
    params,
  );
  const page = rows.slice(0, q.limit);
  const last = page[page.length - 1];
  return {
    runs: page.map(toSummary),
    ...(rows.length > q.limit ? { next: { createdAt: last.created_at_key, id: last.id } } : {}),
  };
}

export async function runExists(pool: Pool, runId: string): Promise<boolean> {
  const { rowCount } = await pool.query('SELECT 1 FROM runs WHERE id = $1', [runId]);
  return (rowCount ?? 0) > 0;
}

export interface LogView {
  id: number;
  time: string;
  level: string;
  message: string;
  stepId: string | null;
  data: unknown;
}

export interface LogQuery {
  runId: string;
  limit: number;
  /** Rows with a larger id than this. */
  afterId?: number;
  stepId?: string;
  levels?: string[];
}

/** Oldest first; `nextAfterId` is set when another page exists. */
export async function listRunLogs(pool: Pool, q: LogQuery): Promise<{ logs: LogView[]; nextAfterId?: number }> {
  const params: unknown[] = [q.runId];
  const where = ['run_id = $1'];
  const param = (value: unknown): string => {
    params.push(value);
    return `$${params.length}`;
  };
  if (q.afterId !== undefined) where.push(`id > ${param(q.afterId)}`);
  if (q.stepId !== undefined) where.push(`step_id = ${param(q.stepId)}`);
  if (q.levels) where.push(`level = ANY(${param(q.levels)}::text[])`);
  const { rows } = await pool.query<{
    id: number;
    time: Date;
    level: string;
    message: string;
    step_id: string | null;
    data: unknown;
  }>(
    `SELECT id, time, level, message, step_id, data FROM run_logs WHERE ${where.join(' AND ')}
      ORDER BY id LIMIT ${param(q.limit + 1)}`,
    params,
  );
  const page = rows.slice(0, q.limit);
  return {
    logs: page.map((r) => ({
      id: r.id,
      time: r.time.toISOString(),
      level: r.level,
      message: r.message,
      stepId: r.step_id,
      data: r.data,
    })),
    ...(rows.length > q.limit ? { nextAfterId: page[page.length - 1].id } : {}),
  };
}

export interface DocumentRow {
  filename: string;
  content_type: string;
  content: Buffer;
}

export async function getDocument(pool: Pool, id: string): Promise<DocumentRow | undefined> {
  const { rows } = await pool.query<DocumentRow>(
    'SELECT filename, content_type, content FROM documents WHERE id = $1',
    [id],
  );
  return rows[0];
}

export interface RunControlState {
  status: RunStatus;
  retries: number;
  /** Steps whose execution in force failed or was cancelled: what a retry resumes. */
  failedSteps: string[];
}

export async function getRunControlState(pool: Pool, runId: string): Promise<RunControlState | undefined> {
  const { rows } = await pool.query(
    `SELECT r.status, r.retries,
            COALESCE(array_agg(DISTINCT e.step_id) FILTER (WHERE e.step_id IS NOT NULL), '{}') AS failed_steps
       FROM runs r
       LEFT JOIN step_executions e ON e.run_id = r.id AND e.kind = 'action' AND e.superseded_at IS NULL
                                  AND e.status IN ('failed', 'cancelled')
      WHERE r.id = $1
      GROUP BY r.id`,
    [runId],
  );
  const row = rows[0];
  return row ? { status: row.status, retries: row.retries, failedSteps: row.failed_steps } : undefined;
}
