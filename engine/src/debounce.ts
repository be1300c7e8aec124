import type { CoordinatorClient, DelayedMessage } from './coordinator-client';
import type { Pool } from './db/pool';
import { boundedRedisCall } from './queues';
import { fireDueWindow, upsertDebounce, type DebounceWindow } from './flow-store';
import type { RunTrigger } from './runs';
import type { StoredDefinition } from './workflow/store';
import { type WorkflowDefinition, resolveFlowKey } from '@baton/workflow';

/**
 * Debounced workflows (`debounce: {key?, periodMs, maxWaitMs?}`): the triggers of one key that come
 * within `periodMs` of each other collapse into one run, started once the period passes quietly (or
 * `maxWaitMs` after the window's first trigger), with the latest trigger's input and
 * `trigger.debounced = {count, key, firstAt, lastAt}`.
 *
 * A trigger only writes the window (`debounces`, migration 011: `upsertDebounce`) and answers with
 * the run id the window will start (HTTP 202, `status: "debounced"`). The trigger that opens a window
 * arms its timer, a delayed `debounce.fire` message; the coordinator fires the window when it is due
 * (services/coordinator/src/debouncer.ts: the row deleted and the run inserted in one transaction,
 * so one run per window) or re-arms the timer at the window's later `fire_at`. The reconciler fires
 * windows whose timer Redis lost.
 */

export interface DebounceStart {
  key: string;
  periodMs: number;
  maxWaitMs: number | undefined;
}

/** The debounce key of a trigger, or undefined when the workflow is not debounced. */
export async function debounceOf(definition: WorkflowDefinition, input: unknown): Promise<DebounceStart | undefined> {
  const d = definition.debounce;
  if (!d) return undefined;
  return { key: await resolveFlowKey('debounce', d.key, input), periodMs: d.periodMs, maxWaitMs: d.maxWaitMs };
}

/** A window a trigger found due and fired (its run inserted; `run.start` is the caller's to send). */
export interface FiredWindow {
  runId: string;
  count: number;
  metadata: Record<string, unknown>;
}

/** What a debounced trigger answers (`StartedRun.debounce`). */
export interface DebouncedTrigger {
  key: string;
  /** Triggers the window has collapsed so far, this one included. */
  count: number;
  /** When the run starts if no other trigger of the key comes (ISO 8601). */
  firesAt: string;
  /** The latest it starts (first trigger + maxWaitMs), null without maxWaitMs. */
  deadline: string | null;
}

/**
 * The timer of a window: due at `firesAt`, named by the run id and due time (one message each). The
 * delay is measured on the database's clock (`now`), which decides whether the window is due.
 */
export function debounceTimer(workflow: string, key: string, runId: string, firesAt: Date, now: Date): DelayedMessage {
  return {
    message: { type: 'debounce.fire', workflow, key, runId, dueAt: firesAt.getTime() },
    delayMs: Math.max(0, firesAt.getTime() - now.getTime()),
  };
}

/**
 * Adds a trigger to its window. `runId`: the id the run gets if this trigger opens the window. The
 * window's timer is returned when this trigger opened it: the caller sends it once the upsert has
 * committed (at once on a pool; after commit inside a transaction).
 */
export async function debounceTrigger(
  client: Pick<Pool, 'query'>,
  req: {
    definition: StoredDefinition;
    debounce: DebounceStart;
    runId: string;
    input: unknown;
    trigger: RunTrigger;
    tags: Record<string, string>;
    metadata: Record<string, unknown>;
  },
): Promise<{ runId: string; debounce: DebouncedTrigger; timer?: DelayedMessage; fired: FiredWindow[] }> {
  const fired: FiredWindow[] = [];
  let window: DebounceWindow | undefined;
  for (let i = 0; !window; i++) {
    window = await upsertDebounce(client, {
      workflow: req.definition.name,
      key: req.debounce.key,
      runId: req.runId,
      version: req.definition.version,
      input: req.input,
      trigger: req.trigger,
      tags: req.tags,
      metadata: req.metadata,
      periodMs: req.debounce.periodMs,
      maxWaitMs: req.debounce.maxWaitMs,
    });
    if (window) break;
    if (i >= 10) throw new Error(`debounce window of workflow '${req.definition.name}' kept being due`);
    // The key's window is due and its timer late: it is closed, so this trigger fires it (the
    // caller sends its run.start) and opens the next one.
    const started = await fireDueWindow(client, { workflow: req.definition.name, key: req.debounce.key });
    if (started) fired.push(started);
  }
  return {
    fired,
    runId: window.runId,
    debounce: {
      key: req.debounce.key,
      count: window.count,
      firesAt: window.firesAt.toISOString(),
      deadline: window.deadline ? window.deadline.toISOString() : null,
    },
    ...(window.opened
      ? { timer: debounceTimer(req.definition.name, req.debounce.key, window.runId, window.firesAt, window.now) }
      : {}),
  };
}

/** Sends a window's timer; a failure is left to the reconciler, which fires windows past due. */
export async function armDebounce(
  coordinator: CoordinatorClient | undefined,
  timer: DelayedMessage | undefined,
): Promise<void> {
  if (!coordinator || !timer) return;
  // Bounded like `send` (the gateway answers a client meanwhile).
  await boundedRedisCall(coordinator.redis, 'arming a debounce timer', () => coordinator.sendDelayed(timer)).catch(
    () => undefined,
  );
}
