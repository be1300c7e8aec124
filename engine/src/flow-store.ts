import type { Pool } from './db/pool';

/**
 * SQL of the trigger side of singleton and debounce (singleton.ts, debounce.ts; migration 011): the
 * run holding a singleton key, the release of that key with the holder's cancel request, and a
 * trigger's upsert of its debounce window. The coordinator's side of a window (firing it) is in
 * services/coordinator/src/debounce-store.ts.
 */

type Queryable = Pick<Pool, 'query'>;

/** Statuses in which a run holds its singleton key (the predicate of the index `runs_singleton`). */
export const SINGLETON_ACTIVE_STATUSES = ['pending', 'running', 'compensating'] as const;

/** The active run holding each `(workflow, key)`, by `singletonSlot`. */
export async function singletonHolders(
  client: Queryable,
  slots: { workflow: string; key: string }[],
): Promise<Map<string, { runId: string; status: string }>> {
  if (!slots.length) return new Map();
  const { rows } = await client.query<{ id: string; status: string; workflow_name: string; singleton_key: string }>(
    `SELECT r.id, r.status, r.workflow_name, r.singleton_key
       FROM runs r JOIN jsonb_to_recordset($1::jsonb) AS k(workflow_name text, singleton_key text)
         ON r.workflow_name = k.workflow_name AND r.singleton_key = k.singleton_key
      WHERE r.workflow_name = ANY($2::text[]) AND r.singleton_key = ANY($3::text[])
        AND r.status IN ('pending', 'running', 'compensating')`,
    [
      JSON.stringify(slots.map((s) => ({ workflow_name: s.workflow, singleton_key: s.key }))),
      [...new Set(slots.map((s) => s.workflow))],
      slots.map((s) => s.key),
    ],
  );
  return new Map(rows.map((r) => [singletonSlot(r.workflow_name, r.singleton_key), { runId: r.id, status: r.status }]));
}

/** The key `singletonHolders` answers by. */
export function singletonSlot(workflow: string, key: string): string {
  return `${workflow}\u0000${key}`;
}

/**
 * cancelRunning: the active run holding `(workflow, key)` gives the key up and gets its cancel
 * request (the outbox `control_requests`, applied by the coordinator as `POST /v1/runs/:id/cancel`),
 * in one statement, so a released run is always one being cancelled. Returns what was released.
 */
export async function releaseSingleton(
  client: Queryable,
  workflow: string,
  key: string,
  compensate: boolean,
): Promise<{ runId: string; requestId: string }[]> {
  const { rows } = await client.query<{ run_id: string; id: string }>(
    `WITH released AS (
       UPDATE runs SET singleton_key = NULL, updated_at = now()
        WHERE workflow_name = $1 AND singleton_key = $2 AND status IN ('pending', 'running', 'compensating')
       RETURNING id
     )
     INSERT INTO control_requests (id, run_id, type, payload)
     SELECT gen_random_uuid(), id, 'run.cancel', $3::jsonb FROM released
     RETURNING run_id, id`,
    [workflow, key, JSON.stringify({ compensate, reason: 'singleton' })],
  );
  return rows.map((r) => ({ runId: r.run_id, requestId: r.id }));
}

export interface DebounceTrigger {
  workflow: string;
  key: string;
  /** The id the run gets if this trigger opens the window (otherwise the window's is kept). */
  runId: string;
  version: number;
  input: unknown;
  trigger: unknown;
  tags: Record<string, string>;
  metadata: Record<string, unknown>;
  periodMs: number;
  maxWaitMs: number | undefined;
}

export interface DebounceWindow {
  runId: string;
  /** Triggers collapsed so far, this one included. */
  count: number;
  /** This trigger opened the window (its timer is to be armed). */
  opened: boolean;
  firesAt: Date;
  /** firstAt + maxWaitMs, when the definition has one. */
  deadline: Date | null;
  /** The database's clock at the upsert (timers are computed from it, not from this process's). */
  now: Date;
}

/**
 * A trigger joins the open window of its key (latest input, trigger and tags, one more in `count`,
 * `fire_at` moved to now + periodMs but never past first + maxWaitMs) or opens one, in one statement.
 * Undefined: the key's window is due but not fired yet (its timer is late); it is closed to new
 * triggers, which fire it (`fireDueWindow`) and try again.
 */
export async function upsertDebounce(client: Queryable, t: DebounceTrigger): Promise<DebounceWindow | undefined> {
  const { rows } = await client.query<{
    run_id: string;
    count: number;
    opened: boolean;
    fire_at: Date;
    deadline: Date | null;
    now: Date;
  }>(
    `INSERT INTO debounces AS d (workflow_name, debounce_key, run_id, workflow_version, input, trigger, tags, metadata,
                                 count, first_at, last_at, fire_at)
     VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, $8::jsonb, 1, now(), now(),
             now() + make_interval(secs => $9::double precision / 1000))
     ON CONFLICT (workflow_name, debounce_key) DO UPDATE
       SET workflow_version = EXCLUDED.workflow_version, input = EXCLUDED.input, trigger = EXCLUDED.trigger,
           tags = EXCLUDED.tags, count = d.count + 1, last_at = now(),
           fire_at = LEAST(now() + make_interval(secs => $9::double precision / 1000),
                           COALESCE(d.first_at + make_interval(secs => $10::double precision / 1000), 'infinity'))
       WHERE d.fire_at > now()
     RETURNING run_id, count, (xmax = 0) AS opened, fire_at,
               first_at + make_interval(secs => $10::double precision / 1000) AS deadline, now() AS now`,
    [
      t.workflow,
      t.key,
      t.runId,
      t.version,
      JSON.stringify(t.input ?? null),
      JSON.stringify(t.trigger),
      JSON.stringify(t.tags),
      JSON.stringify(t.metadata),
      t.periodMs,
      t.maxWaitMs ?? null,
    ],
  );
  const row = rows[0];
  if (!row) return undefined;
  return {
    runId: row.run_id,
    count: row.count,
    opened: row.opened,
    firesAt: row.fire_at,
    deadline: row.deadline,
    now: row.now,
  };
}

/**
 * Fires a debounce window if it is due: deletes it and inserts its run (`pending`, its `run_id`, the
 * latest input, `trigger.debounced = {count, key, firstAt, lastAt}`) in one statement, so a window
 * starts one run whoever fires it, however often (its timer, a re-sent one, the reconciler's sweep,
 * another replica, a trigger that found it due). `runId` narrows it to that window. Undefined: not
 * due (a later trigger pushed it back) or fired already.
 */
export async function fireDueWindow(
  client: Queryable,
  window: { workflow: string; key: string; runId?: string },
): Promise<{ runId: string; count: number; metadata: Record<string, unknown> } | undefined> {
  const { rows } = await client.query<{ id: string; count: number; metadata: Record<string, unknown> }>(
    `WITH taken AS (
       DELETE FROM debounces
        WHERE workflow_name = $1 AND debounce_key = $2 AND ($3::uuid IS NULL OR run_id = $3) AND fire_at <= now()
       RETURNING *
     )
     INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger, metadata, tags)
     SELECT run_id, workflow_name, workflow_version, 'pending', input,
            trigger || jsonb_build_object('debounced', jsonb_build_object(
              'count', count, 'key', debounce_key, 'firstAt', first_at, 'lastAt', last_at)),
            metadata, tags
       FROM taken
     ON CONFLICT DO NOTHING
     RETURNING id, (trigger->'debounced'->>'count')::int AS count, metadata`,
    [window.workflow, window.key, window.runId ?? null],
  );
  const row = rows[0];
  return row ? { runId: row.id, count: row.count, metadata: row.metadata } : undefined;
}
