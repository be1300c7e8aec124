import type { RunStatus } from '@baton/workflow';
import { withTransaction, type Pool } from '@baton/engine';

/**
 * The gateway's SQL of `POST /v1/runs/:id/fork`: the source run with the succeeded executions it
 * could hand on, and the fork inserted with the copies of those it keeps, in one transaction.
 */

export interface ForkSource {
  id: string;
  workflow: string;
  version: number;
  status: RunStatus;
  input: unknown;
  tags: Record<string, string>;
  /** Each step's execution in force that succeeded (not superseded; a step's own, never an item). */
  succeeded: { stepId: string; executionId: string }[];
}

export async function getForkSource(pool: Pool, runId: string): Promise<ForkSource | undefined> {
  const { rows } = await pool.query<{
    id: string;
    workflow_name: string;
    workflow_version: number;
    status: RunStatus;
    input: unknown;
    tags: Record<string, string>;
  }>('SELECT id, workflow_name, workflow_version, status, input, tags FROM runs WHERE id = $1', [runId]);
  const run = rows[0];
  if (!run) return undefined;
  // The newest action execution of each step (a retried run has older ones, superseded).
  const steps = await pool.query<{ step_id: string; id: string; status: string }>(
    `SELECT DISTINCT ON (step_id) step_id, id, status FROM step_executions
      WHERE run_id = $1 AND kind = 'action' AND parent_execution_id IS NULL AND superseded_at IS NULL
      ORDER BY step_id, created_at DESC, id DESC`,
    [runId],
  );
  return {
    id: run.id,
    workflow: run.workflow_name,
    version: run.workflow_version,
    status: run.status,
    input: run.input,
    tags: run.tags,
    succeeded: steps.rows
      .filter((s) => s.status === 'succeeded')
      .map((s) => ({ stepId: s.step_id, executionId: s.id })),
  };
}

export interface NewFork {
  id: string;
  source: ForkSource;
  input: unknown;
  trigger: Record<string, unknown>;
  metadata: Record<string, unknown>;
  /** The source executions whose step the fork keeps. */
  keep: string[];
}

/**
 * Inserts the fork (`pending`, same workflow version, `forked_from` the source, its tags) and a copy
 * of each kept execution: succeeded, with its input, output, attempts made and times (so the fork
 * lists its steps in the order they ran), `copied_from` the original. A forEach/repeat step's copy is its own execution only: its output (the items' outputs
 * in list order) without the items, which the fork never needs. Returns false when the source run is
 * gone (deleted meanwhile): nothing is inserted.
 */
export async function insertFork(pool: Pool, fork: NewFork): Promise<boolean> {
  return withTransaction(pool, async (client) => {
    const run = await client.query(
      `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger, metadata, tags, forked_from)
       SELECT $1, workflow_name, workflow_version, 'pending', $2::jsonb, $3::jsonb, $4::jsonb, tags, id
         FROM runs WHERE id = $5`,
      [
        fork.id,
        JSON.stringify(fork.input ?? null),
        JSON.stringify(fork.trigger),
        JSON.stringify(fork.metadata),
        fork.source.id,
      ],
    );
    if (!run.rowCount) return false;
    await client.query(
      `INSERT INTO step_executions (id, run_id, step_id, kind, function_name, status, input, output, attempt, max_attempts,
                                    retry_policy, timeout_ms, worker_id, metadata, child_run_id, created_at, queued_at,
                                    started_at, finished_at, copied_from)
       SELECT gen_random_uuid(), $1, step_id, 'action', function_name, 'succeeded', input, output, attempt, max_attempts,
              retry_policy, timeout_ms, worker_id, metadata, child_run_id, created_at, queued_at, started_at, finished_at,
              id
         FROM step_executions WHERE id = ANY($2::uuid[]) AND run_id = $3 AND status = 'succeeded'`,
      [fork.id, fork.keep, fork.source.id],
    );
    return true;
  });
}
