import crypto from 'node:crypto';
import { TERMINAL_RUN_STATUSES } from '@baton/workflow';
import type { Pool } from '@baton/engine';

/**
 * SQL of a schedule's `overlap` (Triggers.fireSchedule): the active runs a schedule started, and a
 * cancel of one recorded in the control outbox (`control_requests`), as the gateway records one.
 */

/**
 * Active runs (pending, running, compensating) started by schedule `scheduleId`, oldest first, but
 * the one with `exceptKey` (the tick's own run, when the tick is handled again).
 */
export async function activeScheduledRuns(
  pool: Pool,
  workflow: string,
  scheduleId: string,
  exceptKey: string | undefined,
): Promise<string[]> {
  // The partial index runs_active_by_schedule (migration 009) holds exactly these rows.
  const { rows } = await pool.query<{ id: string }>(
    `SELECT id FROM runs
      WHERE workflow_name = $1 AND trigger->>'scheduleId' = $2
        AND status IN ('pending', 'running', 'compensating') AND trigger->>'type' = 'schedule'
        AND idempotency_key IS DISTINCT FROM $3
      ORDER BY created_at`,
    [workflow, scheduleId, exceptKey ?? null],
  );
  return rows.map((r) => r.id);
}

/** Records a cancel (no compensation) unless the run has finished meanwhile; the request id, if recorded. */
export async function recordScheduleCancel(pool: Pool, runId: string): Promise<string | undefined> {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO control_requests (id, run_id, type, payload)
     SELECT $2, id, 'run.cancel', '{"compensate":false}'::jsonb FROM runs WHERE id = $1 AND NOT (status = ANY($3))
     RETURNING id`,
    [runId, crypto.randomUUID(), TERMINAL_RUN_STATUSES],
  );
  return rows[0]?.id;
}
