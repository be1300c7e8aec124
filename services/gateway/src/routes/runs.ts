import express, { Router, type Request, type Response } from 'express';
import { z } from 'zod';
import { ErrorCode, ConflictError, NotFoundError, ValidationError, type RunStatus } from '@baton/workflow';
import { notifyCoordinator, RunStarter, type RunControlMessage, type StartedRun } from '@baton/engine';
import {
  cancelBody,
  idempotencyKey,
  invoiceStartBody,
  listItemsQuery,
  listLogsQuery,
  listRunsQuery,
  LOG_LEVELS,
  retryBody,
  startRunBody,
} from '../api/schemas';
import { recordCancelRequest, recordRetryRequest } from '../control-requests';
import { decodeCursor, encodeCursor } from '../cursor';
import type { AppDeps } from '../deps';
import { jsonBody, parseOrThrow, parseUuid } from '../http/validation';
import {
  getRunControlState,
  getRunDetail,
  listRunLogs,
  listRuns,
  listStepItems,
  runExists,
  type ItemKey,
} from '../read-model';

const runCursor = z.object({ t: z.iso.datetime({ precision: 6 }), id: z.uuid() });

const logCursor = z.object({ after: z.number().int().min(0) });

/** After the item at this index (keyset on item_index). */
const itemCursor = z.object({ i: z.number().int().min(0) });
const encodeItemCursor = (key: ItemKey): string => encodeCursor({ i: key.index });

/** Statuses a run can be retried from. */
const RETRYABLE: readonly RunStatus[] = ['failed', 'compensated', 'compensation_failed', 'cancelled'];

/** The key from the header or the body; both present and different is a client bug worth a 400. */
function idempotencyKeyOf(req: Request, fromBody: string | undefined): string | undefined {
  const header = req.get('Idempotency-Key');
  if (header === undefined) return fromBody;
  const parsed = idempotencyKey.safeParse(header);
  if (!parsed.success) {
    throw new ValidationError(
      'Idempotency-Key header must be 1 to 255 characters',
      [{ path: 'Idempotency-Key', message: 'must be 1 to 255 characters' }],
      ErrorCode.INVALID_REQUEST,
    );
  }
  if (fromBody !== undefined && fromBody !== header) {
    throw new ValidationError(
      'the Idempotency-Key header and body.idempotencyKey differ',
      [{ path: 'idempotencyKey', message: 'differs from the Idempotency-Key header' }],
      ErrorCode.INVALID_REQUEST,
    );
  }
  return header;
}

/**
 * 202 for a new run; 200 with the original run when the idempotency key was seen before, or with the
 * active run of a singleton's key (`started: false`, `singleton.skipped`); 202 for a debounced
 * trigger (`status: "debounced"`: `runId` is the run its window will start, `debounce` says when).
 */
function sendStarted(res: Response, started: StartedRun): void {
  const statusUrl = `/v1/runs/${started.runId}`;
  const accepted = started.created || started.debounce !== undefined;
  res
    .status(accepted ? 202 : 200)
    .location(statusUrl)
    .json({
      runId: started.runId,
      status: started.status,
      statusUrl,
      ...(started.singleton || started.debounce ? { started: started.created } : {}),
      ...(started.singleton ? { singleton: singletonAnswer(started.singleton) } : {}),
      ...(started.debounce ? { debounce: started.debounce } : {}),
    });
}

function singletonAnswer(s: NonNullable<StartedRun['singleton']>): Record<string, unknown> {
  return {
    key: s.key,
    mode: s.mode,
    ...(s.skipped ? { skipped: true } : {}),
    ...(s.cancelled?.length ? { cancelled: s.cancelled } : {}),
  };
}

export function runsRouter(deps: AppDeps): Router {
  const { pool, coordinator } = deps;
  const router = Router();
  const json = express.json({ limit: deps.config.bodyLimit });

  // Concurrent requests share a transaction (group commit): a burst costs a few commits, not one each.
  // A run without admission limits is written running with its first steps, whose jobs the starter
  // enqueues (BATON_DIRECT_START). A run.start or a job Redis does not take in time is logged; the
  // request still succeeds (run-starter.ts).
  const starter = new RunStarter(pool, coordinator, { logger: deps.logger, direct: deps.config.directStart !== false });

  const start = async (
    req: Request,
    res: Response,
    workflow: string,
    input: unknown,
    key: string | undefined,
    tags: Record<string, string> | undefined,
  ) => {
    const started = await starter.start({
      workflow,
      input,
      ...(tags === undefined ? {} : { tags }),
      trigger: { type: 'http', route: routeOf(req), requestId: res.locals.requestId as string },
      ...(key === undefined ? {} : { idempotencyKey: key }),
    });
    if (started.created) res.locals.log.info({ runId: started.runId, workflow }, 'run started');
    if (started.singleton?.cancelled?.length)
      res.locals.log.info({ workflow, cancelled: started.singleton.cancelled }, 'singleton: active run replaced');
    sendStarted(res, started);
  };

  // The seed's entry point, kept for its curl example: the `invoice` workflow with {customerId}.
  router.post('/invoice/start', json, async (req, res) => {
    const body = parseOrThrow(invoiceStartBody, jsonBody(req), {
      code: ErrorCode.INVALID_REQUEST,
      what: 'request body',
    });
    await start(req, res, 'invoice', { customerId: body.customerId }, idempotencyKeyOf(req, undefined), body.tags);
  });

  router.post('/v1/workflows/:name/runs', json, async (req, res) => {
    const body = parseOrThrow(startRunBody, jsonBody(req), { code: ErrorCode.INVALID_REQUEST, what: 'request body' });
    await start(req, res, req.params.name, body.input ?? {}, idempotencyKeyOf(req, body.idempotencyKey), body.tags);
  });

  router.get('/v1/runs', async (req, res) => {
    const q = parseOrThrow(listRunsQuery, req.query, { code: ErrorCode.INVALID_QUERY, what: 'query' });
    const after = q.cursor === undefined ? undefined : decodeCursor(runCursor, q.cursor);
    if (q.parentRunId !== undefined && q.topLevel === true) {
      throw new ValidationError(
        'parentRunId lists child runs; topLevel=true lists runs without a parent: ask for one or the other',
        [{ path: 'topLevel', message: 'cannot be true with parentRunId' }],
        ErrorCode.INVALID_QUERY,
      );
    }
    const page = await listRuns(pool, {
      limit: q.limit,
      ...(q.workflow === undefined ? {} : { workflow: q.workflow }),
      ...(q.status === undefined ? {} : { statuses: q.status }),
      ...(q.parentRunId === undefined ? {} : { parentRunId: q.parentRunId.toLowerCase() }),
      ...(q.topLevel === undefined ? {} : { topLevel: q.topLevel }),
      ...(q.tag === undefined ? {} : { tags: q.tag }),
      ...(after === undefined ? {} : { after: { createdAt: after.t, id: after.id } }),
    });
    res.json({
      runs: page.runs,
      nextCursor: page.next ? encodeCursor({ t: page.next.createdAt, id: page.next.id }) : null,
    });
  });

  router.get('/v1/runs/:id', async (req, res) => {
    const id = parseUuid(req.params.id, 'run id');
    const run = await getRunDetail(pool, id, encodeItemCursor);
    if (!run) throw new NotFoundError('run', id);
    res.json(run);
  });

  // A forEach/repeat step's items (iterations) in index order, a page at a time.
  router.get('/v1/runs/:id/steps/:stepId/items', async (req, res) => {
    const id = parseUuid(req.params.id, 'run id');
    const q = parseOrThrow(listItemsQuery, req.query, { code: ErrorCode.INVALID_QUERY, what: 'query' });
    const after = q.cursor === undefined ? undefined : decodeCursor(itemCursor, q.cursor);
    const { stepId } = req.params;
    const page = await listStepItems(pool, {
      runId: id,
      stepId,
      limit: q.limit,
      ...(after === undefined ? {} : { after: { index: after.i } }),
    });
    if (!page) {
      if (!(await runExists(pool, id))) throw new NotFoundError('run', id);
      throw new NotFoundError('forEach or repeat step', stepId);
    }
    res.json({ items: page.items, ...(page.next ? { next: encodeItemCursor(page.next) } : {}) });
  });

  /**
   * Wakes the coordinator for a request already recorded in PostgreSQL. Best effort: if Redis loses
   * or refuses the message, the coordinator's reconciler applies the recorded request.
   */
  const wake = async (res: Response, message: RunControlMessage): Promise<void> => {
    await notifyCoordinator(coordinator, message).catch((err: unknown) =>
      res.locals.log.warn(
        { err, runId: message.runId },
        'coordinator not notified; the reconciler will apply the request',
      ),
    );
  };

  // Control requests go to the coordinator, the single writer of run state: recorded in PostgreSQL
  // first (control_requests), then the coordinator is woken. The answer is 202 and the run's status
  // URL shows the outcome within moments.
  router.post('/v1/runs/:id/cancel', json, async (req, res) => {
    const id = parseUuid(req.params.id, 'run id');
    const body = parseOrThrow(cancelBody, jsonBody(req), { code: ErrorCode.INVALID_REQUEST, what: 'request body' });
    const run = await recordCancelRequest(pool, id, body.compensate);
    if (!run) throw new NotFoundError('run', id);
    if (!run.requestId) throw new ConflictError(`run ${id} is already ${run.status}; nothing to cancel`);
    await wake(res, { type: 'run.cancel', runId: id, compensate: body.compensate, requestId: run.requestId });
    res.locals.log.info({ runId: id, compensate: body.compensate }, 'run cancellation requested');
    res.status(202).json({ runId: id, status: run.status, statusUrl: `/v1/runs/${id}` });
  });

  router.post('/v1/runs/:id/retry', json, async (req, res) => {
    const id = parseUuid(req.params.id, 'run id');
    const body = parseOrThrow(retryBody, jsonBody(req), { code: ErrorCode.INVALID_REQUEST, what: 'request body' });
    const run = await getRunControlState(pool, id);
    if (!run) throw new NotFoundError('run', id);
    if (!RETRYABLE.includes(run.status)) {
      throw new ConflictError(`run ${id} is ${run.status}; only ${RETRYABLE.join(', ')} runs can be retried`);
    }
    if (body.input !== undefined && body.stepId === undefined && run.failedSteps.length > 1) {
      throw new ValidationError(
        `several steps failed (${run.failedSteps.join(', ')}): name the one the input is for`,
        [{ path: 'stepId', message: `required: one of ${run.failedSteps.join(', ')}` }],
        ErrorCode.INVALID_REQUEST,
      );
    }
    if (body.stepId !== undefined && !run.failedSteps.includes(body.stepId)) {
      throw new ValidationError(
        `step '${body.stepId}' did not fail in run ${id}`,
        [{ path: 'stepId', message: `must be one of the failed steps: ${run.failedSteps.join(', ') || '(none)'}` }],
        ErrorCode.INVALID_REQUEST,
      );
    }
    const retry = {
      attempt: run.retries,
      ...(body.input === undefined ? {} : { input: body.input }),
      ...(body.stepId === undefined ? {} : { stepId: body.stepId }),
    };
    const requestId = await recordRetryRequest(pool, id, RETRYABLE, retry);
    if (!requestId) {
      // The run changed since it was read (another retry was applied): answer as for its new state.
      const now = await getRunControlState(pool, id);
      throw new ConflictError(
        `run ${id} is ${now?.status ?? 'gone'}; only ${RETRYABLE.join(', ')} runs can be retried`,
      );
    }
    await wake(res, { type: 'run.retry', runId: id, ...retry, requestId });
    res.locals.log.info({ runId: id, steps: run.failedSteps }, 'run retry requested');
    res.status(202).json({ runId: id, status: run.status, statusUrl: `/v1/runs/${id}` });
  });

  router.get('/v1/runs/:id/logs', async (req, res) => {
    const id = parseUuid(req.params.id, 'run id');
    const q = parseOrThrow(listLogsQuery, req.query, { code: ErrorCode.INVALID_QUERY, what: 'query' });
    const after = q.cursor === undefined ? undefined : decodeCursor(logCursor, q.cursor);
    if (!(await runExists(pool, id))) throw new NotFoundError('run', id);
    const page = await listRunLogs(pool, {
      runId: id,
      limit: q.limit,
      ...(after === undefined ? {} : { afterId: after.after }),
      ...(q.stepId === undefined ? {} : { stepId: q.stepId }),
      ...(q.level === undefined ? {} : { levels: LOG_LEVELS.slice(LOG_LEVELS.indexOf(q.level)) }),
    });
    res.json({
      logs: page.logs,
      nextCursor: page.nextAfterId === undefined ? null : encodeCursor({ after: page.nextAfterId }),
    });
  });

  return router;
}

/** The route pattern that started the run, recorded in its trigger (never the raw URL). */
function routeOf(req: Request): string {
  return typeof req.route?.path === 'string' ? req.route.path : req.path;
}
