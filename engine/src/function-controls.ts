import { Queue } from 'bullmq';
import type { Pool } from './db/pool';
import { functionQueueName, type QueueContext } from './queues';

/**
 * Function pause (`POST /v1/functions/:name/pause|resume`). PostgreSQL (`function_controls`) is the
 * truth; the effect is BullMQ's queue pause on `{fn.<name>}`: the queue's meta hash gets `paused`,
 * workers stop taking jobs (running attempts finish), new step jobs are still added to `wait` and
 * stay there, and the KEDA backlog of a paused queue counts only its running attempts
 * (services/coordinator/src/backlog.ts), so a paused function never scales up.
 *
 * A Redis wipe (or a fresh Redis) loses the meta hash: `syncFunctionPauses` puts every stored state
 * back; the coordinator runs it at start and on every reconcile pass. Only functions with a row are
 * touched: a queue paused by hand (Bull Board) and never through the API is left as it is.
 */

export interface FunctionControl {
  name: string;
  paused: boolean;
  /** Why it was paused, as given; null once resumed. */
  reason: string | null;
  pausedAt: Date | null;
}

interface ControlRow {
  name: string;
  paused: boolean;
  reason: string | null;
  paused_at: Date | null;
}

const toControl = (row: ControlRow): FunctionControl => ({
  name: row.name,
  paused: row.paused,
  reason: row.reason,
  pausedAt: row.paused_at,
});

/** The stored state of every function that was ever paused or resumed, by name. */
export async function functionControls(pool: Pick<Pool, 'query'>): Promise<Map<string, FunctionControl>> {
  const { rows } = await pool.query<ControlRow>('SELECT name, paused, reason, paused_at FROM function_controls');
  return new Map(rows.map((row) => [row.name, toControl(row)]));
}

/** Records the state (the truth), then returns it; `reason` only for a pause. */
export async function recordFunctionPaused(
  pool: Pick<Pool, 'query'>,
  name: string,
  paused: boolean,
  reason?: string,
): Promise<FunctionControl> {
  // A repeated pause keeps the first pause's time and reason unless a new reason is given.
  const { rows } = await pool.query<ControlRow>(
    `INSERT INTO function_controls (name, paused, reason, paused_at)
     VALUES ($1, $2, CASE WHEN $2 THEN $3::text END, CASE WHEN $2 THEN now() END)
     ON CONFLICT (name) DO UPDATE SET
       paused = EXCLUDED.paused,
       reason = CASE WHEN NOT EXCLUDED.paused THEN NULL
                     WHEN function_controls.paused THEN COALESCE($3::text, function_controls.reason)
                     ELSE $3::text END,
       paused_at = CASE WHEN NOT EXCLUDED.paused THEN NULL
                        WHEN function_controls.paused THEN function_controls.paused_at
                        ELSE now() END,
       updated_at = now()
     RETURNING name, paused, reason, paused_at`,
    [name, paused, reason ?? null],
  );
  return toControl(rows[0]);
}

/** Pauses or resumes `{fn.<name>}` in Redis (BullMQ's global queue pause); a no-op when it already is. */
export async function applyFunctionPause(queues: QueueContext, name: string, paused: boolean): Promise<boolean> {
  const queue = new Queue(functionQueueName(name), { connection: queues.connection, prefix: queues.prefix });
  queue.on('error', () => undefined);
  try {
    if ((await queue.isPaused()) === paused) return false;
    if (paused) await queue.pause();
    else await queue.resume();
    return true;
  } finally {
    // The connection is the caller's: closing the queue leaves it open.
    await queue.close();
  }
}

/**
 * Makes Redis agree with PostgreSQL for every function with a stored state: the names it paused
 * and resumed (those that already agreed are not listed).
 */
export async function syncFunctionPauses(
  pool: Pick<Pool, 'query'>,
  queues: QueueContext,
): Promise<{ paused: string[]; resumed: string[] }> {
  const result = { paused: [] as string[], resumed: [] as string[] };
  for (const control of (await functionControls(pool)).values()) {
    if (await applyFunctionPause(queues, control.name, control.paused)) {
      (control.paused ? result.paused : result.resumed).push(control.name);
    }
  }
  return result;
}
