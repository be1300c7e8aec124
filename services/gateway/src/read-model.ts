import type { Pool, RunStatus } from '@baton/shared';

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
}

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
  /** created_at at full microsecond precision; a JS Date would drop the microseconds. */
  created_at_key: string;
}

const RUN_COLUMNS = `id, workflow_name, workflow_version, status, input, output, error, trigger, idempotency_key,
  created_at, started_at, finished_at,
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

/** A run with its step and compensation executions (oldest first), or undefined. */
export async function getRunDetail(pool: Pool, runId: string): Promise<RunDetail | undefined> {
  const run = await pool.query<RunRow>(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = $1`, [runId]);
  if (!run.rows[0]) return undefined;
  const [steps, attempts] = await Promise.all([
    pool.query<StepRow>(
      `SELECT id, step_id, kind, function_name, status, output, error, attempt, max_attempts,
              queued_at, started_at, finished_at
         FROM step_executions WHERE run_id = $1 ORDER BY created_at, id`,
      [runId],
    ),
    pool.query<AttemptRow>(
      `SELECT a.step_execution_id, a.attempt, a.status, a.worker_id, a.error, a.started_at, a.finished_at
         FROM step_attempts a JOIN step_executions s ON s.id = a.step_execution_id
        WHERE s.run_id = $1 ORDER BY a.step_execution_id, a.attempt`,
      [runId],
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
  const toStep = (s: StepRow): StepView => ({
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
  });
  return {
    ...toSummary(run.rows[0]),
    steps: steps.rows.filter((s) => s.kind === 'action').map(toStep),
    compensations: steps.rows.filter((s) => s.kind === 'compensation').map(toStep),
  };
}

export interface RunKey {
  createdAt: string;
  id: string;
}

export interface RunListQuery {
  workflow?: string;
  statuses?: string[];
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
