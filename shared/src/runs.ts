import crypto from 'node:crypto';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { Pool } from './db/pool';
import { ValidationError } from './errors';
import type { CoordinatorClient } from './coordinator-client';
import { existingRuns, insertRuns, runKey } from './run-rows';
import type { CoordinatorMessage } from './protocol';
import { traced } from '@baton/sdk';
import { injectTrace, inSpan, type TraceCarrier } from './tracing';
import type { StoredDefinition } from './workflow/store';
import { ErrorCode } from './error-codes';
import { resolveRunTags } from './workflow/tags';

/**
 * Starting a run: the one path every trigger (HTTP, schedule, event) takes. The run row is the
 * commitment; the coordinator message only says "look at it now" — if it is lost, the reconciler
 * finds the pending row and sends it again.
 */

export interface RunTrigger {
  type: 'http' | 'schedule' | 'event' | 'retry';
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
  /** False when the idempotency key matched an existing run, which is returned instead. */
  created: boolean;
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
 * none and notify after commit (a notification for an uncommitted row would find nothing).
 */
export async function startRun(
  pool: Queryable,
  coordinator: CoordinatorClient | undefined,
  req: StartRunRequest,
): Promise<StartedRun> {
  validateRunInput(req.definition, req.input);
  // Events and schedules: a tag template that fails leaves that tag out, never the run (tags.ts).
  const tags = await resolveRunTags(req.definition.definition.tags, req.input, undefined, { strict: false });
  // The root span of the run's trace: every later span (coordinator, functions) descends from it.
  const attributes = { 'baton.workflow': req.definition.name, 'baton.trigger': req.trigger.type };
  return inSpan('baton.run.create', undefined, attributes, async () => {
    const runId = crypto.randomUUID();
    const trace = injectTrace();
    const created = await insertRuns(
      pool,
      [
        {
          id: runId,
          workflow: req.definition.name,
          version: req.definition.version,
          input: req.input,
          trigger: req.trigger,
          idempotencyKey: req.idempotencyKey,
          metadata: traced(trace),
          tags,
        },
      ],
      { onlyLatest: false },
    );
    if (!created.has(runId)) {
      const existing = await existingRuns(pool, [
        { workflow: req.definition.name, idempotencyKey: req.idempotencyKey },
      ]);
      const found = existing.get(runKey(req.definition.name, req.idempotencyKey)) as { runId: string; status: string };
      return { ...found, created: false };
    }
    // The run is committed and will start even if Redis is unreachable now: the reconciler re-sends
    // `run.start` for pending runs. So a failed notification does not fail the request.
    if (coordinator) {
      await notifyCoordinator(coordinator, { type: 'run.start', runId, ...traced(trace) }).catch(() => undefined);
    }
    return { runId, status: 'pending', created: true, ...traced(trace) };
  });
}

/** `{trace}` when tracing is on, nothing otherwise (keeps messages and rows small): the SDK's. */
export { traced };

/** Hands a message to the coordinator (CoordinatorClient.send). */
export async function notifyCoordinator(coordinator: CoordinatorClient, message: CoordinatorMessage): Promise<void> {
  await coordinator.send(message);
}
