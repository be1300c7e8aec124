import crypto from 'node:crypto';
import express, { Router, type Request, type Response } from 'express';
import {
  ACTIVE_RUN_STATUSES,
  ConflictError,
  ErrorCode,
  NotFoundError,
  RETRYABLE_RUN_STATUSES,
  ValidationError,
  type RunStatus,
} from '@baton/workflow';
import { bulkCancelBody, bulkRetryBody, listOperationsQuery } from '../api/schemas';
import {
  BULK_MAX_RUNS,
  cancelOperation,
  countMatching,
  createOperation,
  getOperation,
  listOperations,
  type BulkFilter,
  type BulkKind,
} from '../bulk-store';
import type { AppDeps } from '../deps';
import { jsonBody, parseOrThrow, parseUuid } from '../http/validation';

/**
 * Bulk operations: `POST /v1/runs/bulk/retry` and `/v1/runs/bulk/cancel` snapshot the runs a filter
 * matches into an operation (202 `{operationId, matched}`; `dryRun`: the count only, 200, nothing
 * stored), which the coordinator carries out at `ratePerSec` (services/coordinator/src/bulk-operations.ts);
 * `GET /v1/operations[/:id]` shows progress, `POST /v1/operations/:id/cancel` stops one. Read-only
 * API keys are refused by http/auth.ts like every POST.
 *
 * Mounted before the runs router: `/v1/runs/bulk/retry` would otherwise be taken for a run id.
 */
export function bulkRouter(deps: AppDeps): Router {
  const { pool } = deps;
  const router = Router();
  const json = express.json({ limit: deps.config.bodyLimit });

  const bulk = async (req: Request, res: Response, kind: BulkKind): Promise<void> => {
    const body =
      kind === 'retry'
        ? parseOrThrow(bulkRetryBody, jsonBody(req), { code: ErrorCode.INVALID_REQUEST, what: 'request body' })
        : parseOrThrow(bulkCancelBody, jsonBody(req), { code: ErrorCode.INVALID_REQUEST, what: 'request body' });
    const filter = resolveFilter(kind, body.filter);
    if (body.dryRun) {
      res.json({ dryRun: true, matched: await countMatching(pool, filter) });
      return;
    }
    const id = crypto.randomUUID();
    const params =
      'compensate' in body
        ? { compensate: body.compensate }
        : 'input' in body && body.input !== undefined
          ? { input: body.input }
          : {};
    const created = await createOperation(pool, {
      id,
      kind,
      shownFilter: body.filter,
      filter,
      params,
      ratePerSec: body.ratePerSec,
    });
    if (!created.created) {
      throw new ValidationError(
        `the filter matches ${created.matched} runs, more than ${BULK_MAX_RUNS} in one operation: narrow it (createdAfter/createdBefore)`,
        [{ path: 'filter', message: `matches more than ${BULK_MAX_RUNS} runs` }],
        ErrorCode.INVALID_REQUEST,
      );
    }
    res.locals.log.info({ operationId: id, kind, matched: created.matched }, 'bulk operation created');
    const statusUrl = `/v1/operations/${id}`;
    res.status(202).location(statusUrl).json({ operationId: id, matched: created.matched, statusUrl });
  };

  router.post('/v1/runs/bulk/retry', json, (req, res) => bulk(req, res, 'retry'));
  router.post('/v1/runs/bulk/cancel', json, (req, res) => bulk(req, res, 'cancel'));

  router.get('/v1/operations', async (req, res) => {
    const q = parseOrThrow(listOperationsQuery, req.query, { code: ErrorCode.INVALID_QUERY, what: 'query' });
    res.json({ operations: await listOperations(pool, q) });
  });

  router.get('/v1/operations/:id', async (req, res) => {
    const id = parseUuid(req.params.id, 'operation id');
    const op = await getOperation(pool, id);
    if (!op) throw new NotFoundError('operation', id);
    res.json(op);
  });

  router.post('/v1/operations/:id/cancel', async (req, res) => {
    const id = parseUuid(req.params.id, 'operation id');
    const result = await cancelOperation(pool, id);
    if (!result) throw new NotFoundError('operation', id);
    if (!result.cancelled) {
      // It ended while we waited for a slice under way, or had ended before.
      const now = await getOperation(pool, id);
      throw new ConflictError(
        `operation ${id} is ${now?.status ?? result.status}; only a running one can be cancelled`,
      );
    }
    res.locals.log.info({ operationId: id }, 'bulk operation cancelled');
    const op = await getOperation(pool, id);
    res.status(200).json(op);
  });

  return router;
}

/**
 * The filter as the store takes it. An empty filter is refused: `{}` must never retry or cancel
 * every run by accident, so a workflow or a status has to be named. Statuses outside what the
 * operation applies to are refused too (retrying a succeeded run, cancelling a finished one).
 */
function resolveFilter(
  kind: BulkKind,
  given: {
    workflow?: string;
    status?: RunStatus[];
    tags?: Record<string, string>;
    createdAfter?: string;
    createdBefore?: string;
  },
): BulkFilter {
  if (given.workflow === undefined && given.status === undefined) {
    throw new ValidationError(
      'filter must name at least a workflow or a status: an empty filter would match every run',
      [{ path: 'filter', message: 'give filter.workflow or filter.status (or both)' }],
      ErrorCode.INVALID_REQUEST,
    );
  }
  const applies = kind === 'retry' ? RETRYABLE_RUN_STATUSES : ACTIVE_RUN_STATUSES;
  const outside = (given.status ?? []).filter((s) => !applies.includes(s));
  if (outside.length) {
    throw new ValidationError(
      `a bulk ${kind} applies to ${applies.join(', ')} runs, not ${outside.join(', ')}`,
      [{ path: 'filter.status', message: `must be among ${applies.join(', ')}` }],
      ErrorCode.INVALID_REQUEST,
    );
  }
  if (
    given.createdAfter !== undefined &&
    given.createdBefore !== undefined &&
    Date.parse(given.createdAfter) >= Date.parse(given.createdBefore)
  ) {
    throw new ValidationError(
      'filter.createdAfter must be earlier than filter.createdBefore',
      [{ path: 'filter.createdBefore', message: 'must be later than filter.createdAfter' }],
      ErrorCode.INVALID_REQUEST,
    );
  }
  return {
    statuses: given.status ?? applies,
    ...(given.workflow === undefined ? {} : { workflow: given.workflow }),
    ...(given.tags === undefined ? {} : { tags: given.tags }),
    ...(given.createdAfter === undefined ? {} : { createdAfter: given.createdAfter }),
    ...(given.createdBefore === undefined ? {} : { createdBefore: given.createdBefore }),
  };
}
