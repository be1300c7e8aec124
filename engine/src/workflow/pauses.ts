import type { Pool } from '../db/pool';
import { NotFoundError } from '@baton/workflow';

/**
 * Paused workflows (`workflow_pauses`, a row while paused): new runs are accepted and stay `pending`
 * until the workflow is resumed; running runs go on. The coordinator reads the row in the statement
 * that locks a pending run (services/coordinator/src/run-store.ts), so it survives restarts and is
 * shared by every replica.
 */

export interface WorkflowPause {
  name: string;
  paused: boolean;
  /** When it was paused; null when it is not. */
  pausedAt: Date | null;
}

/**
 * Pauses or resumes a workflow; NotFoundError for a workflow never defined. Pausing a paused
 * workflow keeps its first `pausedAt`; `changed` says whether anything changed (a resume that did
 * sends the coordinator its wake-up).
 */
export async function setWorkflowPaused(
  pool: Pick<Pool, 'query'>,
  name: string,
  paused: boolean,
): Promise<WorkflowPause & { changed: boolean }> {
  const { rows: defined } = await pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM workflow_definitions WHERE name = $1',
    [name],
  );
  if (!defined[0]?.n) throw new NotFoundError('workflow', name);
  if (paused) {
    const { rows } = await pool.query<{ paused_at: Date; inserted: boolean }>(
      `INSERT INTO workflow_pauses (workflow_name) VALUES ($1)
       ON CONFLICT (workflow_name) DO UPDATE SET paused_at = workflow_pauses.paused_at
       RETURNING paused_at, (xmax = 0) AS inserted`,
      [name],
    );
    return { name, paused: true, pausedAt: rows[0].paused_at, changed: rows[0].inserted };
  }
  const { rowCount } = await pool.query('DELETE FROM workflow_pauses WHERE workflow_name = $1', [name]);
  return { name, paused: false, pausedAt: null, changed: (rowCount ?? 0) > 0 };
}

/** When each paused workflow was paused, by name. */
export async function pausedWorkflows(pool: Pick<Pool, 'query'>): Promise<Map<string, Date>> {
  const { rows } = await pool.query<{ workflow_name: string; paused_at: Date }>(
    'SELECT workflow_name, paused_at FROM workflow_pauses',
  );
  return new Map(rows.map((r) => [r.workflow_name, r.paused_at]));
}
