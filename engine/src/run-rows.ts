import type { Pool } from './db/pool';
import { DEFAULT_PRIORITY } from '@baton/workflow';
import type { DispatchedExecution } from './step-jobs';

/**
 * The one way runs are inserted, for both starters: the gateway's `RunStarter` (run-starter.ts, a
 * group-committed batch) and `startRun` (runs.ts: schedules and events, one run). Each validates the
 * input first; here a run row is written `pending`, and a repeated `(workflow, idempotency key)`
 * inserts nothing and finds the first run instead. A run given its `start` (direct-start.ts: a
 * workflow without admission limits) is written `running` with its first steps queued, by the same
 * statement, unless its workflow is paused.
 */

type Queryable = Pick<Pool, 'query'>;

/** A run's admission and first plan, made by the gateway (direct-start.ts) and written with the run. */
export interface RunStart {
  priority: number;
  /** The workflow's `timeoutMs`: the run's `deadline_at` counts from the insert. */
  deadlineMs?: number;
  /** Executions to write `queued` (their jobs are enqueued after the commit). */
  queued: DispatchedExecution[];
  /** Steps whose condition was false: written `skipped`, as the coordinator does. */
  skipped: { id: string; stepId: string; function: string }[];
}

export interface NewRun {
  id: string;
  workflow: string;
  version: number | undefined;
  input: unknown;
  trigger: unknown;
  idempotencyKey?: string;
  /** `runs.metadata` (the trace context, when tracing is on). */
  metadata: Record<string, unknown>;
  /** `runs.tags`, already validated and resolved (workflow/tags.ts). */
  tags: Record<string, string>;
  /** `runs.singleton_key` (singleton.ts): while the run is active, no other run of the workflow has it. */
  singletonKey?: string;
  /** Started with the insert when its workflow is not paused (returned `running`), else `pending`. */
  start?: RunStart;
}

/**
 * Inserts runs with one statement; returns the ids inserted with the status each was written with.
 * `onlyLatest`: a run is inserted only if its version is still its workflow's latest (RunStarter
 * validated the input against the latest it knew, and starts the others again). startRun's callers
 * start the version they hold (the one a schedule or a subscription came from), so it passes false.
 *
 * A run with a `start` whose workflow is not paused is written `running`, admitted (`started_at`,
 * `priority`, `deadline_at`, as the coordinator's admission writes them) with its first executions
 * in the same statement: they are written only for a run the statement inserted, so a repeated
 * idempotency key or a held singleton key inserts no step either. A paused workflow's run is written
 * `pending` and goes through the coordinator's admission like any other.
 */
export async function insertRuns(
  client: Queryable,
  runs: NewRun[],
  opts: { onlyLatest: boolean },
): Promise<Map<string, 'pending' | 'running'>> {
  if (!runs.length) return new Map();
  // A repeated idempotency key (an earlier run, or an earlier item of this batch) inserts nothing, nor
  // does a singleton key an active run holds (the index runs_singleton; ON CONFLICT without a target
  // covers both unique indexes).
  // Named statements: prepared once per connection instead of parsed and planned every batch.
  const { rows } = await client.query<{ id: string; status: 'pending' | 'running' }>({
    name: 'baton.insert_runs',
    text: `WITH given AS (
       SELECT r.*, (r.direct AND NOT EXISTS (SELECT 1 FROM workflow_pauses p WHERE p.workflow_name = r.workflow_name)) AS starts
         FROM jsonb_to_recordset($1::jsonb)
              AS r(id uuid, workflow_name text, workflow_version int, input text, trigger jsonb, idempotency_key text, metadata jsonb,
                   tags jsonb, singleton_key text, direct boolean, priority smallint, deadline_ms bigint)
     ), inserted AS (
       INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger, idempotency_key, metadata, tags,
                         singleton_key, priority, started_at, deadline_at)
       SELECT g.id, g.workflow_name, g.workflow_version, CASE WHEN g.starts THEN 'running' ELSE 'pending' END, g.input::jsonb,
              g.trigger, g.idempotency_key, g.metadata, COALESCE(g.tags, '{}'), g.singleton_key,
              CASE WHEN g.starts THEN g.priority ELSE $3::smallint END,
              CASE WHEN g.starts THEN now() END,
              CASE WHEN g.starts AND g.deadline_ms IS NOT NULL THEN now() + make_interval(secs => g.deadline_ms / 1000.0) END
         FROM given g
        WHERE $2::boolean IS NOT TRUE
           OR g.workflow_version = (SELECT max(d.version) FROM workflow_definitions d WHERE d.name = g.workflow_name)
       ON CONFLICT DO NOTHING
       RETURNING id, status
     ), queued AS (
       INSERT INTO step_executions (id, run_id, step_id, kind, function_name, status, input, attempt, max_attempts,
                                    retry_policy, timeout_ms, metadata, queued_at)
       SELECT e.id, e.run_id, e.step_id, e.kind, e.function_name, 'queued', e.input::jsonb, 0, e.max_attempts,
              e.retry_policy, e.timeout_ms, COALESCE(e.metadata, '{}'::jsonb), now()
         FROM jsonb_to_recordset($4::jsonb) AS e(id uuid, run_id uuid, step_id text, kind text, function_name text,
                                                 input text, max_attempts int, retry_policy jsonb, timeout_ms int,
                                                 metadata jsonb)
         JOIN inserted i ON i.id = e.run_id AND i.status = 'running'
     ), skipped AS (
       INSERT INTO step_executions (id, run_id, step_id, kind, function_name, status, max_attempts, retry_policy, finished_at)
       SELECT e.id, e.run_id, e.step_id, 'action', e.function_name, 'skipped', 0, '{}'::jsonb, now()
         FROM jsonb_to_recordset($5::jsonb) AS e(id uuid, run_id uuid, step_id text, function_name text)
         JOIN inserted i ON i.id = e.run_id AND i.status = 'running'
     )
     SELECT id, status FROM inserted`,
    values: [
      JSON.stringify(
        runs.map((r) => ({
          id: r.id,
          workflow_name: r.workflow,
          workflow_version: r.version,
          // As text, so a JSON null input stays JSON null rather than SQL NULL.
          input: JSON.stringify(r.input ?? null),
          trigger: r.trigger,
          idempotency_key: r.idempotencyKey ?? null,
          metadata: r.metadata,
          tags: r.tags,
          singleton_key: r.singletonKey ?? null,
          direct: r.start !== undefined,
          priority: r.start?.priority ?? null,
          deadline_ms: r.start?.deadlineMs ?? null,
        })),
      ),
      opts.onlyLatest,
      DEFAULT_PRIORITY,
      JSON.stringify(
        runs.flatMap((r) =>
          (r.start?.queued ?? []).map((e) => ({
            id: e.id,
            run_id: r.id,
            step_id: e.stepId,
            kind: e.kind,
            function_name: e.function,
            input: JSON.stringify(e.input ?? null),
            max_attempts: e.retry.attempts,
            retry_policy: e.retry,
            timeout_ms: e.timeoutMs ?? null,
            metadata: e.idempotencyKey ? { idempotencyKey: e.idempotencyKey } : null,
          })),
        ),
      ),
      JSON.stringify(
        runs.flatMap((r) =>
          (r.start?.skipped ?? []).map((sk) => ({
            id: sk.id,
            run_id: r.id,
            step_id: sk.stepId,
            function_name: sk.function,
          })),
        ),
      ),
    ],
  });
  return new Map(rows.map((r) => [r.id, r.status]));
}

/** The key `existingRuns` answers by. */
export function runKey(workflow: string, idempotencyKey: string | undefined): string {
  return `${workflow}\u0000${idempotencyKey}`;
}

/** The runs already started with these idempotency keys, by `runKey`. */
export async function existingRuns(
  client: Queryable,
  keys: { workflow: string; idempotencyKey?: string }[],
): Promise<Map<string, { runId: string; status: string }>> {
  if (!keys.length) return new Map();
  const { rows } = await client.query<{ id: string; status: string; workflow_name: string; idempotency_key: string }>(
    // The arrays let PostgreSQL use the idempotency index rather than scan runs (see run-store.ts).
    `SELECT r.id, r.status, r.workflow_name, r.idempotency_key
       FROM runs r JOIN jsonb_to_recordset($1::jsonb) AS k(workflow_name text, idempotency_key text)
         ON r.workflow_name = k.workflow_name AND r.idempotency_key = k.idempotency_key
      WHERE r.workflow_name = ANY($2::text[]) AND r.idempotency_key = ANY($3::text[])`,
    [
      JSON.stringify(keys.map((k) => ({ workflow_name: k.workflow, idempotency_key: k.idempotencyKey }))),
      [...new Set(keys.map((k) => k.workflow))],
      keys.map((k) => k.idempotencyKey ?? ''),
    ],
  );
  return new Map(rows.map((r) => [runKey(r.workflow_name, r.idempotency_key), { runId: r.id, status: r.status }]));
}
