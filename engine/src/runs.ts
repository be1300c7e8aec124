import crypto from 'node:crypto';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { Pool } from './db/pool';
import { ValidationError, ErrorCode, resolveRunTags } from '@baton/workflow';
import type { CoordinatorClient, DelayedMessage } from './coordinator-client';
import { existingRuns, insertRuns, runKey, type NewRun } from './run-rows';
import { armDebounce, debounceOf, debounceTrigger, type DebouncedTrigger } from './debounce';
import { singletonHolders, singletonSlot } from './flow-store';
import { replaceSingleton, singletonOf } from './singleton';
import type { CoordinatorMessage } from './protocol';
import { traced } from '@baton/sdk';
import { injectTrace, inSpan, type TraceCarrier } from './tracing';
import type { StoredDefinition } from './workflow/store';

/**
 * Starting a run: the one path every trigger (HTTP, schedule, event) takes. The run row is the
 * commitment; the coordinator message only says "look at it now" — if it is lost, the reconciler
 * finds the pending row and sends it again.
 */

export interface RunTrigger {
  type: 'http' | 'schedule' | 'event' | 'retry' | 'fork';
  [key: string]: unknown;
}

export interface StartRunRequest {
  definition: StoredDefinition;
  input: unknown;
  trigger: RunTrigger;
  idempotencyKey?: string;
}

export interface StartedRun {
  runId: string;
  status: string;
  /** The trace context the run was created in (empty when tracing is off). */
  trace?: TraceCarrier;
  /**
   * False when the idempotency key matched an existing run, or a singleton's key an active one, which
   * is returned instead; false for a debounced trigger too (no run yet: `debounce` says when).
   */
  created: boolean;
  /**
   * Singleton workflows: the key; `skipped` when the key's active run is returned (nothing started);
   * `cancelled`: the runs a cancelRunning start replaced.
   */
  singleton?: { key: string; mode: 'skip' | 'cancelRunning'; skipped?: boolean; cancelled?: string[] };
  /** Debounced workflows: the window the trigger joined; `runId` is the run it will start. */
  debounce?: DebouncedTrigger;
  /** Messages left to send after the caller's commit (a start given no coordinator): `sendWakeups`. */
  wakeups?: Wakeups;
}

const ajv = new Ajv({ allErrors: true, strict: false });
addFormats.default(ajv);
const validators = new Map<string, ValidateFunction>();

/** Validates a run input against the definition's JSON Schema; throws with a problem per path. */
export function validateRunInput(definition: StoredDefinition, input: unknown): void {
  const schema = definition.definition.input;
  if (!schema) return;
  const key = `${definition.name}@${definition.version}`;
  let validate = validators.get(key);
  if (!validate) {
    validate = ajv.compile(schema);
    validators.set(key, validate);
  }
  if (validate(input)) return;
  const problems = (validate.errors ?? []).map((e) => ({
    path: `input${e.instancePath.replace(/\//g, '.')}${e.keyword === 'required' ? `.${(e.params as { missingProperty: string }).missingProperty}` : ''}`,
    message: e.message ?? 'invalid',
  }));
  throw new ValidationError(
    `input does not match the input schema of workflow '${definition.name}': ${problems.map((p) => `${p.path} ${p.message}`).join('; ')}`,
    problems,
    ErrorCode.INVALID_INPUT,
  );
}

/** A pool or a transaction's client. */
export type Queryable = Pick<Pool, 'query'>;

/**
 * Inserts the run and, given a coordinator queue, tells the coordinator. Inside a transaction pass
 * none and notify after commit (a notification for an uncommitted row would find nothing): the
 * started run's `wakeups` then say what else to send (`sendWakeups`).
 *
 * Singleton workflows (singleton.ts) return the key's active run (`skip`) or cancel it
 * (`cancelRunning`); debounced ones (debounce.ts) join the key's window and return the run id it
 * will start (`status: 'debounced'`, `created: false`).
 */
export async function startRun(
  pool: Queryable,
  coordinator: CoordinatorClient | undefined,
  req: StartRunRequest,
): Promise<StartedRun> {
  validateRunInput(req.definition, req.input);
  // Events and schedules: a tag template that fails leaves that tag out, never the run (tags.ts).
  const tags = await resolveRunTags(req.definition.definition.tags, req.input, undefined, { strict: false });
  const singleton = await singletonOf(req.definition.definition, req.input);
  const debounce = await debounceOf(req.definition.definition, req.input);
  // The root span of the run's trace: every later span (coordinator, functions) descends from it.
  const attributes = { 'baton.workflow': req.definition.name, 'baton.trigger': req.trigger.type };
  return inSpan('baton.run.create', undefined, attributes, async () => {
    const runId = crypto.randomUUID();
    const trace = injectTrace();
    const wake = async (started: StartedRun): Promise<StartedRun> => {
      if (!coordinator || !started.wakeups) return started;
      await sendWakeups(coordinator, started.wakeups);
      return { ...started, wakeups: undefined };
    };
    if (debounce) {
      const d = await debounceTrigger(pool, {
        definition: req.definition,
        debounce,
        runId,
        input: req.input,
        trigger: req.trigger,
        tags,
        metadata: traced(trace),
      });
      return wake({
        runId: d.runId,
        status: 'debounced',
        created: false,
        debounce: d.debounce,
        wakeups: debounceWakeups(d),
      });
    }
    const run: NewRun = {
      id: runId,
      workflow: req.definition.name,
      version: req.definition.version,
      input: req.input,
      trigger: req.trigger,
      idempotencyKey: req.idempotencyKey,
      metadata: traced(trace),
      tags,
      ...(singleton ? { singletonKey: singleton.key } : {}),
    };
    const found = async (): Promise<StartedRun | undefined> => {
      const existing = await existingRuns(pool, [run]);
      const byKey = existing.get(runKey(run.workflow, run.idempotencyKey));
      return byKey ? { ...byKey, created: false } : undefined;
    };
    let cancels: CancelWakeup[] = [];
    if (singleton?.mode === 'cancelRunning') {
      const outcome = await replaceSingleton(
        pool,
        { ...run, singletonKey: singleton.key },
        {
          onlyLatest: false,
          compensate: singleton.compensate,
        },
      );
      if (outcome.kind === 'existing') return { runId: outcome.runId, status: outcome.status, created: false };
      if (outcome.kind === 'stale') throw new Error(`run of workflow '${run.workflow}' was not inserted`);
      cancels = outcome.cancelled.map((c) => ({ ...c, compensate: singleton.compensate }));
    } else {
      // skip: a held key returns its holder; one that was freed meanwhile is tried again.
      for (let i = 0; ; i++) {
        if ((await insertRuns(pool, [run], { onlyLatest: false })).has(runId)) break;
        const existing = await found();
        if (existing) return existing;
        if (!singleton || i >= 20) throw new Error(`run of workflow '${run.workflow}' was not inserted`);
        const holder = (await singletonHolders(pool, [{ workflow: run.workflow, key: singleton.key }])).get(
          singletonSlot(run.workflow, singleton.key),
        );
        if (holder)
          return { ...holder, created: false, singleton: { key: singleton.key, mode: 'skip', skipped: true } };
      }
    }
    // The run is committed and will start even if Redis is unreachable now: the reconciler re-sends
    // `run.start` for pending runs. So a failed notification does not fail the request.
    if (coordinator) {
      await notifyCoordinator(coordinator, { type: 'run.start', runId, ...traced(trace) }).catch(() => undefined);
    }
    return wake({
      runId,
      status: 'pending',
      created: true,
      ...traced(trace),
      ...(singleton
        ? { singleton: { key: singleton.key, mode: singleton.mode, cancelled: cancels.map((c) => c.runId) } }
        : {}),
      ...(cancels.length ? { wakeups: { cancels } } : {}),
    });
  });
}

/** A replaced singleton's cancel request, to wake the coordinator for. */
export interface CancelWakeup {
  runId: string;
  requestId: string;
  compensate: boolean;
}

/** Coordinator messages a start leaves to send once its rows are committed. */
export interface Wakeups {
  cancels: CancelWakeup[];
  /** A debounce window's timer, when this trigger opened the window. */
  timer?: DelayedMessage;
  /** Runs of due debounce windows this trigger fired (their `run.start`). */
  starts?: { runId: string; trace?: TraceCarrier }[];
}

/**
 * Sends a start's wake-ups, best effort: the cancel requests are in the outbox (the reconciler
 * re-drives them) and a window whose timer is lost is fired by the reconciler's sweep.
 */
export async function sendWakeups(coordinator: CoordinatorClient, wakeups: Wakeups): Promise<void> {
  for (const c of wakeups.cancels) {
    await notifyCoordinator(coordinator, {
      type: 'run.cancel',
      runId: c.runId,
      compensate: c.compensate,
      requestId: c.requestId,
    }).catch(() => undefined);
  }
  await armDebounce(coordinator, wakeups.timer);
  if (wakeups.starts?.length) {
    await coordinator
      .sendToInbox(
        wakeups.starts.map((r) => ({ type: 'run.start' as const, runId: r.runId, ...traced(r.trace ?? {}) })),
        'appending run.start of fired debounce windows',
      )
      .catch(() => undefined);
  }
}

/** The wake-ups of a debounced trigger (debounce.ts `debounceTrigger`'s answer). */
export function debounceWakeups(d: {
  timer?: DelayedMessage;
  fired: { runId: string; metadata: Record<string, unknown> }[];
}): Wakeups {
  return {
    cancels: [],
    ...(d.timer ? { timer: d.timer } : {}),
    starts: d.fired.map((f) => ({ runId: f.runId, ...traced((f.metadata.trace ?? {}) as TraceCarrier) })),
  };
}

/** `{trace}` when tracing is on, nothing otherwise (keeps messages and rows small): the SDK's. */
export { traced };

/** Hands a message to the coordinator (CoordinatorClient.send). */
export async function notifyCoordinator(coordinator: CoordinatorClient, message: CoordinatorMessage): Promise<void> {
  await coordinator.send(message);
}
