import { metrics, type Logger, type Pool, type RunControlMessage } from '@baton/engine';
import type { Coordinator } from './coordinator';
import { countRedrive, dueRequests, noteRedriveError, undeliveredEvents, type ControlRequest } from './control-store';

/**
 * The control outbox's re-drive, once per reconciler pass. Control requests are recorded in
 * PostgreSQL before they are acknowledged (cancel and retry by the gateway, the event check of a
 * wait that begins by the coordinator) and events are stored before they are delivered; the
 * BullMQ message or the after-commit call that follows is only a wake-up. What is still not done
 * after the grace period (its wake-up lost with Redis, a coordinator that died after its commit) is
 * applied here, directly. Applying is idempotent — a request is marked done in the transaction that
 * applies it, a wait ends once — so a request whose message is merely slow is safe to re-drive.
 */

/** A request that failed this many re-drives is left alone (its row keeps `attempts`, `last_error`). */
export const MAX_REDRIVES = 10;

export interface RedriveOptions {
  pool: Pool;
  coordinator: Coordinator;
  logger: Logger;
  /** Requests and events recorded more recently than this are left to their wake-up. */
  graceMs: number;
  /** Per kind and pass. */
  limit?: number;
}

export interface RedriveResult {
  requestsApplied: number;
  eventsDelivered: number;
  failed: number;
}

export async function redriveControlRequests(opts: RedriveOptions): Promise<RedriveResult> {
  const { pool, coordinator, logger, graceMs } = opts;
  const limit = opts.limit ?? 100;
  const result: RedriveResult = { requestsApplied: 0, eventsDelivered: 0, failed: 0 };

  for (const request of await dueRequests(pool, graceMs, limit, MAX_REDRIVES)) {
    try {
      const attempts = await countRedrive(pool, request.id);
      await applyRequest(coordinator, request);
      result.requestsApplied += 1;
      metrics.reconciledTotal.inc({ kind: 'control_request' });
      logger.warn({ runId: request.runId, type: request.type, attempts }, 'control request re-driven');
    } catch (err) {
      result.failed += 1;
      await noteRedriveError(pool, request.id, (err as Error).message ?? String(err)).catch(() => undefined);
      const last = request.attempts + 1 >= MAX_REDRIVES;
      logger.warn(
        { err, runId: request.runId, requestId: request.id, type: request.type },
        last ? 'control request failed its last re-drive: left undone' : 'control request re-drive failed',
      );
    }
  }

  for (const eventId of await undeliveredEvents(pool, graceMs, limit)) {
    try {
      await coordinator.deliverEvent(eventId);
      result.eventsDelivered += 1;
      metrics.reconciledTotal.inc({ kind: 'event_delivered' });
      logger.warn({ eventId }, 'event delivery re-driven');
    } catch (err) {
      result.failed += 1;
      logger.warn({ err, eventId }, 'event delivery re-drive failed');
    }
  }
  return result;
}

/** A recorded request, applied as the message that would have woken the coordinator. */
async function applyRequest(coordinator: Coordinator, request: ControlRequest): Promise<void> {
  const { payload } = request;
  if (request.type === 'wait.check') return coordinator.checkWait(request.runId, request.id);
  const message: RunControlMessage =
    request.type === 'run.cancel'
      ? { type: 'run.cancel', runId: request.runId, compensate: payload.compensate === true, requestId: request.id }
      : {
          type: 'run.retry',
          runId: request.runId,
          attempt: Number(payload.attempt),
          ...(payload.input === undefined ? {} : { input: payload.input }),
          ...(typeof payload.stepId === 'string' ? { stepId: payload.stepId } : {}),
          requestId: request.id,
        };
  await coordinator.handle(message);
}
