import express, { Router } from 'express';
import { ErrorCode, eventName, ValidationError } from '@baton/workflow';
import { listSchedules, publishEventNow, setSchedulePaused } from '@baton/engine';
import { eventBody, scheduleBody } from '../api/schemas';
import type { AppDeps } from '../deps';
import { jsonBody, parseOrThrow } from '../http/validation';

/** Events (`POST /v1/events/:name`) and schedules (`GET /v1/schedules`, `PUT /v1/schedules/:id`). */
export function triggersRouter(deps: AppDeps): Router {
  const { pool, coordinator } = deps;
  const router = Router();
  const json = express.json({ limit: deps.config.bodyLimit });

  router.post('/v1/events/:name', json, async (req, res) => {
    const name = eventName.safeParse(req.params.name);
    if (!name.success) {
      throw new ValidationError(
        `event name '${req.params.name}' is invalid: ${name.error.issues[0].message}`,
        [{ path: 'name', message: name.error.issues[0].message }],
        ErrorCode.INVALID_REQUEST,
      );
    }
    const body = parseOrThrow(eventBody, jsonBody(req), { code: ErrorCode.INVALID_REQUEST, what: 'request body' });
    const key = body.idempotencyKey ?? req.get('Idempotency-Key');
    const published = await publishEventNow(pool, coordinator, {
      name: name.data,
      payload: body.payload ?? {},
      ...(key ? { idempotencyKey: key } : {}),
      source: { type: 'http', requestId: res.locals.requestId as string },
    });
    if (!published.duplicate) {
      res.locals.log.info(
        { event: name.data, eventId: published.eventId, runIds: published.runIds },
        'event published',
      );
    }
    res.status(published.duplicate ? 200 : 202).json({
      eventId: published.eventId,
      runIds: published.runIds,
      ...(published.rejected.length ? { rejected: published.rejected } : {}),
    });
  });

  router.get('/v1/schedules', async (_req, res) => {
    res.json({ schedules: await listSchedules(pool, coordinator) });
  });

  router.put('/v1/schedules/:id', json, async (req, res) => {
    const body = parseOrThrow(scheduleBody, jsonBody(req), { code: ErrorCode.INVALID_REQUEST, what: 'request body' });
    const schedule = await setSchedulePaused(pool, coordinator, req.params.id, body.paused);
    res.locals.log.info({ scheduleId: schedule.id, paused: schedule.paused }, 'schedule updated');
    res.json(schedule);
  });

  return router;
}
