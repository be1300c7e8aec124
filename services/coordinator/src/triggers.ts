import {
  DEFAULT_SCHEDULE_CATCH_UP,
  DEFAULT_SCHEDULE_OVERLAP,
  dueTicks,
  evaluateCondition,
  ExpressionError,
  expressionContext,
  isTerminalRun,
  NotFoundError,
  tickJobId,
  tickTimeOfJob,
  ticksToFire,
  type ScheduleOverlap,
  type StepExecutionState,
} from '@baton/workflow';
import {
  getDefinition,
  publishEvent,
  startRun,
  type CoordinatorClient,
  type Logger,
  type Pool,
  type PoolClient,
} from '@baton/engine';
import {
  eventPayload,
  markEventDelivered,
  parkedWait,
  storedEventsFor,
  takeRequest,
  waitsForEvent,
  type WaitingStep,
} from './control-store';
import { nothing } from './outcome';
import { activeScheduledRuns, recordScheduleCancel } from './schedule-store';
import type { RunAdvancer } from './run-advancer';
import { completeBuiltin, loadExecutions, type LockedRun, type SuccessReport } from './run-store';

/**
 * Triggers: what starts runs or ends waits from outside a run's own steps — events (published by a
 * step, delivered to parked `waitForEvent` steps, checked by a wait that begins) and schedule ticks.
 *
 * Immediate writes (not buffered in `RunWrites`), and why: `completeBuiltin` ends a wait before the
 * run is planned, which reads it; `takeRequest` must commit with what it applied; `publishEvent`
 * stores the event in the transaction that records the step's success (exactly once per step).
 */
export class Triggers {
  constructor(
    private readonly deps: {
      pool: Pool;
      logger: Logger;
      advancer: RunAdvancer;
      coordinator: CoordinatorClient;
    },
  ) {}

  /**
   * Events a step emitted, published in the transaction that records its success — so exactly once
   * per step: a replayed report changes nothing and publishes nothing, and the keys
   * `<stepExecutionId>.<n>` make a second publication a no-op anyway.
   */
  async publishEmitted(client: PoolClient, report: SuccessReport): Promise<(() => Promise<void>)[]> {
    const notify: (() => Promise<void>)[] = [];
    for (const [i, event] of (report.events ?? []).entries()) {
      const published = await publishEvent(client, this.deps.coordinator, {
        name: event.name,
        payload: event.payload,
        idempotencyKey: `${report.stepExecutionId}.${i}`,
        source: { type: 'step', runId: report.runId, stepExecutionId: report.stepExecutionId },
      });
      notify.push(published.notify);
    }
    return notify;
  }

  /**
   * Offers an event to every run parked on `waitForEvent` for its name whose `match` accepts it, then
   * records it delivered (`events.delivered_at`: until then the reconciler offers it again). Each run
   * is its own transaction; offering twice changes nothing (a wait ends once).
   */
  async deliverEvent(eventId: string): Promise<void> {
    const { advancer } = this.deps;
    for (const waiting of await waitsForEvent(this.deps.pool, eventId)) {
      await advancer.inRunTransaction(waiting.runId, async (client, run, writes) => {
        if (isTerminalRun(run.status)) return nothing();
        const payload = await eventPayload(client, eventId);
        if (!(await this.matcher(client, run, waiting)(payload))) return nothing();
        const changed = await completeBuiltin(client, waiting.id, 'succeeded', payload, null);
        return changed ? advancer.advanceLocked(client, run, writes) : nothing();
      });
    }
    await markEventDelivered(this.deps.pool, eventId);
  }

  /**
   * A waitForEvent step that begins looks at the events already stored in its window (its name,
   * stored since the step was queued): an event stored while the transaction that planned the step
   * was still open found no parked run when it was delivered. The first that matches ends the wait.
   * The check is the `wait.check` request recorded with the step, done in this transaction.
   */
  async checkWait(runId: string, stepExecutionId: string): Promise<void> {
    const { advancer } = this.deps;
    await advancer.inRunTransaction(runId, async (client, run, writes) => {
      if (!(await takeRequest(client, stepExecutionId)) || isTerminalRun(run.status)) return nothing();
      const wait = await parkedWait(client, stepExecutionId);
      if (!wait) return nothing();
      const matches = this.matcher(client, run, wait);
      let after: string | undefined;
      for (;;) {
        const page = await storedEventsFor(client, wait, 100, after);
        for (const event of page) {
          if (!(await matches(event.payload))) continue;
          const changed = await completeBuiltin(client, wait.id, 'succeeded', event.payload, null);
          return changed ? advancer.advanceLocked(client, run, writes) : nothing();
        }
        if (page.length < 100) return nothing();
        after = page[page.length - 1].id;
      }
    });
  }

  /**
   * Whether a wait's `match` accepts an event payload (no `match`: every event of the name). The
   * run's executions are loaded once, on the first payload. A `match` that fails on the data counts as
   * no match, so one bad expression cannot stop an event's delivery to the other runs.
   */
  private matcher(client: PoolClient, run: LockedRun, wait: WaitingStep): (payload: unknown) => Promise<boolean> {
    const match = wait.input.match;
    if (!match) return async () => true;
    let executions: StepExecutionState[] | undefined;
    return async (payload) => {
      executions ??= await loadExecutions(client, run.id);
      try {
        return await evaluateCondition(match, { ...expressionContext({ ...run, executions }), event: payload });
      } catch (err) {
        if (!(err instanceof ExpressionError)) throw err;
        this.deps.logger.warn({ err, runId: run.id, stepExecutionId: wait.id }, 'waitForEvent match failed');
        return false;
      }
    };
  }

  /**
   * One schedule tick: runs of the workflow's latest version, each keyed on its tick (the run's
   * idempotency key is `schedule:<the tick's job id>`, so a tick handled twice starts one run). The
   * tick's time is in its job id: handled late (no coordinator ran), the ticks due since are fired
   * by the schedule's `catchUp` (schedule-ticks.ts), each after its `overlap` check. A tick whose job
   * id carries no time fires once, as it comes. `now`: when the tick is handled (tests choose it).
   * Returns the ids of the runs it started.
   */
  async fireSchedule(
    scheduleId: string,
    workflow: string,
    jobId: string | undefined,
    now = Date.now(),
  ): Promise<string[]> {
    // Only "no such workflow" means the schedule is gone. Anything else (PostgreSQL unreachable, a
    // statement timeout) fails the tick, which BullMQ retries with backoff: the tick is not lost.
    const stored = await getDefinition(this.deps.pool, workflow).catch((err: unknown) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
    const index = Number(scheduleId.slice(workflow.length + 1));
    const trigger = stored?.definition.triggers[index];
    if (!stored || !trigger || !('schedule' in trigger)) {
      this.deps.logger.warn({ scheduleId }, 'tick of a schedule that no longer exists; ignored');
      return [];
    }
    const schedule = trigger.schedule;
    const catchUp = schedule.catchUp ?? DEFAULT_SCHEDULE_CATCH_UP;
    const tickAt = tickTimeOfJob(jobId, scheduleId);
    let ticks: (number | undefined)[] = [undefined];
    if (tickAt !== undefined) {
      const due = dueTicks(schedule.cron, schedule.timezone ?? 'UTC', tickAt, now);
      ticks = ticksToFire(due, now, catchUp);
      if (due.length > 1 || ticks.length !== 1) {
        this.deps.logger.info(
          { scheduleId, catchUp, due: due.length, firing: ticks.length, since: new Date(tickAt).toISOString() },
          'schedule ticks missed while no coordinator ran',
        );
      }
    }
    const started: string[] = [];
    for (const tick of ticks) {
      const key = tick === undefined ? jobId : tickJobId(scheduleId, tick);
      const idempotencyKey = key ? `schedule:${key}` : undefined;
      if (
        !(await this.overlapAllows(workflow, scheduleId, schedule.overlap ?? DEFAULT_SCHEDULE_OVERLAP, idempotencyKey))
      ) {
        this.deps.logger.info(
          { scheduleId },
          'schedule tick skipped: a run it started is still active (overlap: skip)',
        );
        continue;
      }
      const run = await startRun(this.deps.pool, this.deps.coordinator, {
        definition: stored,
        input: schedule.input ?? {},
        trigger: {
          type: 'schedule',
          scheduleId,
          cron: schedule.cron,
          firedAt: new Date(now).toISOString(),
          ...(tick === undefined ? {} : { tickAt: new Date(tick).toISOString() }),
        },
        // A tick handled twice (a coordinator crash mid-message) still starts one run.
        ...(idempotencyKey ? { idempotencyKey } : {}),
      });
      if (run.created) {
        this.deps.logger.info({ runId: run.runId, scheduleId }, 'scheduled run started');
        started.push(run.runId);
      }
    }
    return started;
  }

  /**
   * A schedule's `overlap` before a tick starts a run: whether it may, having cancelled the active
   * runs it started first for `cancelPrevious` (recorded in the control outbox, then woken: the
   * reconciler applies a cancel whose message is lost). The tick's own run (`idempotencyKey`, when
   * the tick is handled again) does not count.
   */
  private async overlapAllows(
    workflow: string,
    scheduleId: string,
    overlap: ScheduleOverlap,
    idempotencyKey: string | undefined,
  ): Promise<boolean> {
    if (overlap === 'allow') return true;
    const active = await activeScheduledRuns(this.deps.pool, workflow, scheduleId, idempotencyKey);
    if (active.length === 0) return true;
    if (overlap === 'skip') return false;
    for (const runId of active) {
      const requestId = await recordScheduleCancel(this.deps.pool, runId);
      if (!requestId) continue;
      this.deps.logger.info({ runId, scheduleId }, 'cancelling the previous scheduled run (overlap: cancelPrevious)');
      await this.deps.coordinator
        .send({ type: 'run.cancel', runId, compensate: false, requestId })
        .catch((err: unknown) =>
          this.deps.logger.warn({ err, runId }, 'cancel not sent; the reconciler applies the recorded request'),
        );
    }
    return true;
  }
}
