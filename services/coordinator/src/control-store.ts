import { WAIT_FOR_EVENT_FUNCTION } from '@baton/workflow';
import type { Pool, PoolClient } from '@baton/engine';

/**
 * The coordinator's SQL for the control outbox (migrations/005.do.control-requests.sql): requests
 * recorded in PostgreSQL before anyone was told (cancel and retry by the gateway, the event check of a
 * wait that begins by the coordinator itself), and events not yet offered to parked runs. A request
 * is applied under its run's lock and marked done in that transaction; the reconciler re-drives the
 * ones left undone (control-outbox.ts).
 */

export type ControlRequestType = 'run.cancel' | 'run.retry' | 'wait.check';

export interface ControlRequest {
  id: string;
  runId: string;
  type: ControlRequestType;
  /** `{compensate}` for a cancel, `{attempt, input?, stepId?}` for a retry, `{}` for a wait check. */
  payload: Record<string, unknown>;
  attempts: number;
}

/**
 * Marks a request done in the caller's transaction, which holds the request's run lock; false when
 * it was done already (or is unknown): then the caller applies nothing. Done and applied commit
 * together, so a request is applied once however often its message or the reconciler brings it.
 */
export async function takeRequest(client: PoolClient, id: string): Promise<boolean> {
  const { rowCount } = await client.query(
    'UPDATE control_requests SET done_at = now() WHERE id = $1 AND done_at IS NULL',
    [id],
  );
  return (rowCount ?? 0) > 0;
}

/**
 * Records, with the waitForEvent executions being planned, that each must look at the events already
 * stored once it is committed. The request id is the execution id.
 */
export async function recordWaitChecks(client: PoolClient, runId: string, stepExecutionIds: string[]): Promise<void> {
  if (!stepExecutionIds.length) return;
  await client.query(
    `INSERT INTO control_requests (id, run_id, type)
     SELECT id, $1, 'wait.check' FROM unnest($2::uuid[]) AS id
     ON CONFLICT (id) DO NOTHING`,
    [runId, stepExecutionIds],
  );
}

/** Requests not done, recorded more than `graceMs` ago and re-driven fewer than `maxAttempts` times. */
export async function dueRequests(
  pool: Pool,
  graceMs: number,
  limit: number,
  maxAttempts: number,
): Promise<ControlRequest[]> {
  const { rows } = await pool.query<{
    id: string;
    run_id: string;
    type: ControlRequestType;
    payload: Record<string, unknown> | null;
    attempts: number;
  }>(
    `SELECT id, run_id, type, payload, attempts FROM control_requests
      WHERE done_at IS NULL AND created_at < now() - make_interval(secs => $1) AND attempts < $3
      ORDER BY created_at LIMIT $2`,
    [graceMs / 1000, limit, maxAttempts],
  );
  return rows.map((r) => ({ id: r.id, runId: r.run_id, type: r.type, payload: r.payload ?? {}, attempts: r.attempts }));
}

/** Counts a re-drive before it is tried (a request that kills the process still counts). */
export async function countRedrive(pool: Pool, id: string): Promise<number> {
  const { rows } = await pool.query<{ attempts: number }>(
    'UPDATE control_requests SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts',
    [id],
  );
  return rows[0]?.attempts ?? 0;
}

export async function noteRedriveError(pool: Pool, id: string, message: string): Promise<void> {
  await pool.query('UPDATE control_requests SET last_error = $2 WHERE id = $1', [id, message.slice(0, 2000)]);
}

/** Events stored more than `graceMs` ago that were never offered to the runs parked on their name. */
export async function undeliveredEvents(pool: Pool, graceMs: number, limit: number): Promise<string[]> {
  const { rows } = await pool.query<{ id: string }>(
    `SELECT id FROM events WHERE delivered_at IS NULL AND created_at < now() - make_interval(secs => $1)
      ORDER BY created_at LIMIT $2`,
    [graceMs / 1000, limit],
  );
  return rows.map((r) => r.id);
}

/** A stored event's payload (undefined when there is no such event). */
export async function eventPayload(client: PoolClient, eventId: string): Promise<unknown> {
  const { rows } = await client.query<{ payload: unknown }>('SELECT payload FROM events WHERE id = $1', [eventId]);
  return rows[0]?.payload;
}

export async function markEventDelivered(pool: Pool, eventId: string): Promise<void> {
  await pool.query('UPDATE events SET delivered_at = now() WHERE id = $1 AND delivered_at IS NULL', [eventId]);
}

export interface WaitingStep {
  id: string;
  runId: string;
  /** The step's input: `{name, match?, timeoutMs, dueAt}`. */
  input: { name: string; match?: string; [key: string]: unknown };
}

interface WaitingRow {
  id: string;
  run_id: string;
  input: WaitingStep['input'];
}

/**
 * The waitForEvent executions parked on an event's name whose window contains it: queued at or
 * before the event was stored (the same rule as `storedEventsSince`, seen from the event's side).
 */
export async function waitsForEvent(pool: Pool, eventId: string): Promise<WaitingStep[]> {
  const { rows } = await pool.query<WaitingRow>(
    `SELECT e.id, e.run_id, e.input FROM step_executions e, events ev
      WHERE ev.id = $1 AND e.function_name = $2 AND e.status = 'running' AND e.superseded_at IS NULL
        AND e.input->>'name' = ev.name AND e.queued_at <= ev.created_at`,
    [eventId, WAIT_FOR_EVENT_FUNCTION],
  );
  return rows.map((r) => ({ id: r.id, runId: r.run_id, input: r.input }));
}

/** A waitForEvent execution still parked (running, in force). */
export async function parkedWait(client: PoolClient, stepExecutionId: string): Promise<WaitingStep | undefined> {
  const { rows } = await client.query<WaitingRow>(
    `SELECT id, run_id, input FROM step_executions
      WHERE id = $1 AND function_name = $2 AND status = 'running' AND superseded_at IS NULL`,
    [stepExecutionId, WAIT_FOR_EVENT_FUNCTION],
  );
  const row = rows[0];
  return row ? { id: row.id, runId: row.run_id, input: row.input } : undefined;
}

export interface StoredEvent {
  id: string;
  payload: unknown;
}

/**
 * The events in a wait's window, oldest first, a page at a time (`afterEventId`: the last event of
 * the previous page): those of its name stored at or after its `queued_at`. The times are compared in
 * SQL, at PostgreSQL's microsecond precision.
 */
export async function storedEventsFor(
  client: PoolClient,
  wait: WaitingStep,
  limit: number,
  afterEventId?: string,
): Promise<StoredEvent[]> {
  const { rows } = await client.query<StoredEvent>(
    `SELECT ev.id, ev.payload FROM events ev, step_executions e
      WHERE e.id = $1 AND ev.name = $2 AND ev.created_at >= e.queued_at
        AND ($3::uuid IS NULL OR (ev.created_at, ev.id) > (SELECT created_at, id FROM events WHERE id = $3))
      ORDER BY ev.created_at, ev.id LIMIT $4`,
    [wait.id, wait.input.name, afterEventId ?? null, limit],
  );
  return rows.map((r) => ({ id: r.id, payload: r.payload }));
}
