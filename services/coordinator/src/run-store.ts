import {
  CHILD_WORKFLOW_FUNCTION,
  ErrorCode,
  type FanoutCounts,
  type ItemFailure,
  type LastIteration,
  type RunStatus,
  type StepExecutionState,
  type StepStatus,
  type PlannedExecution,
  type RunError,
} from '@baton/workflow';
import { payloads } from './payload-cache';
import { pipelined, type Pool, type PoolClient, type StepReport } from '@baton/engine';

/**
 * The coordinator's SQL. Every function takes the transaction's client: the caller holds the run's
 * row lock for the whole read-plan-write cycle, which is what makes the coordinator the single
 * writer of a run however many replicas run.
 */

export interface LockedRun {
  id: string;
  workflow: string;
  workflowVersion: number;
  status: RunStatus;
  input: unknown;
  error: RunError | null;
  retries: number;
  concurrencyKey: string | null;
  /** 1 (highest) … 10: its step jobs' priority; set when the run is admitted (workflow/src/admission.ts). */
  priority: number;
  /** A pending run whose workflow is paused (workflow_pauses): admission holds it. */
  paused: boolean;
  inputOverrides: Record<string, unknown>;
  createdAt: Date;
  /** 0 for a top-level run; a child run is its parent's depth + 1. */
  depth: number;
  /** A child run: the execution of its parent's `workflow:` step (or item) it reports to. */
  parent: { runId: string; executionId: string } | null;
}

/** A `runs` row as lockRun and lockAndRecord read it. */
interface RunRow {
  id: string;
  workflow_name: string;
  workflow_version: number;
  status: RunStatus;
  input: unknown;
  error: RunError | null;
  retries: number;
  concurrency_key: string | null;
  priority: number;
  paused: boolean;
  metadata: { inputOverrides?: Record<string, unknown> } | null;
  created_at: Date;
  depth: number;
  parent_run_id: string | null;
  parent_execution_id: string | null;
  /** Stored size of `input`; `input` is NULL when the payload cache holds it. */
  input_bytes?: number | null;
  input_cached?: boolean;
}

function toLockedRun(row: RunRow): LockedRun {
  const key = `run:${row.id}`;
  if (row.input_cached) row.input = payloads.get(key);
  else payloads.keep(key, row.input, row.input_bytes ?? null);
  return {
    id: row.id,
    workflow: row.workflow_name,
    workflowVersion: row.workflow_version,
    status: row.status,
    input: row.input,
    error: row.error,
    retries: row.retries,
    concurrencyKey: row.concurrency_key,
    priority: row.priority ?? 5,
    paused: row.paused ?? false,
    inputOverrides: row.metadata?.inputOverrides ?? {},
    createdAt: row.created_at,
    depth: row.depth ?? 0,
    parent:
      row.parent_run_id && row.parent_execution_id
        ? { runId: row.parent_run_id, executionId: row.parent_execution_id }
        : null,
  };
}

export async function lockRun(client: PoolClient, runId: string): Promise<LockedRun | undefined> {
  const { rows } = await client.query<RunRow>(
    `SELECT id, workflow_name, workflow_version, status, input, error, retries, concurrency_key, metadata, created_at,
            depth, parent_run_id, parent_execution_id, priority,
            -- A pending run's workflow paused? Read by the statement that locks the run, so a pause
            -- committed before the run existed is always seen by its admission.
            CASE WHEN status = 'pending'
                 THEN EXISTS (SELECT 1 FROM workflow_pauses p WHERE p.workflow_name = runs.workflow_name)
                 ELSE false END AS paused
       FROM runs WHERE id = $1 FOR UPDATE`,
    [runId],
  );
  return rows[0] ? toLockedRun(rows[0]) : undefined;
}

interface ExecutionRow {
  id: string;
  run_id: string;
  step_id: string;
  kind: StepExecutionState['kind'];
  function_name: string;
  status: StepStatus;
  attempt: number;
  output: unknown;
  error: StepExecutionState['error'];
  finished_at: Date | null;
  created_at: Date;
  child_run_id: string | null;
  /** Copied by a fork from its source run (migration 012). */
  copied: boolean;
  /** Stored size of `output`; `output` is NULL when the payload cache holds it (by `output_key`). */
  output_key: string;
  output_bytes: number | null;
  output_cached: boolean;
  fanout: (Omit<FanoutCounts, 'mode'> & { mode: FanoutCounts['mode'] }) | null;
  first_failure: ItemFailure | null;
  last: LastIteration | null;
}

function toExecutionState(r: ExecutionRow): StepExecutionState {
  return {
    ...(r.fanout ? { fanout: r.fanout } : {}),
    ...(r.first_failure ? { firstFailure: r.first_failure } : {}),
    ...(r.last ? { last: r.last } : {}),
    ...(r.child_run_id ? { childRunId: r.child_run_id } : {}),
    ...(r.copied ? { copied: true } : {}),
    id: r.id,
    stepId: r.step_id,
    kind: r.kind,
    function: r.function_name,
    status: r.status,
    attempt: r.attempt,
    output: r.output,
    error: r.error,
    finishedAt: r.finished_at,
    createdAt: r.created_at,
  };
}

/** The ids of runs whose input the payload cache holds, as the lock statement's parameter. */
function heldRuns(runIds: string[]): string[] {
  return payloads.held(runIds.map((id) => `run:${id}`)).map((key) => key.slice('run:'.length));
}

/**
 * Which executions of a run have a large final output, by run: their output keys are offered to the
 * payload cache, and those it holds are left out of the load statement. An output key is the
 * execution's id with its `finished_at` (`<id>@<epoch µs>`): the one execution whose output is
 * written again — a forEach step reopened by a retry, settled anew — gets a new key.
 */
const knownOutputs = {
  byRun: new Map<string, Set<string>>(),
  get(runIds: string[]): string[] {
    return runIds.flatMap((runId) => [...(this.byRun.get(runId) ?? [])].map((key) => `output:${key}`));
  },
  note(rows: { output_key: string; run_id: string; output_bytes: number | null }[]): void {
    for (const row of rows) {
      if ((row.output_bytes ?? 0) < payloads.minStoredBytes) continue;
      let ids = this.byRun.get(row.run_id);
      if (!ids) {
        // Bounded: the oldest runs' notes go first (a note without a cache entry costs nothing).
        if (this.byRun.size >= 10_000) this.byRun.delete(this.byRun.keys().next().value as string);
        ids = new Set();
        this.byRun.set(row.run_id, ids);
      }
      ids.add(row.output_key);
    }
  },
};

export async function loadExecutions(client: PoolClient, runId: string): Promise<StepExecutionState[]> {
  return (await loadExecutionsOf(client, [runId])).get(runId) ?? [];
}

/**
 * The current executions of several runs in one query, by run: each step's own executions, never the
 * items of a forEach/repeat step — their counts come with it (step_fanouts), with the earliest failed
 * item when one failed and a repeat step's newest iteration. The partial index
 * step_executions_steps_by_run keeps a run with 10 000 items as cheap to load as one without.
 */
export async function loadExecutionsOf(
  client: PoolClient,
  runIds: string[],
): Promise<Map<string, StepExecutionState[]>> {
  return collectExecutions(runIds, runIds.length ? (await sendLoad(client, runIds)).rows : []);
}

/** Sends the load statement of `loadExecutionsOf` (pipelined by `lockAndRecord`). */
function sendLoad(client: PoolClient, runIds: string[]): Promise<{ rows: ExecutionRow[] }> {
  return client.query<ExecutionRow>({
    name: 'baton.load_executions',
    text: `SELECT e.id, e.run_id, e.step_id, e.kind, e.function_name, e.status, e.attempt, e.error, e.finished_at,
                  e.created_at, e.child_run_id, e.copied_from IS NOT NULL AS copied,
                  -- A large output the payload cache holds is not sent again (payload-cache.ts).
                  k.output_key, CASE WHEN k.output_key = ANY($2::text[]) THEN NULL ELSE e.output END AS output,
                  k.output_key = ANY($2::text[]) AS output_cached, pg_column_size(e.output) AS output_bytes,
                  CASE WHEN f.execution_id IS NOT NULL THEN jsonb_build_object(
                    'mode', f.mode, 'total', f.total, 'pending', f.pending, 'succeeded', f.succeeded, 'failed', f.failed,
                    'cancelled', f.cancelled, 'undone', f.undone, 'concurrency', f.concurrency) END AS fanout,
                  CASE WHEN f.failed > 0 THEN (
                    SELECT jsonb_build_object('index', i.item_index, 'attempt', i.attempt, 'error', i.error)
                      FROM step_executions i
                     WHERE i.parent_execution_id = e.id AND i.status = 'failed' AND i.superseded_at IS NULL
                     ORDER BY i.finished_at, i.item_index LIMIT 1) END AS first_failure,
                  CASE WHEN f.mode = 'repeat' THEN (
                    SELECT jsonb_build_object('index', i.item_index, 'status', i.status, 'output', i.output)
                      FROM step_executions i
                     WHERE i.parent_execution_id = e.id AND i.superseded_at IS NULL
                     ORDER BY i.item_index DESC LIMIT 1) END AS last
             FROM step_executions e LEFT JOIN step_fanouts f ON f.execution_id = e.id
            CROSS JOIN LATERAL (SELECT e.id::text || '@' ||
                                       COALESCE((extract(epoch FROM e.finished_at) * 1000000)::bigint::text, '-')
                                  AS output_key) k
            WHERE e.run_id = ANY($1::uuid[]) AND e.superseded_at IS NULL AND e.parent_execution_id IS NULL
            ORDER BY e.run_id, e.created_at, e.id`,
    values: [runIds, payloads.held(knownOutputs.get(runIds)).map((key) => key.slice('output:'.length))],
  });
}

/** The executions of a load statement's rows, by run; offers their final outputs to the payload cache. */
function collectExecutions(runIds: string[], rows: ExecutionRow[]): Map<string, StepExecutionState[]> {
  const byRun = new Map<string, StepExecutionState[]>(runIds.map((id) => [id, []]));
  for (const row of rows) {
    const key = `output:${row.output_key}`;
    if (row.output_cached) row.output = payloads.get(key);
    // Only an ended execution's output is final (a running one has none yet).
    else if (!NOT_FINISHED.includes(row.status) && row.status !== 'pending')
      payloads.keep(key, row.output, row.output_bytes);
    byRun.get(row.run_id)?.push(toExecutionState(row));
  }
  knownOutputs.note(rows);
  return byRun;
}

const NOT_FINISHED: StepStatus[] = ['queued', 'running', 'retrying'];

/** The reports `applyReport` takes: successes are recorded in bulk by `lockAndRecord`. */
export type OtherReport = Exclude<StepReport, { type: 'step.succeeded' }>;

/**
 * Applies a started, retrying or failed report to its execution row. Reports can arrive twice (a
 * re-run after a crash, a replay by the reconciler) and out of order (coordinator messages are
 * handled concurrently): a finished execution never changes again, so a failure is recorded once.
 * Returns false when the report changed nothing.
 */
export async function applyReport(client: PoolClient, report: OtherReport): Promise<boolean> {
  const at = report.at;
  if (report.type === 'step.started') {
    await client.query(
      `INSERT INTO step_attempts (step_execution_id, attempt, status, worker_id, started_at)
       VALUES ($1, $2, 'running', $3, $4) ON CONFLICT DO NOTHING`,
      [report.stepExecutionId, report.attempt, report.workerId, at],
    );
    const { rowCount } = await client.query(
      `UPDATE step_executions
          SET status = 'running', attempt = GREATEST(attempt, $2), worker_id = $3,
              started_at = COALESCE(started_at, $4), updated_at = now()
        WHERE id = $1 AND status = ANY($5) AND attempt <= $2`,
      [report.stepExecutionId, report.attempt, report.workerId, at, NOT_FINISHED],
    );
    return (rowCount ?? 0) > 0;
  }
  const startedAt = report.startedAt ?? at;
  const attemptError = JSON.stringify(report.error);
  // The attempt row may be missing when no started report was sent; the upsert fills it in.
  const attempt = await client.query(
    `INSERT INTO step_attempts (step_execution_id, attempt, status, worker_id, error, started_at, finished_at)
     VALUES ($1, $2, 'failed', $3, $4, $5, $6)
     ON CONFLICT (step_execution_id, attempt) DO UPDATE
       SET status = EXCLUDED.status, error = EXCLUDED.error, finished_at = EXCLUDED.finished_at
       WHERE step_attempts.status = 'running'
     RETURNING 1`,
    [report.stepExecutionId, report.attempt, report.workerId, attemptError, startedAt, at],
  );
  if (report.type === 'step.retrying') {
    const { rowCount } = await client.query(
      `UPDATE step_executions SET status = 'retrying', attempt = GREATEST(attempt, $2), error = $3, updated_at = now()
        WHERE id = $1 AND status = ANY($4) AND attempt <= $2`,
      [report.stepExecutionId, report.attempt, attemptError, NOT_FINISHED],
    );
    return (rowCount ?? 0) > 0 || (attempt.rowCount ?? 0) > 0;
  }
  const { rowCount } = await client.query(
    `UPDATE step_executions
        SET status = 'failed', attempt = GREATEST(attempt, $2), output = NULL, error = $3, worker_id = $4,
            started_at = COALESCE(started_at, $7), finished_at = $5, updated_at = now()
      WHERE id = $1 AND status = ANY($6)`,
    [report.stepExecutionId, report.attempt, attemptError, report.workerId, at, NOT_FINISHED, startedAt],
  );
  return (rowCount ?? 0) > 0;
}

export async function stepIdOf(client: PoolClient, stepExecutionId: string): Promise<string | undefined> {
  const { rows } = await client.query<{ step_id: string }>('SELECT step_id FROM step_executions WHERE id = $1', [
    stepExecutionId,
  ]);
  return rows[0]?.step_id;
}

export interface NewExecution extends PlannedExecution {
  id: string;
  /** See StepJobData.idempotencyKey; kept in the row's metadata so the reconciler re-sends it. */
  idempotencyKey?: string;
}

/** The status a new execution is written with. */
function initialStatus(e: NewExecution, builtin: boolean): StepStatus {
  if (e.error) return 'failed';
  // A forEach/repeat step's own execution runs while its items do; built-ins run from the start.
  return e.fanout || builtin ? 'running' : 'queued';
}

export async function updateRun(
  client: PoolClient,
  runId: string,
  change: { status: RunStatus; terminal: boolean; output?: unknown; error?: RunError },
): Promise<void> {
  await client.query(
    `UPDATE runs
        SET status = $2,
            started_at = COALESCE(started_at, now()),
            finished_at = CASE WHEN $3 THEN now() ELSE finished_at END,
            output = COALESCE($4, output),
            error = COALESCE($5, error),
            updated_at = now()
      WHERE id = $1`,
    [
      runId,
      change.status,
      change.terminal,
      change.output === undefined ? null : JSON.stringify(change.output),
      change.error === undefined ? null : JSON.stringify(change.error),
    ],
  );
}

/** An execution cancelled in a transaction: its job to stop, or its child run to cancel. */
export interface CancelledExecution {
  id: string;
  function: string;
  childRunId?: string;
}

/**
 * Marks every outstanding execution of a run cancelled, forEach items not yet dispatched included;
 * returns them so their jobs can be stopped and their child runs cancelled.
 */
export async function cancelOutstanding(
  client: PoolClient,
  runId: string,
  error: RunError,
): Promise<CancelledExecution[]> {
  const { rows } = await client.query<{ id: string; function_name: string; child_run_id: string | null }>(
    `UPDATE step_executions SET status = 'cancelled', error = $3, finished_at = now(), updated_at = now()
      WHERE run_id = $1 AND superseded_at IS NULL AND status = ANY($2)
      RETURNING id, function_name, child_run_id`,
    [
      runId,
      [...NOT_FINISHED, 'pending'],
      JSON.stringify({ code: error.code, message: error.message, nonRetryable: true }),
    ],
  );
  return rows.map(toCancelled);
}

export function toCancelled(r: { id: string; function_name: string; child_run_id: string | null }): CancelledExecution {
  return { id: r.id, function: r.function_name, ...(r.child_run_id ? { childRunId: r.child_run_id } : {}) };
}

/**
 * Retry from failure: the given steps' executions and every compensation are superseded — kept for
 * the record, ignored by the planner — so the planner starts those steps again.
 */
export async function supersedeForRetry(
  client: PoolClient,
  runId: string,
  stepIds: string[],
  reopened: string[] = [],
): Promise<void> {
  // A reopened forEach step keeps its execution and items: fanout-store.ts's reopenFanout re-runs
  // only the items that did not succeed.
  await client.query(
    `UPDATE step_executions SET superseded_at = now(), updated_at = now()
      WHERE run_id = $1 AND superseded_at IS NULL AND (kind = 'compensation' OR step_id = ANY($2))
        AND NOT (id = ANY($3::uuid[]) OR COALESCE(parent_execution_id = ANY($3::uuid[]), false))`,
    [runId, stepIds, reopened],
  );
}

/** A retried run back to running; its new deadline is buffered with its admission (RunWrites). */
export async function resetForRetry(
  client: PoolClient,
  runId: string,
  inputOverrides: Record<string, unknown>,
): Promise<void> {
  await client.query(
    `UPDATE runs
        SET status = 'running', error = NULL, output = NULL, finished_at = NULL, retries = retries + 1,
            metadata = jsonb_set(metadata, '{inputOverrides}', $2::jsonb),
            updated_at = now()
      WHERE id = $1`,
    [runId, JSON.stringify(inputOverrides)],
  );
}

/**
 * A run that admission looked at and held, written at once: the next admission of its group or rate
 * bucket (counting with `runsAhead`, `rateWindow`) must see it, and the reconciler knows it by its
 * `concurrency_key` (its admission group: the concurrency key, else the rate key, else ''). `started`:
 * it is admitted, so its start is recorded now (`clock_timestamp()`, under its locks: the next
 * admission of the key or bucket, in this transaction or another, counts it). Its deadline is set when it is admitted
 * (RunWrites).
 */
export async function holdRun(
  client: PoolClient,
  runId: string,
  hold: { group: string; rateKey: string | null; priority: number; started: boolean },
): Promise<void> {
  await client.query(
    `UPDATE runs SET concurrency_key = $2, rate_key = $3, priority = $4,
                     started_at = CASE WHEN $5 THEN clock_timestamp() ELSE started_at END
      WHERE id = $1`,
    [runId, hold.group, hold.rateKey, hold.priority, hold.started],
  );
}

/**
 * Serialises admissions per (workflow, concurrency key) — or per (workflow, rate key) for a rate
 * limit — until the transaction ends, so two runs cannot both take the last slot.
 */
export async function lockConcurrencyKey(
  client: PoolClient,
  workflow: string,
  key: string,
  what: 'concurrency' | 'rate' = 'concurrency',
): Promise<void> {
  await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`baton.${what}:${workflow}:${key}`]);
}

/**
 * Runs that hold or wait for a concurrency slot ahead of this one: the running ones, and the pending
 * ones admitted before it — higher priority first, first come first served within one. Called under
 * an advisory lock on the key.
 */
export async function runsAhead(
  client: PoolClient,
  run: LockedRun,
  key: string,
): Promise<{ total: number; held: number }> {
  const { rows } = await client.query<{ n: number; held: number }>(
    `SELECT count(*)::int AS n,
            -- Of those, the held ones (not admitted yet).
            count(*) FILTER (WHERE status = 'pending' AND started_at IS NULL)::int AS held
       FROM runs
      WHERE workflow_name = $1 AND concurrency_key = $2 AND id <> $3
        AND (status IN ('running', 'compensating')
             -- Admitted earlier in this transaction: still pending until the commit's write, started.
             OR (status = 'pending' AND started_at IS NOT NULL)
             OR (status = 'pending' AND (priority, created_at, id) < ($5, $4, $3::uuid)))`,
    [run.workflow, key, run.id, run.createdAt, run.priority],
  );
  return { total: rows[0].n, held: rows[0].held };
}

/**
 * Whether a run of the workflow that arrived before this one is still pending and has not been
 * looked at by admission yet (no `concurrency_key`: its `run.start` is still on its way, in another
 * reading loop or replica). Its key is unknown until then, so admission holds this run rather than
 * let it take a slot or a window's start the earlier run may need (index runs_unseen).
 */
export async function earlierUnseen(client: PoolClient, run: LockedRun): Promise<boolean> {
  const { rows } = await client.query<{ unseen: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM runs
                     WHERE workflow_name = $1 AND status = 'pending' AND concurrency_key IS NULL
                       AND started_at IS NULL AND id <> $2 AND (created_at, id) < ($3, $2::uuid)) AS unseen`,
    [run.workflow, run.id, run.createdAt],
  );
  return rows[0].unseen;
}

/** A rate bucket as admission sees it under its lock. */
export interface RateWindow {
  /** Runs of the bucket started within the last period (`started_at >= now - period`). */
  started: number;
  /** Held runs of the bucket ahead of this one (priority, then arrival). */
  ahead: number;
  /**
   * When the oldest start of the window leaves it: the instant (epoch ms, the same for every run the
   * window holds back, so one wake-up serves them all) and how far off it is by PostgreSQL's clock
   * (so a coordinator's skewed clock does not wake them early). Null when the window is empty.
   */
  frees: { at: number; inMs: number } | null;
}

/** Counts a rate bucket's starts in the last `periodMs` and the held runs ahead (under its lock). */
export async function rateWindow(
  client: PoolClient,
  run: LockedRun,
  rateKey: string,
  periodMs: number,
): Promise<RateWindow> {
  const { rows } = await client.query<{
    started: number;
    ahead: number;
    frees: { at: number; in_ms: number } | null;
  }>(
    `WITH c AS (SELECT clock_timestamp() AS now, clock_timestamp() - make_interval(secs => $5 / 1000.0) AS since)
     SELECT (SELECT count(*)::int FROM runs, c
              WHERE workflow_name = $1 AND rate_key = $2 AND started_at >= c.since) AS started,
            (SELECT json_build_object('at', ceil(extract(epoch FROM min(started_at)) * 1000 + $5),
                                      'in_ms', extract(epoch FROM min(started_at) - c.now) * 1000 + $5)
               FROM runs, c
              WHERE workflow_name = $1 AND rate_key = $2 AND started_at >= c.since GROUP BY c.now) AS frees,
            -- Held runs ahead (a run admitted earlier in this transaction is still pending, started).
            (SELECT count(*)::int FROM runs
              WHERE workflow_name = $1 AND rate_key = $2 AND status = 'pending' AND started_at IS NULL AND id <> $3
                AND (priority, created_at, id) < ($6, $4, $3::uuid)) AS ahead`,
    [run.workflow, rateKey, run.id, run.createdAt, periodMs, run.priority],
  );
  const row = rows[0];
  return {
    started: row.started,
    ahead: row.ahead,
    frees: row.frees ? { at: Number(row.frees.at), inMs: Number(row.frees.in_ms) } : null,
  };
}

/** Held runs of an admission group, or of a rate bucket (`by: 'rate'`), in admission order. */
export interface HeldPosition {
  id: string;
  cursor: [number, string, string];
}

/**
 * The held runs of an admission group (`concurrency_key`) or a rate bucket (`rate_key`), in the order
 * admission takes them (priority, then arrival), `limit` of them after `after` (index runs_held,
 * runs_held_by_rate).
 */
export async function heldInOrder(
  pool: Pool,
  workflow: string,
  key: string,
  limit: number,
  opts: { by?: 'group' | 'rate'; after?: HeldPosition['cursor'] } = {},
): Promise<HeldPosition[]> {
  const after = opts.after;
  const params = [workflow, key, limit, after?.[0] ?? null, after?.[1] ?? null, after?.[2] ?? null];
  type Row = { id: string; priority: number; created_at: string };
  const { rows } =
    opts.by === 'rate'
      ? await pool.query<Row>(
          `SELECT id, priority, created_at::text FROM runs
            WHERE workflow_name = $1 AND rate_key = $2 AND status = 'pending'
              AND ($4::int IS NULL OR (priority, created_at, id) > ($4, $5::timestamptz, $6::uuid))
            ORDER BY priority, created_at, id LIMIT $3`,
          params,
        )
      : await pool.query<Row>(
          `SELECT id, priority, created_at::text FROM runs
            WHERE workflow_name = $1 AND concurrency_key = $2 AND status = 'pending'
              AND ($4::int IS NULL OR (priority, created_at, id) > ($4, $5::timestamptz, $6::uuid))
            ORDER BY priority, created_at, id LIMIT $3`,
          params,
        );
  return rows.map((r) => ({ id: r.id, cursor: [r.priority, r.created_at, r.id] }));
}

/** The first runs waiting for a slot of this key (priority, then arrival). */
export async function waitingRuns(pool: Pool, workflow: string, key: string, limit: number): Promise<string[]> {
  return (await heldInOrder(pool, workflow, key, limit)).map((r) => r.id);
}

/** The admission groups of a workflow with held runs (a resumed workflow's, to admit). */
export async function heldGroups(pool: Pool, workflow: string): Promise<string[]> {
  const { rows } = await pool.query<{ concurrency_key: string }>(
    `SELECT DISTINCT concurrency_key FROM runs
      WHERE workflow_name = $1 AND status = 'pending' AND concurrency_key IS NOT NULL`,
    [workflow],
  );
  return rows.map((r) => r.concurrency_key);
}

export async function markFunctionSeen(pool: Pool, name: string): Promise<void> {
  await pool.query(
    `INSERT INTO known_functions (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET last_seen_at = now()`,
    [name],
  );
}

/** Ends a running built-in step; false when it had already ended (a duplicate or late message). */
export async function completeBuiltin(
  client: PoolClient,
  id: string,
  status: 'succeeded' | 'failed',
  output: unknown,
  error: { code: string; message: string; nonRetryable: boolean } | null,
): Promise<boolean> {
  const { rowCount } = await client.query(
    `UPDATE step_executions SET status = $2, output = $3, error = $4, finished_at = now(), updated_at = now()
      WHERE id = $1 AND status = 'running'`,
    [id, status, output === undefined ? null : JSON.stringify(output), error ? JSON.stringify(error) : null],
  );
  if (rowCount) {
    await client.query(
      `INSERT INTO step_attempts (step_execution_id, attempt, status, worker_id, error, started_at, finished_at)
       SELECT id, 1, $2, 'coordinator', $3, started_at, finished_at FROM step_executions WHERE id = $1
       ON CONFLICT DO NOTHING`,
      [id, status, error ? JSON.stringify(error) : null],
    );
  }
  return (rowCount ?? 0) > 0;
}

/** A sleep's wake-up (succeeds with the time) or a wait's timeout (fails with EVENT_TIMEOUT). */
export async function finishBuiltin(
  client: PoolClient,
  message: { type: 'step.wake' | 'step.waitTimeout'; stepExecutionId: string },
): Promise<boolean> {
  if (message.type === 'step.wake') {
    return completeBuiltin(client, message.stepExecutionId, 'succeeded', { wokeAt: new Date().toISOString() }, null);
  }
  const { rows } = await client.query<{ input: { name?: string; timeoutMs?: number } | null }>(
    'SELECT input FROM step_executions WHERE id = $1',
    [message.stepExecutionId],
  );
  const input = rows[0]?.input ?? {};
  return completeBuiltin(client, message.stepExecutionId, 'failed', null, {
    code: ErrorCode.EVENT_TIMEOUT,
    message: `no '${input.name}' event arrived within ${input.timeoutMs} ms`,
    nonRetryable: true,
  });
}

/**
 * How many times each step's effect was undone and the step re-run (superseded compensations): the
 * generation its idempotency key carries, so a re-run makes a new effect instead of finding the
 * undone one (a voided invoice).
 */
export async function undoGenerations(client: PoolClient, runId: string): Promise<Map<string, number>> {
  const { rows } = await client.query<{ step_id: string; n: number }>(
    `SELECT step_id, count(*)::int AS n FROM step_executions
      WHERE run_id = $1 AND kind = 'compensation' AND superseded_at IS NOT NULL AND status = 'succeeded'
      GROUP BY step_id`,
    [runId],
  );
  return new Map(rows.map((r) => [r.step_id, r.n]));
}

/** A success report, as `lockAndRecord` takes it. */
export type SuccessReport = StepReport & { type: 'step.succeeded' };

export interface RecordedSuccess {
  runId: string;
  stepId: string;
  kind: 'action' | 'compensation';
}

/*
 * Every bulk statement below joins a jsonb_to_recordset() of the batch AND repeats the keys as
 * `= ANY($ids)`. PostgreSQL estimates 100 rows for the function, so without the array it plans a hash
 * join over a sequential scan of the whole table: fine on an empty database, a full scan of
 * step_executions per batch once it has grown (measured: a batch of one took 10–30 ms after 8 000
 * steps). The array lets it use the primary key or the run index instead, in custom and generic plans.
 */

type LockAndRecordRow =
  | { what: 'run'; row: Omit<RunRow, 'created_at'> & { created_at: string } }
  | {
      what: 'recorded';
      row: {
        id: string;
        run_id: string;
        step_id: string;
        kind: RecordedSuccess['kind'];
        undoes_execution_id: string | null;
      };
    };

/** Sends the statement of `lockAndRecord`. */
function sendLockAndRecord(
  client: PoolClient,
  runIds: string[],
  reports: SuccessReport[],
): Promise<{ rows: LockAndRecordRow[] }> {
  // Named: prepared once per connection, so PostgreSQL skips parsing and planning it every batch.
  return client.query<LockAndRecordRow>({
    name: 'baton.lock_and_record',
    text: `WITH locked AS (
       SELECT id, workflow_name, workflow_version, status, error, retries, concurrency_key, metadata, created_at,
              depth, parent_run_id, parent_execution_id, priority,
              -- As lockRun's: only pending runs pay the lookup.
              CASE WHEN status = 'pending'
                   THEN EXISTS (SELECT 1 FROM workflow_pauses p WHERE p.workflow_name = runs.workflow_name)
                   ELSE false END AS paused,
              -- A large input the payload cache holds is not sent again (payload-cache.ts).
              CASE WHEN id = ANY($5::uuid[]) THEN NULL ELSE input END AS input,
              id = ANY($5::uuid[]) AS input_cached, pg_column_size(input) AS input_bytes
         FROM runs WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE
     ), r AS (
       SELECT r.* FROM jsonb_to_recordset($2::jsonb)
           AS r(id uuid, run_id uuid, attempt int, worker_id text, started_at timestamptz, at timestamptz, output text)
         JOIN locked ON locked.id = r.run_id
     ), attempts AS (
       INSERT INTO step_attempts (step_execution_id, attempt, status, worker_id, started_at, finished_at)
       SELECT r.id, r.attempt, 'succeeded', r.worker_id, COALESCE(r.started_at, r.at), r.at
         FROM r JOIN step_executions known ON known.id = r.id AND known.id = ANY($4::uuid[])
       ON CONFLICT (step_execution_id, attempt) DO UPDATE
         SET status = EXCLUDED.status, error = NULL, finished_at = EXCLUDED.finished_at
         WHERE step_attempts.status = 'running'
     ), recorded AS (
       UPDATE step_executions e
          SET status = 'succeeded', attempt = GREATEST(e.attempt, r.attempt), output = r.output::jsonb, error = NULL,
              worker_id = r.worker_id, started_at = COALESCE(e.started_at, r.started_at, r.at), finished_at = r.at,
              updated_at = now()
         FROM r
        WHERE e.id = r.id AND e.id = ANY($4::uuid[]) AND e.status = ANY($3)
        RETURNING e.id, e.run_id, e.step_id, e.kind, e.undoes_execution_id
     )
     SELECT 'run' AS what, to_jsonb(locked) AS row FROM locked
     UNION ALL
     SELECT 'recorded', to_jsonb(recorded) FROM recorded`,
    values: [
      runIds,
      JSON.stringify(
        reports.map((r) => ({
          id: r.stepExecutionId,
          run_id: r.runId,
          attempt: r.attempt,
          worker_id: r.workerId,
          started_at: r.startedAt ?? null,
          at: r.at,
          // As text, so a JSON null output stays JSON null rather than SQL NULL.
          output: JSON.stringify(r.output ?? null),
        })),
      ),
      NOT_FINISHED,
      reports.map((r) => r.stepExecutionId),
      heldRuns(runIds),
    ],
  });
}

/**
 * One statement for the start of a batch: locks the batch's runs (in id order: two coordinators
 * locking overlapping batches wait for each other instead of deadlocking) and records its step
 * successes — attempt rows and executions, with `applyReport`'s rules (a finished execution never
 * changes again). The successes join the locked runs, so an execution is only written once its run's
 * lock is held. Returns the locked runs and the executions the successes finished. One report per
 * execution: the caller drops duplicates.
 *
 * With `begin`, the transaction's BEGIN goes in the same round trip, ahead of it; with `load`, the
 * executions of those runs (as `loadExecutionsOf`) are read in it too, by a statement sent right
 * behind it: its own snapshot, taken once the locks are held and the successes recorded, so it sees
 * what the run's previous lock holder committed and what this statement wrote. One round trip for
 * all three (`pipelined`) instead of three.
 */
export async function lockAndRecord(
  client: PoolClient,
  runIds: string[],
  reports: SuccessReport[],
  opts: { begin?: boolean; load?: string[] } = {},
): Promise<{
  runs: Map<string, LockedRun>;
  recorded: Map<string, RecordedSuccess>;
  /** The executions of `opts.load`'s runs, as they are once the successes are recorded. */
  executions: Map<string, StepExecutionState[]>;
}> {
  const load = opts.load ?? [];
  const [, { rows }, loaded] = await pipelined(client, () => [
    opts.begin ? client.query('BEGIN') : Promise.resolve(undefined),
    sendLockAndRecord(client, runIds, reports),
    load.length ? sendLoad(client, load) : Promise.resolve({ rows: [] as ExecutionRow[] }),
  ]);
  const executions = collectExecutions(load, loaded.rows);
  const runs = new Map<string, LockedRun>();
  const recorded = new Map<string, RecordedSuccess>();
  const undoneItems: string[] = [];
  const itemCompensations = new Set(
    rows.filter((r) => r.what === 'recorded' && r.row.undoes_execution_id).map((r) => r.row.id),
  );
  for (const r of rows) {
    if (r.what === 'run') runs.set(r.row.id, toLockedRun({ ...r.row, created_at: new Date(r.row.created_at) }));
    else {
      recorded.set(r.row.id, { runId: r.row.run_id, stepId: r.row.step_id, kind: r.row.kind });
      if (r.row.undoes_execution_id) undoneItems.push(r.row.undoes_execution_id);
    }
  }
  // A compensation that succeeded has undone its step; a forEach compensation's item, its item (the
  // step's own execution is marked when the whole compensation ends: fanout-store.ts).
  const undone = [...recorded.entries()]
    .filter(([id, r]) => r.kind === 'compensation' && !itemCompensations.has(id))
    .map(([, r]) => r);
  if (undone.length) {
    await client.query(
      `UPDATE step_executions a SET status = 'compensated', updated_at = now()
         FROM jsonb_to_recordset($1::jsonb) AS c(run_id uuid, step_id text)
        WHERE a.run_id = c.run_id AND a.run_id = ANY($2::uuid[]) AND a.step_id = c.step_id AND a.kind = 'action'
          AND a.parent_execution_id IS NULL AND a.status = 'compensating'`,
      [JSON.stringify(undone.map((u) => ({ run_id: u.runId, step_id: u.stepId }))), undone.map((u) => u.runId)],
    );
  }
  if (undoneItems.length) {
    await client.query(
      `UPDATE step_executions SET status = 'compensated', updated_at = now()
        WHERE id = ANY($1::uuid[]) AND status = 'compensating'`,
      [undoneItems],
    );
  }
  return { runs, recorded, executions };
}

/** Log lines of many attempts in one INSERT. */
export async function insertLogsOf(
  client: PoolClient,
  entries: { runId: string; stepId: string | undefined; report: StepReport }[],
): Promise<void> {
  const lines = entries.flatMap(({ runId, stepId, report }) =>
    (report.logs ?? []).map((l) => ({
      ...l,
      run_id: runId,
      step_execution_id: report.stepExecutionId,
      step_id: stepId,
    })),
  );
  if (!lines.length) return;
  await client.query(
    `INSERT INTO run_logs (run_id, step_execution_id, step_id, level, message, data, time)
     SELECT l.run_id, l.step_execution_id, l.step_id, l.level, l.message, l.data, l.time
       FROM jsonb_to_recordset($1::jsonb)
         AS l(run_id uuid, step_execution_id uuid, step_id text, level text, message text, data jsonb, time timestamptz)`,
    [JSON.stringify(lines)],
  );
}

/** A change to a run row; fields left undefined are kept. */
export interface RunChange {
  status?: RunStatus;
  terminal?: boolean;
  output?: unknown;
  error?: RunError;
  /**
   * Set when the run is admitted (or retried): its concurrency key and its workflow deadline, now()
   * + `deadlineMs` (none without). The one place a deadline is computed.
   */
  admitted?: { concurrencyKey: string | null; deadlineMs: number | undefined; priority?: number };
}

/**
 * The writes that planning decides, buffered and written with one statement per kind when the
 * transaction is about to commit: a batch of 200 messages costs a handful of round trips, not a
 * thousand. Planning reads nothing it has buffered (each run is planned once per transaction).
 */
export class RunWrites {
  private readonly executions: (NewExecution & { runId: string })[] = [];
  private readonly skipped: { id: string; runId: string; stepId: string; function: string }[] = [];
  private readonly builtins: string[] = [];
  private readonly cancelled: { id: string; reason: string }[] = [];
  private readonly runs = new Map<string, RunChange>();

  insertExecutions(runId: string, executions: NewExecution[]): void {
    for (const e of executions) this.executions.push({ ...e, runId });
  }

  startBuiltins(ids: string[]): void {
    this.builtins.push(...ids);
  }

  insertSkipped(runId: string, skipped: { id: string; stepId: string; function: string }[]): void {
    for (const s of skipped) this.skipped.push({ ...s, runId });
  }

  cancel(ids: string[], reason: string): void {
    for (const id of ids) this.cancelled.push({ id, reason });
  }

  /** Merges into the run's pending change (a run with none is not written, `updated_at` included). */
  changeRun(runId: string, change: RunChange): void {
    this.runs.set(runId, { ...this.runs.get(runId), ...change });
  }

  /** The status this transaction gives the run, if any. */
  statusOf(runId: string): RunStatus | undefined {
    return this.runs.get(runId)?.status;
  }

  /** Whether this transaction admits the run (a held run's wake-up: was it admitted?). */
  admits(runId: string): boolean {
    return Boolean(this.runs.get(runId)?.admitted);
  }

  /**
   * Everything buffered, one statement per kind that has rows, all sent in one round trip
   * (`pipelined`); with `commit`, the transaction's COMMIT follows them in it. If a statement fails,
   * the ones behind it and the COMMIT only end the aborted transaction, and the first error is thrown.
   *
   * One statement per kind rather than one statement of all of them: PostgreSQL plans every part of
   * a statement each time it runs (the pool forces custom plans, engine/src/db/pool.ts), parts with
   * no rows too, and planning was most of the write's cost. The usual batch of a workflow in progress
   * only inserts the next steps' executions (no run write per report): one small INSERT to plan.
   */
  async flush(client: PoolClient, opts: { commit?: boolean } = {}): Promise<void> {
    const answers = await pipelined(client, () => [
      ...this.sendWrites(client),
      opts.commit ? client.query('COMMIT') : Promise.resolve(undefined),
    ]);
    const committed = answers[answers.length - 1] as { command?: string } | undefined;
    // An earlier failure would have been thrown; a COMMIT that rolled back must never pass for one.
    if (committed && committed.command !== 'COMMIT') {
      throw new Error(`the batch's transaction ended with ${committed.command}, not COMMIT`);
    }
  }

  /**
   * Sends the statement of each kind that has rows. The kinds touch disjoint rows; the updates of
   * step executions go before the inserts, so that, as in one statement, none of them sees this
   * batch's new rows.
   */
  private sendWrites(client: PoolClient): Promise<unknown>[] {
    const compensations = this.executions.filter((e) => e.kind === 'compensation');
    const sent: Promise<unknown>[] = [];
    if (this.cancelled.length) sent.push(cancelExecutions(client, this.cancelled));
    if (compensations.length) sent.push(markCompensating(client, compensations));
    if (this.executions.length) sent.push(insertExecutionRows(client, this.executions, new Set(this.builtins)));
    if (this.skipped.length) sent.push(insertSkippedRows(client, this.skipped));
    if (this.runs.size) sent.push(updateRuns(client, this.runs));
    return sent;
  }
}

/*
 * RunWrites' statements, one per kind. Named: prepared once per connection. Each UPDATE joins
 * jsonb_to_recordset() to its table on a key it also gets as an array (`= ANY(...)`): without the
 * array PostgreSQL plans a hash join over a sequential scan of the whole table
 * (test/integration/batch-plans.test.ts).
 */

/** Cancels executions that have not finished. */
function cancelExecutions(client: PoolClient, cancelled: { id: string; reason: string }[]): Promise<unknown> {
  return client.query({
    name: 'baton.cancel_executions',
    text: `UPDATE step_executions e
            SET status = 'cancelled', error = c.error, finished_at = now(), updated_at = now()
           FROM jsonb_to_recordset($1::jsonb) AS c(id uuid, error jsonb)
          WHERE e.id = c.id AND e.id = ANY($2::uuid[]) AND e.status = ANY($3)`,
    values: [
      JSON.stringify(
        cancelled.map((c) => ({
          id: c.id,
          error: { code: ErrorCode.CANCELLED, message: c.reason, nonRetryable: true },
        })),
      ),
      cancelled.map((c) => c.id),
      NOT_FINISHED,
    ],
  });
}

/** A compensation starting means its step's effect is being undone. */
function markCompensating(client: PoolClient, compensations: { runId: string; stepId: string }[]): Promise<unknown> {
  return client.query({
    name: 'baton.mark_compensating',
    text: `UPDATE step_executions a SET status = 'compensating', updated_at = now()
           FROM jsonb_to_recordset($1::jsonb) AS c(run_id uuid, step_id text)
          WHERE a.run_id = c.run_id AND a.run_id = ANY($2::uuid[]) AND a.step_id = c.step_id
            AND a.kind = 'action' AND a.parent_execution_id IS NULL AND a.status = 'succeeded'`,
    values: [
      JSON.stringify(compensations.map((c) => ({ run_id: c.runId, step_id: c.stepId }))),
      compensations.map((c) => c.runId),
    ],
  });
}

/** Built-in steps (sleep, waitForEvent) are running from the moment they are planned. */
function insertExecutionRows(
  client: PoolClient,
  executions: (NewExecution & { runId: string })[],
  builtins: Set<string>,
): Promise<unknown> {
  return client.query({
    name: 'baton.insert_executions',
    text: `INSERT INTO step_executions (id, run_id, step_id, kind, function_name, status, input, attempt,
                                      max_attempts, retry_policy, timeout_ms, metadata, queued_at, started_at,
                                      worker_id, error, finished_at, child_run_id)
         SELECT e.id, e.run_id, e.step_id, e.kind, e.function_name, e.status,
                e.input::jsonb, CASE WHEN e.builtin THEN 1 ELSE 0 END, e.max_attempts, e.retry_policy, e.timeout_ms,
                COALESCE(e.metadata, '{}'::jsonb), now(), CASE WHEN e.status <> 'queued' THEN now() END,
                CASE WHEN e.builtin THEN 'coordinator' END, e.error,
                CASE WHEN e.status = 'failed' THEN now() END, e.child_run_id
           FROM jsonb_to_recordset($1::jsonb) AS e(id uuid, run_id uuid, step_id text, kind text, function_name text,
                                                   status text, input text, max_attempts int, retry_policy jsonb,
                                                   timeout_ms int, metadata jsonb, builtin boolean, error jsonb,
                                                   child_run_id uuid)`,
    values: [
      JSON.stringify(
        executions.map((e) => ({
          id: e.id,
          run_id: e.runId,
          step_id: e.stepId,
          kind: e.kind,
          function_name: e.function,
          status: initialStatus(e, builtins.has(e.id)),
          error: e.error ?? null,
          // A child run's id is the id of the execution that awaits it (one child per execution).
          child_run_id: e.function === CHILD_WORKFLOW_FUNCTION && !e.error && !e.fanout ? e.id : null,
          // As text, so a JSON null input stays JSON null rather than SQL NULL.
          input: JSON.stringify(e.input ?? null),
          max_attempts: e.retry.attempts,
          metadata: e.idempotencyKey ? { idempotencyKey: e.idempotencyKey } : null,
          retry_policy: e.retry,
          timeout_ms: e.timeoutMs ?? null,
          builtin: builtins.has(e.id),
        })),
      ),
    ],
  });
}

function insertSkippedRows(
  client: PoolClient,
  skipped: { id: string; runId: string; stepId: string; function: string }[],
): Promise<unknown> {
  return client.query({
    name: 'baton.insert_skipped',
    text: `INSERT INTO step_executions (id, run_id, step_id, kind, function_name, status, max_attempts, retry_policy,
                                      finished_at)
         SELECT e.id, e.run_id, e.step_id, 'action', e.function_name, 'skipped', 0, '{}'::jsonb, now()
           FROM jsonb_to_recordset($1::jsonb) AS e(id uuid, run_id uuid, step_id text, function_name text)`,
    values: [
      JSON.stringify(
        skipped.map((sk) => ({ id: sk.id, run_id: sk.runId, step_id: sk.stepId, function_name: sk.function })),
      ),
    ],
  });
}

function updateRuns(client: PoolClient, runs: Map<string, RunChange>): Promise<unknown> {
  return client.query({
    name: 'baton.update_runs',
    text: `UPDATE runs r
            SET status = COALESCE(u.status, r.status),
                started_at = CASE WHEN u.status IS NULL THEN r.started_at ELSE COALESCE(r.started_at, now()) END,
                finished_at = CASE WHEN u.terminal THEN now() ELSE r.finished_at END,
                output = COALESCE(u.output::jsonb, r.output),
                error = COALESCE(u.error, r.error),
                concurrency_key = CASE WHEN u.admitted THEN u.concurrency_key ELSE r.concurrency_key END,
                priority = COALESCE(u.priority, r.priority),
                deadline_at = CASE WHEN u.admitted IS NOT TRUE THEN r.deadline_at
                                   WHEN u.deadline_ms IS NULL THEN NULL
                                   ELSE now() + make_interval(secs => u.deadline_ms / 1000.0) END,
                updated_at = now()
           FROM jsonb_to_recordset($1::jsonb)
             AS u(id uuid, status text, terminal boolean, output text, error jsonb, admitted boolean,
                  concurrency_key text, deadline_ms bigint, priority smallint)
          WHERE r.id = u.id AND r.id = ANY($2::uuid[])`,
    values: [
      JSON.stringify(
        [...runs].map(([id, c]) => ({
          id,
          status: c.status ?? null,
          terminal: c.terminal ?? false,
          output: c.output === undefined ? null : JSON.stringify(c.output),
          error: c.error ?? null,
          admitted: Boolean(c.admitted),
          concurrency_key: c.admitted?.concurrencyKey ?? null,
          deadline_ms: c.admitted?.deadlineMs ?? null,
          priority: c.admitted?.priority ?? null,
        })),
      ),
      [...runs.keys()],
    ],
  });
}
