import type { Pool } from '@baton/engine';

/**
 * SQL of the coordinator's side of debounce windows (`debounces`, migration 011; the trigger side and
 * the firing statement, which triggers use too, are engine/src/flow-store.ts): when a window is due,
 * the windows past due for the reconciler.
 */

/** A window still open: when it is due now, and the database's clock. */
export async function windowDue(pool: Pool, runId: string): Promise<{ fireAt: Date; now: Date } | undefined> {
  const { rows } = await pool.query<{ fire_at: Date; now: Date }>(
    'SELECT fire_at, now() AS now FROM debounces WHERE run_id = $1',
    [runId],
  );
  return rows[0] ? { fireAt: rows[0].fire_at, now: rows[0].now } : undefined;
}

/** Windows due for longer than `graceSecs` (their timer lost), oldest first (index `debounces_due`). */
export async function overdueWindows(
  pool: Pool,
  graceSecs: number,
  limit: number,
): Promise<{ workflow: string; key: string; runId: string }[]> {
  const { rows } = await pool.query<{ workflow_name: string; debounce_key: string; run_id: string }>(
    `SELECT workflow_name, debounce_key, run_id FROM debounces
      WHERE fire_at <= now() - make_interval(secs => $1) ORDER BY fire_at LIMIT $2`,
    [graceSecs, limit],
  );
  return rows.map((r) => ({ workflow: r.workflow_name, key: r.debounce_key, runId: r.run_id }));
}
