import crypto from 'node:crypto';
import type { CoordinatorClient } from './coordinator-client';
import type { Pool, PoolClient } from './db/pool';
import { evaluateCondition, ExpressionError, ValidationError } from '@baton/workflow';
import {
  notifyCoordinator,
  sendWakeups,
  startRun,
  validateRunInput,
  type Queryable,
  type StartedRun,
  type Wakeups,
} from './runs';
import { listLatestDefinitions } from './workflow/store';

/**
 * Events: `POST /v1/events/:name` and `ctx.emit` both land here. An event is stored, starts a run
 * of every workflow subscribed to its name (whose `filter` accepts the payload), and is offered to
 * runs parked on `waitForEvent`. A repeated idempotency key returns the first delivery and starts
 * nothing new.
 */
export interface PublishEventRequest {
  name: string;
  payload: unknown;
  idempotencyKey?: string;
  /** Who sent it: `{type: 'http', requestId}` or `{type: 'step', runId, stepId}`. */
  source: Record<string, unknown>;
}

export interface PublishedEvent {
  eventId: string;
  runIds: string[];
  /** True when the idempotency key matched an earlier event. */
  duplicate: boolean;
  /** Subscribed workflows whose input schema (or filter expression) refused the payload: no run for them. */
  rejected: { workflow: string; message: string }[];
  /** Coordinator notifications to send once the caller's transaction (if any) has committed. */
  notify: () => Promise<void>;
}

export async function publishEvent(
  db: Queryable,
  coordinator: CoordinatorClient,
  req: PublishEventRequest,
): Promise<PublishedEvent> {
  const eventId = crypto.randomUUID();
  const inserted = await db.query<{ id: string }>(
    `INSERT INTO events (id, name, payload, idempotency_key, source) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (name, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id`,
    [eventId, req.name, JSON.stringify(req.payload ?? null), req.idempotencyKey ?? null, JSON.stringify(req.source)],
  );
  if (!inserted.rows[0]) {
    const { rows } = await db.query<{ id: string; run_ids: string[] }>(
      'SELECT id, run_ids FROM events WHERE name = $1 AND idempotency_key = $2',
      [req.name, req.idempotencyKey],
    );
    return {
      eventId: rows[0].id,
      runIds: rows[0].run_ids,
      duplicate: true,
      rejected: [],
      notify: async () => undefined,
    };
  }

  const subscribers = (await listLatestDefinitions(db)).filter((d) =>
    d.definition.triggers.some((t) => 'event' in t && t.event.name === req.name),
  );
  const runIds: string[] = [];
  const started: { runId: string; trace?: Record<string, string> }[] = [];
  const rejected: PublishedEvent['rejected'] = [];
  const wakeups: Wakeups[] = [];
  for (const definition of subscribers) {
    const trigger = definition.definition.triggers.find((t) => 'event' in t && t.event.name === req.name);
    const filter = trigger && 'event' in trigger ? trigger.event.filter : undefined;
    try {
      if (filter && !(await evaluateCondition(filter, req.payload))) continue;
    } catch (err) {
      // A filter that fails on this payload (an error, the sandbox's time or memory limit) starts no
      // run of its workflow, like an input its schema refuses; the event still reaches the others.
      if (!(err instanceof ExpressionError)) throw err;
      rejected.push({ workflow: definition.name, message: err.message });
      continue;
    }
    try {
      validateRunInput(definition, req.payload);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      rejected.push({ workflow: definition.name, message: err.message });
      continue;
    }
    let run: StartedRun;
    try {
      run = await startRun(db, undefined, {
        definition,
        input: req.payload,
        trigger: { type: 'event', event: req.name, eventId },
        // One run per (event, workflow), however often the event is handled.
        idempotencyKey: `event:${eventId}`,
      });
    } catch (err) {
      // A singleton or debounce key that fails on this payload: no run of this workflow, as above.
      if (!(err instanceof ValidationError)) throw err;
      rejected.push({ workflow: definition.name, message: err.message });
      continue;
    }
    // A debounced workflow's id is the run its window will start; a singleton's, the run that holds the key.
    runIds.push(run.runId);
    if (run.created) started.push({ runId: run.runId, ...(run.trace ? { trace: run.trace } : {}) });
    if (run.wakeups) wakeups.push(run.wakeups);
  }
  await db.query('UPDATE events SET run_ids = $2 WHERE id = $1', [eventId, runIds]);
  return {
    eventId,
    runIds,
    duplicate: false,
    rejected,
    notify: async () => {
      // Best effort, as in startRun: the runs and the event are committed, and the coordinator's
      // reconciler re-sends `run.start` and `event.deliver` for what a lost notification missed.
      for (const w of wakeups) await sendWakeups(coordinator, w);
      for (const run of started) {
        await notifyCoordinator(coordinator, { type: 'run.start', ...run }).catch(() => undefined);
      }
      await notifyCoordinator(coordinator, { type: 'event.deliver', eventId }).catch(() => undefined);
    },
  };
}

/** Publishes outside any transaction, notifying the coordinator at once. */
export async function publishEventNow(
  pool: Pool | PoolClient,
  coordinator: CoordinatorClient,
  req: PublishEventRequest,
): Promise<PublishedEvent> {
  const published = await publishEvent(pool, coordinator, req);
  await published.notify();
  return published;
}
