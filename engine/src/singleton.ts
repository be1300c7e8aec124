import type { Pool } from './db/pool';
import { releaseSingleton, singletonHolders, singletonSlot } from './flow-store';
import { existingRuns, insertRuns, runKey, type NewRun } from './run-rows';
import { type WorkflowDefinition, resolveFlowKey } from '@baton/workflow';

/**
 * Singleton workflows (`singleton: {key?, mode, compensate?}`): at most one active run (pending,
 * running, compensating) per key. The run row carries its key (`runs.singleton_key`) and the partial
 * unique index `runs_singleton` (migration 011) refuses a second active one, so the guarantee holds
 * across gateway replicas, events and schedules without a lock:
 *
 * - `skip`: the run is inserted like any other (`ON CONFLICT DO NOTHING`); when the key is held the
 *   start returns the holder instead (HTTP 200, `started: false`), as a repeated idempotency key does.
 * - `cancelRunning`: the holder gives the key up with its cancel request recorded in the same
 *   statement (`releaseSingleton`, the outbox the coordinator applies like `POST .../cancel`), then
 *   the new run is inserted; a start that took the key in between is released in turn.
 */

export interface SingletonStart {
  key: string;
  mode: 'skip' | 'cancelRunning';
  compensate: boolean;
}

/** The singleton key of a start, or undefined when the workflow is no singleton. */
export async function singletonOf(definition: WorkflowDefinition, input: unknown): Promise<SingletonStart | undefined> {
  const s = definition.singleton;
  if (!s) return undefined;
  return { key: await resolveFlowKey('singleton', s.key, input), mode: s.mode, compensate: s.compensate };
}

type Queryable = Pick<Pool, 'query'>;

/** Tries of a cancelRunning start against starts of the same key that keep taking it first. */
const REPLACE_TRIES = 20;

export type ReplaceOutcome =
  | { kind: 'created'; cancelled: { runId: string; requestId: string }[] }
  /** The idempotency key was used before: that run, nothing cancelled. */
  | { kind: 'existing'; runId: string; status: string }
  /** Not inserted and the key is free: the version was no longer the latest (RunStarter retries). */
  | { kind: 'stale' };

/**
 * cancelRunning: releases the key's holder (cancelled) and inserts `run`, again while another start
 * takes the key first. Inside a transaction (RunStarter gives one), a run that cannot be inserted
 * leaves its release rolled back with it.
 */
export async function replaceSingleton(
  client: Queryable,
  run: NewRun & { singletonKey: string },
  opts: { onlyLatest: boolean; compensate: boolean },
): Promise<ReplaceOutcome> {
  if (run.idempotencyKey !== undefined) {
    const found = (await existingRuns(client, [run])).get(runKey(run.workflow, run.idempotencyKey));
    if (found) return { kind: 'existing', ...found };
  }
  const cancelled: { runId: string; requestId: string }[] = [];
  for (let i = 0; i < REPLACE_TRIES; i++) {
    cancelled.push(...(await releaseSingleton(client, run.workflow, run.singletonKey, opts.compensate)));
    if ((await insertRuns(client, [run], { onlyLatest: opts.onlyLatest })).has(run.id))
      return { kind: 'created', cancelled };
    if (run.idempotencyKey !== undefined) {
      const found = (await existingRuns(client, [run])).get(runKey(run.workflow, run.idempotencyKey));
      if (found) return { kind: 'existing', ...found };
    }
    const holder = await singletonHolders(client, [{ workflow: run.workflow, key: run.singletonKey }]);
    if (!holder.has(singletonSlot(run.workflow, run.singletonKey))) return { kind: 'stale' };
  }
  throw new Error(`singleton key of workflow '${run.workflow}' kept being taken by other starts`);
}
