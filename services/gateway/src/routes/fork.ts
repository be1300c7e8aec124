import crypto from 'node:crypto';
import express, { Router } from 'express';
import { ConflictError, ErrorCode, isTerminalRun, NotFoundError, planFork, ValidationError } from '@baton/workflow';
import { getDefinition, injectTrace, notifyCoordinator, traced, validateRunInput } from '@baton/engine';
import { forkBody } from '../api/schemas';
import type { AppDeps } from '../deps';
import { getForkSource, insertFork } from '../fork-store';
import { jsonBody, parseOrThrow, parseUuid } from '../http/validation';

/**
 * `POST /v1/runs/:id/fork {fromStep, input?}`: a new run of the same workflow version as a finished
 * run (succeeded too), `forkedFrom` it, that keeps the outputs of the steps not downstream of
 * `fromStep` (copied, never run nor compensated by the fork) and runs `fromStep` and everything that
 * needs it — and any step that had not succeeded. `input` replaces the run input (checked against the
 * version's input schema). The fork is inserted `pending` with its copies in one transaction, then
 * started like any run (the coordinator's `run.start`; the reconciler if that message is lost).
 */
export function forkRouter(deps: AppDeps): Router {
  const { pool, coordinator } = deps;
  const router = Router();
  const json = express.json({ limit: deps.config.bodyLimit });

  router.post('/v1/runs/:id/fork', json, async (req, res) => {
    const id = parseUuid(req.params.id, 'run id');
    const body = parseOrThrow(forkBody, jsonBody(req), { code: ErrorCode.INVALID_REQUEST, what: 'request body' });
    const source = await getForkSource(pool, id);
    if (!source) throw new NotFoundError('run', id);
    const stored = await getDefinition(pool, source.workflow, source.version);
    const definition = stored.definition;
    if (!definition.steps.some((s) => s.id === body.fromStep)) {
      throw new ValidationError(
        `workflow '${source.workflow}' version ${source.version} has no step '${body.fromStep}'`,
        [{ path: 'fromStep', message: `unknown step; one of ${definition.steps.map((s) => s.id).join(', ')}` }],
        ErrorCode.INVALID_REQUEST,
      );
    }
    if (!isTerminalRun(source.status)) {
      throw new ConflictError(`run ${id} is ${source.status}; only a finished run can be forked`);
    }
    const input = body.input === undefined ? source.input : body.input;
    if (body.input !== undefined) validateRunInput(stored, input);
    const plan = planFork(definition, body.fromStep, source.succeeded);
    const forkId = crypto.randomUUID();
    const trace = injectTrace();
    const inserted = await insertFork(pool, {
      id: forkId,
      source,
      input,
      trigger: { type: 'fork', runId: id, fromStep: body.fromStep, requestId: res.locals.requestId as string },
      metadata: traced(trace),
      keep: plan.keep.map((k) => k.executionId),
    });
    if (!inserted) throw new NotFoundError('run', id);
    // The fork is committed: if Redis does not take the start now, the reconciler starts it.
    await notifyCoordinator(coordinator, { type: 'run.start', runId: forkId, ...traced(trace) }).catch((err: unknown) =>
      res.locals.log.warn({ err, runId: forkId }, 'coordinator not notified; the reconciler will start the fork'),
    );
    res.locals.log.info(
      { runId: forkId, forkedFrom: id, fromStep: body.fromStep, kept: plan.keep.map((k) => k.stepId) },
      'run forked',
    );
    const statusUrl = `/v1/runs/${forkId}`;
    res
      .status(202)
      .location(statusUrl)
      .json({
        runId: forkId,
        status: 'pending',
        statusUrl,
        forkedFrom: id,
        kept: plan.keep.map((k) => k.stepId),
        rerun: plan.rerun,
      });
  });

  return router;
}
