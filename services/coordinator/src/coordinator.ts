import crypto from 'node:crypto';
import { Queue, Worker, type Job } from 'bullmq';
import {
  CANCELLED,
  COORDINATOR_JOB_OPTIONS,
  COORDINATOR_QUEUE,
  ExpressionError,
  KEEP_FINISHED_JOBS,
  WORKFLOW_TIMEOUT,
  coordinatorJobId,
  evaluate,
  evaluateCondition,
  injectTrace,
  inSpan,
  expressionContext,
  publishEvent,
  SLEEP_FUNCTION,
  startRun,
  WAIT_FOR_EVENT_FUNCTION,
  type BuiltinStepMessage,
  isInboxMessage,
  openSpan,
  OUTSTANDING_STEP_STATUSES,
  type InboxMessage,
  type OpenSpan,
  type StepExecutionState,
  type TraceCarrier,
  type PlannedExecution,
  functionQueueName,
  getDefinition,
  isDataError,
  isTerminalRun,
  NotFoundError,
  latestByStep,
  metrics,
  planRun,
  publishCancellation,
  withTransaction,
  type CoordinatorMessage,
  type Logger,
  type Plan,
  type Pool,
  type PoolClient,
  type QueueContext,
  type RunControlMessage,
  type RunError,
  type RunStatus,
  type StepJobData,
  type WorkflowDefinition,
} from '@baton/shared';
import {
  eventPayload,
  markEventDelivered,
  parkedWait,
  recordWaitChecks,
  storedEventsFor,
  takeRequest,
  waitsForEvent,
  type WaitingStep,
} from './control-store';
import { InboxConsumer, type InboxConsumerOptions } from './inbox-consumer';
import { DEFAULT_MAX_OUTPUT_BYTES, guardReport, quarantineReport, withoutLogs } from './report-guard';
import {
  applyReport,
  completeBuiltin,
  finishBuiltin,
  cancelOutstanding,
  insertLogsOf,
  loadExecutions,
  loadExecutionsOf,
  lockConcurrencyKey,
  lockRun,
  markFunctionSeen,
  lockAndRecord,
  resetForRetry,
  runsAhead,
  RunWrites,
  setRunStarted,
  stepIdOf,
  supersedeForRetry,
  undoGenerations,
  updateRun,
  waitingRuns,
  type LockedRun,
  type NewExecution,
  type SuccessReport,
} from './run-store';
import { stepJobData } from './step-dispatch';

/** What a committed transaction leaves to do. */
interface Outcome {
  jobs: StepJobData[];
  /** Executions cancelled in the transaction: remove their jobs, abort their running attempts. */
  cancelled: { id: string; function: string }[];
  finished: { run: LockedRun; status: RunStatus }[];
  /** Runs took a concurrency slot or freed one: wake the next waiting run(s) of the key. */
  releasedKeys: { workflow: string; key: string; limit: number }[];
  /** Runs started with a deadline: send the delayed timeout messages. */
  deadlines: { runId: string; attempt: number; delayMs: number }[];
  /** Coordinator notifications of events published in the transaction. */
  notify: (() => Promise<void>)[];
}

const nothing = (): Outcome => ({ jobs: [], cancelled: [], finished: [], releasedKeys: [], deadlines: [], notify: [] });

function merge(into: Outcome, from: Outcome): Outcome {
  into.jobs.push(...from.jobs);
  into.cancelled.push(...from.cancelled);
  into.finished.push(...from.finished);
  into.releasedKeys.push(...from.releasedKeys);
  into.deadlines.push(...from.deadlines);
  into.notify.push(...from.notify);
  return into;
}

export interface CoordinatorDeps {
  pool: Pool;
  queues: QueueContext;
  logger: Logger;
  /** BullMQ messages (timers, schedules, control requests) handled at once. */
  concurrency?: number;
  /** Inbox tuning (batch size, reading loops, claim time); defaults in inbox-consumer.ts. */
  inbox?: Partial<Pick<InboxConsumerOptions, 'batchSize' | 'loops' | 'claimIdleMs' | 'maxDeliveries'>>;
  /** Largest step output stored (BATON_MAX_OUTPUT_BYTES); report-guard.ts. */
  maxOutputBytes?: number;
}

/**
 * Advances runs. For each message: lock the run row, apply the report, plan, write, commit — then
 * enqueue the planned steps with `jobId = stepExecutionId`, so an enqueue repeated by the
 * reconciler is a no-op. Nothing is enqueued before its row is committed; a crash in between
 * leaves a queued row without a job, which the reconciler restores.
 */
export class Coordinator {
  private readonly definitions = new Map<string, WorkflowDefinition>();
  private readonly functionQueues = new Map<string, Queue>();
  private readonly seenFunctions = new Set<string>();
  private readonly selfQueue: Queue;
  private worker?: Worker<CoordinatorMessage>;
  private inbox?: InboxConsumer;
  private inboxStarted?: Promise<void>;

  constructor(private readonly deps: CoordinatorDeps) {
    this.selfQueue = new Queue(COORDINATOR_QUEUE, { connection: deps.queues.connection, prefix: deps.queues.prefix });
  }

  start(): void {
    this.worker = new Worker<CoordinatorMessage>(
      COORDINATOR_QUEUE,
      (job: Job<CoordinatorMessage>) => this.handle(job.data, job.id),
      {
        connection: this.deps.queues.connection,
        prefix: this.deps.queues.prefix,
        concurrency: this.deps.concurrency ?? 16,
        // Applying a message is idempotent, so a message re-run after a coordinator crash is safe.
        maxStalledCount: 5,
      },
    );
    this.worker.on('error', (err) => this.deps.logger.error({ err }, 'coordinator worker error'));
    this.worker.on('failed', (job, err) =>
      this.deps.logger.warn({ err, message: job?.data, attempts: job?.attemptsMade }, 'coordinator message failed'),
    );
    this.inbox = new InboxConsumer({
      redis: this.deps.queues.connection,
      prefix: this.deps.queues.prefix,
      logger: this.deps.logger,
      handleBatch: (messages, onCommit) => this.handleBatch(messages, onCommit),
      ...this.deps.inbox,
    });
    this.inboxStarted = this.inbox.start().catch((err: unknown) => {
      this.deps.logger.error({ err }, 'cannot read the coordinator inbox');
      throw err;
    });
  }

  async close(): Promise<void> {
    await this.inboxStarted?.catch(() => undefined);
    await this.inbox?.close();
    await this.worker?.close();
    await Promise.all([...this.functionQueues.values()].map((q) => q.close()));
    await this.selfQueue.close();
  }

  /** `jobId` names a schedule tick (BullMQ's job scheduler makes one job per tick). */
  async handle(message: CoordinatorMessage, jobId?: string): Promise<void> {
    if (isInboxMessage(message)) return this.handleBatch([message]);
    const trace = 'trace' in message ? (message.trace as TraceCarrier | undefined) : undefined;
    const runId = 'runId' in message ? message.runId : undefined;
    await inSpan(`baton.coordinator ${message.type}`, trace, runId ? { 'baton.run_id': runId } : {}, () =>
      this.handleMessage(message, jobId),
    );
  }

  /**
   * Applies a batch of run starts and step reports in one transaction (group commit): lock the runs
   * (in id order), record the reports (successes with one statement), plan each run concerned once
   * against its state after the whole batch, write what the plans decided with one statement per
   * kind, commit — then enqueue. Applying a message twice changes nothing, so a batch re-read after a
   * crash is safe. `onCommit` runs once the transaction has committed (the inbox acknowledges then).
   */
  async handleBatch(received: InboxMessage[], onCommit?: () => Promise<void>): Promise<void> {
    const limits = { maxOutputBytes: this.deps.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES };
    const messages = received.map((m) => guardReport(m, limits));
    try {
      await this.applyGuarded(messages, onCommit);
    } catch (err) {
      // Alone, a report PostgreSQL refuses for its data is the culprit: stored without its payload it
      // fails its step (UNSTORABLE_OUTPUT) and the run goes on. In a batch, the caller (the inbox)
      // applies the messages one by one, so each culprit comes back here alone.
      if (messages.length !== 1 || !isDataError(err) || messages[0].type === 'run.start') throw err;
      await this.applyQuarantined(messages[0], err as Error, onCommit);
    }
  }

  /**
   * A lone report PostgreSQL refused for its data: applied again without its logs (kept as one line
   * saying why), then, if still refused, without its payload, failing its step (UNSTORABLE_OUTPUT).
   */
  private async applyQuarantined(
    message: Exclude<InboxMessage, { type: 'run.start' }>,
    refused: Error,
    onCommit?: () => Promise<void>,
  ): Promise<void> {
    const where = { runId: message.runId, stepExecutionId: message.stepExecutionId };
    let reason = refused.message;
    if (message.logs?.length) {
      try {
        await this.applyGuarded([withoutLogs(message, reason)], onCommit);
        this.deps.logger.error(
          { err: refused, ...where },
          'step logs could not be stored; the report was applied without them',
        );
        metrics.reportsQuarantined.inc({ type: message.type, dropped: 'logs' });
        return;
      } catch (err) {
        if (!isDataError(err)) throw err;
        reason = (err as Error).message;
      }
    }
    this.deps.logger.error(
      { err: refused, ...where },
      'step report could not be stored; its step fails with UNSTORABLE_OUTPUT',
    );
    metrics.reportsQuarantined.inc({ type: message.type, dropped: 'payload' });
    await this.applyGuarded([quarantineReport(message, reason)], onCommit);
  }

  private async applyGuarded(messages: InboxMessage[], onCommit?: () => Promise<void>): Promise<void> {
    // One span per run: the batch's work for it, in the run's trace.
    const spans = new Map<string, OpenSpan>();
    for (const m of messages) {
      if (!spans.has(m.runId)) {
        spans.set(
          m.runId,
          openSpan(`baton.coordinator ${m.type}`, m.trace, { 'baton.run_id': m.runId, 'baton.batch': messages.length }),
        );
      }
      if (m.type !== 'run.start' && m.function) await this.noteFunction(m.function);
    }
    let failure: unknown;
    const timer = metrics.coordinatorBatchDuration.startTimer();
    try {
      const outcome = await withTransaction(this.deps.pool, (client) => this.applyBatch(client, messages, spans));
      // Acknowledging needs only the commit: it overlaps the enqueueing (a step whose enqueue is lost
      // in between is queued in PostgreSQL, and the reconciler enqueues it).
      await Promise.all([this.afterCommit(outcome), onCommit?.()]);
      timer();
      metrics.coordinatorBatchMessages.observe(messages.length);
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      for (const span of spans.values()) span.end(failure);
    }
  }

  private async applyBatch(
    client: PoolClient,
    messages: InboxMessage[],
    spans: Map<string, OpenSpan>,
  ): Promise<Outcome> {
    const successes = new Map<string, SuccessReport>();
    for (const m of messages) {
      // The same report twice in a batch (a replay) is recorded once.
      if (m.type === 'step.succeeded' && !successes.has(m.stepExecutionId)) successes.set(m.stepExecutionId, m);
    }
    const { runs, recorded } = await lockAndRecord(
      client,
      [...new Set(messages.map((m) => m.runId))],
      [...successes.values()],
    );
    const outcome = nothing();
    const toAdvance = new Set<string>();
    const logged: Parameters<typeof insertLogsOf>[1] = [];
    // The other messages, in arrival order (rare: slow steps' starts, retries, failures).
    for (const m of messages) {
      if (!runs.has(m.runId)) {
        this.deps.logger.warn({ message: m }, 'message for an unknown run dropped');
        continue;
      }
      if (m.type === 'run.start') toAdvance.add(m.runId);
      else if (m.type !== 'step.succeeded' && (await applyReport(client, m))) {
        if (m.type !== 'step.started' && m.logs?.length) {
          logged.push({ runId: m.runId, stepId: await stepIdOf(client, m.stepExecutionId), report: m });
        }
        // Started and retrying reports change no plan.
        if (m.type === 'step.failed') toAdvance.add(m.runId);
      }
    }
    for (const [id, success] of recorded) {
      const report = successes.get(id) as SuccessReport;
      toAdvance.add(success.runId);
      if (report.logs?.length) logged.push({ runId: success.runId, stepId: success.stepId, report });
      if (report.events?.length) outcome.notify.push(...(await this.publishEmitted(client, report)));
    }
    await insertLogsOf(client, logged);

    // Each run concerned is planned once, against its state after the whole batch.
    const executions = await loadExecutionsOf(client, [...toAdvance]);
    const writes = new RunWrites();
    for (const runId of toAdvance) {
      const run = runs.get(runId) as LockedRun;
      merge(outcome, await this.advanceLocked(client, run, writes, executions.get(runId), spans.get(runId)?.carrier));
    }
    await writes.flush(client);
    return outcome;
  }

  /** A message not from the inbox, in a transaction of its own. */
  private async handleMessage(message: Exclude<CoordinatorMessage, InboxMessage>, jobId?: string): Promise<void> {
    if (message.type === 'event.deliver') return this.deliverEvent(message.eventId);
    if (message.type === 'schedule.fire') return this.fireSchedule(message.scheduleId, message.workflow, jobId);
    await this.inRunTransaction(message.runId, async (client, run, writes) => {
      switch (message.type) {
        case 'run.cancel':
        case 'run.retry':
          // A recorded request is marked done in the transaction that applies it: applied once, however
          // often its message or the reconciler brings it.
          if (message.requestId && !(await takeRequest(client, message.requestId))) return nothing();
          return this.controlLocked(client, run, message, writes);
        case 'run.timeout':
          return this.controlLocked(client, run, message, writes);
        case 'step.wake':
        case 'step.waitTimeout':
          return finishBuiltin(client, message).then((changed) =>
            changed ? this.advanceLocked(client, run, writes) : nothing(),
          );
      }
    });
  }

  /** Locks the run, runs `fn`, writes what it buffered, commits, then carries out the outcome. */
  private async inRunTransaction(
    runId: string,
    fn: (client: PoolClient, run: LockedRun, writes: RunWrites) => Promise<Outcome>,
  ): Promise<void> {
    const outcome = await withTransaction(this.deps.pool, async (client) => {
      const run = await lockRun(client, runId);
      if (!run) {
        this.deps.logger.warn({ runId }, 'message for an unknown run dropped');
        return nothing();
      }
      const writes = new RunWrites();
      const result = await fn(client, run, writes);
      await writes.flush(client);
      return result;
    });
    await this.afterCommit(outcome);
  }

  /**
   * Events a step emitted, published in the transaction that records its success — so exactly once
   * per step: a replayed report changes nothing and publishes nothing, and the keys
   * `<stepExecutionId>.<n>` make a second publication a no-op anyway.
   */
  private async publishEmitted(client: PoolClient, report: SuccessReport): Promise<(() => Promise<void>)[]> {
    const notify: (() => Promise<void>)[] = [];
    for (const [i, event] of (report.events ?? []).entries()) {
      const published = await publishEvent(client, this.selfQueue, {
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
    for (const waiting of await waitsForEvent(this.deps.pool, eventId)) {
      await this.inRunTransaction(waiting.runId, async (client, run, writes) => {
        if (isTerminalRun(run.status)) return nothing();
        const payload = await eventPayload(client, eventId);
        if (!(await this.matcher(client, run, waiting)(payload))) return nothing();
        const changed = await completeBuiltin(client, waiting.id, 'succeeded', payload, null);
        return changed ? this.advanceLocked(client, run, writes) : nothing();
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
    await this.inRunTransaction(runId, async (client, run, writes) => {
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
          return changed ? this.advanceLocked(client, run, writes) : nothing();
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

  /** One schedule tick: one run of the workflow's latest version, keyed on the tick's job id. */
  private async fireSchedule(scheduleId: string, workflow: string, jobId: string | undefined): Promise<void> {
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
      return;
    }
    const started = await startRun(this.deps.pool, this.selfQueue, {
      definition: stored,
      input: trigger.schedule.input ?? {},
      trigger: { type: 'schedule', scheduleId, cron: trigger.schedule.cron, firedAt: new Date().toISOString() },
      // A tick handled twice (a coordinator crash mid-message) still starts one run.
      ...(jobId ? { idempotencyKey: `schedule:${jobId}` } : {}),
    });
    if (started.created) this.deps.logger.info({ runId: started.runId, scheduleId }, 'scheduled run started');
  }

  /** Re-plans a run without a new report (the reconciler, a freed concurrency slot). */
  async advance(runId: string): Promise<void> {
    await this.inRunTransaction(runId, (client, run, writes) => this.advanceLocked(client, run, writes));
  }

  /** Effects that must follow a successful commit. */
  private async afterCommit(outcome: Outcome): Promise<void> {
    for (const { run, status } of outcome.finished) this.observeFinished(run, status);
    if (outcome.cancelled.length) await this.stopJobs(outcome.cancelled);
    await this.enqueue(outcome.jobs);
    // Waits that began look at the events already stored; a check that fails here is re-driven by
    // the reconciler (its request is recorded with the step).
    await Promise.all(
      outcome.jobs
        .filter((job) => job.function === WAIT_FOR_EVENT_FUNCTION)
        .map((job) =>
          this.checkWait(job.runId, job.stepExecutionId).catch((err: unknown) =>
            this.deps.logger.warn({ err, runId: job.runId, stepId: job.stepId }, 'waitForEvent check deferred'),
          ),
        ),
    );
    for (const notify of outcome.notify) await notify();
    if (outcome.deadlines.length) {
      await this.selfQueue.addBulk(
        outcome.deadlines.map(({ runId, attempt, delayMs }) => {
          const message: RunControlMessage = { type: 'run.timeout', runId, attempt };
          return {
            name: message.type,
            data: message,
            opts: { ...COORDINATOR_JOB_OPTIONS, jobId: coordinatorJobId(message), delay: delayMs },
          };
        }),
      );
    }
    for (const { workflow, key, limit } of outcome.releasedKeys) {
      for (const runId of await waitingRuns(this.deps.pool, workflow, key, limit)) await this.advance(runId);
    }
  }

  /**
   * Plans the run and buffers what the plan decides in `writes` (written at commit). `executions`:
   * the run's current executions when the caller has loaded them already.
   */
  private async advanceLocked(
    client: PoolClient,
    run: LockedRun,
    writes: RunWrites,
    executions?: StepExecutionState[],
    trace?: TraceCarrier,
  ): Promise<Outcome> {
    if (isTerminalRun(run.status)) return nothing();
    const definition = await this.definition(run.workflow, run.workflowVersion);
    const outcome = nothing();

    if (run.status === 'pending') {
      let admitted: boolean;
      try {
        admitted = await this.admit(client, run, definition, writes);
      } catch (err) {
        if (!(err instanceof ExpressionError)) throw err;
        // A concurrency key that fails on this run's input fails the run (nothing is written before
        // the key is known); re-planning it could only fail again.
        return this.transition(run, definition, writes, 'failed', undefined, runError(err.code, err.message));
      }
      if (!admitted) return nothing();
      if (definition.timeoutMs)
        outcome.deadlines.push({ runId: run.id, attempt: run.retries, delayMs: definition.timeoutMs });
    }

    const current = executions ?? (await loadExecutions(client, run.id));
    let plan: Plan;
    try {
      plan = await planRun(definition, { ...run, executions: current });
    } catch (err) {
      if (!(err instanceof ExpressionError)) throw err;
      // A template that fails on this run's data fails the run; retrying cannot change the data.
      plan = { start: [], skip: [], status: 'failed', error: runError(err.code, err.message) };
    }
    const toCancel = new Set(plan.cancel ?? []);
    outcome.cancelled = current
      .filter((e) => toCancel.has(e.id) && OUTSTANDING_STEP_STATUSES.includes(e.status))
      .map((e) => ({ id: e.id, function: e.function }));
    writes.cancel(
      outcome.cancelled.map((e) => e.id),
      'a sibling step failed (failFast)',
    );

    // Only a retried run can have steps whose effect was undone; others skip the query.
    const generations = run.retries > 0 && plan.start.length ? await undoGenerations(client, run.id) : undefined;
    const started: NewExecution[] = plan.start.map((p) => {
      const generation = generations?.get(p.stepId) ?? 0;
      const base = `${run.id}:${p.stepId}${p.kind === 'compensation' ? ':compensate' : ''}`;
      return {
        ...p,
        id: crypto.randomUUID(),
        input: builtinInput(p),
        ...(generation > 0 ? { idempotencyKey: `${base}:${generation}` } : {}),
      };
    });
    writes.insertExecutions(run.id, started);
    writes.startBuiltins(started.filter((e) => isBuiltin(e.function)).map((e) => e.id));
    await recordWaitChecks(
      client,
      run.id,
      started.filter((e) => e.function === WAIT_FOR_EVENT_FUNCTION).map((e) => e.id),
    );
    const stepsById = new Map(definition.steps.map((s) => [s.id, s]));
    writes.insertSkipped(
      run.id,
      plan.skip.map((stepId) => ({ id: crypto.randomUUID(), stepId, function: stepsById.get(stepId)?.function ?? '' })),
    );
    if (plan.status && plan.status !== run.status) {
      merge(outcome, this.transition(run, definition, writes, plan.status, plan.output, plan.error));
    } else {
      writes.changeRun(run.id);
    }
    outcome.jobs = started.map((e) => stepJobData(run, e, trace ?? injectTrace()));
    return outcome;
  }

  /**
   * A pending run takes a concurrency slot of its key, or stays pending behind the runs ahead of it
   * (running ones, and older pending ones: first come, first served).
   */
  private async admit(
    client: PoolClient,
    run: LockedRun,
    definition: WorkflowDefinition,
    writes: RunWrites,
  ): Promise<boolean> {
    const limit = definition.concurrency?.limit;
    if (limit === undefined) {
      writes.changeRun(run.id, { admitted: { concurrencyKey: null, deadlineMs: definition.timeoutMs } });
      return true;
    }
    const raw = definition.concurrency?.key ? await evaluate(definition.concurrency.key, { input: run.input }) : '';
    const key = typeof raw === 'string' ? raw : JSON.stringify(raw ?? null);
    // Serialises admissions per key, so two runs cannot both take the last slot. Written at once, not
    // buffered: the next admission of the key (in this batch or another) counts this run.
    await lockConcurrencyKey(client, run.workflow, key);
    await setRunStarted(client, run.id, key, definition.timeoutMs);
    if ((await runsAhead(client, run, key)) >= limit) return false;
    return true;
  }

  /** Cancel, retry and timeout: requests that change a run from outside its steps. */
  private async controlLocked(
    client: PoolClient,
    run: LockedRun,
    message: RunControlMessage,
    writes: RunWrites,
  ): Promise<Outcome> {
    const definition = await this.definition(run.workflow, run.workflowVersion);
    if (message.type === 'run.retry') {
      if (
        !['failed', 'compensated', 'compensation_failed', 'cancelled'].includes(run.status) ||
        message.attempt !== run.retries
      ) {
        return nothing();
      }
      const executions = await loadExecutions(client, run.id);
      const actions = [...latestByStep(executions, 'action').values()];
      const failed = actions.filter((e) => e.status === 'failed' || e.status === 'cancelled').map((e) => e.stepId);
      const undone = actions
        .filter((e) => e.status === 'compensating' || e.status === 'compensated')
        .map((e) => e.stepId);
      const rerun = dependentsOf(definition, [...failed, ...undone]);
      await supersedeForRetry(client, run.id, rerun);
      const overrides = { ...run.inputOverrides };
      if (message.input !== undefined) {
        for (const stepId of message.stepId ? [message.stepId] : failed) overrides[stepId] = message.input;
      }
      await resetForRetry(client, run.id, overrides, definition.timeoutMs);
      this.deps.logger.info({ runId: run.id, rerun, attempt: run.retries + 1 }, 'run retried from its failed steps');
      const resumed: LockedRun = {
        ...run,
        status: 'running',
        error: null,
        retries: run.retries + 1,
        inputOverrides: overrides,
      };
      const outcome = await this.advanceLocked(client, resumed, writes);
      if (definition.timeoutMs)
        outcome.deadlines.push({ runId: run.id, attempt: resumed.retries, delayMs: definition.timeoutMs });
      return outcome;
    }

    if (isTerminalRun(run.status)) return nothing();
    // A deadline concerns the attempt it was set for, and only until unwinding has begun.
    if (message.type === 'run.timeout' && (message.attempt !== run.retries || run.status !== 'running'))
      return nothing();
    const error =
      message.type === 'run.cancel'
        ? runError(CANCELLED, 'run cancelled on request')
        : runError(WORKFLOW_TIMEOUT, `run exceeded the workflow timeout of ${definition.timeoutMs} ms`);
    const cancelled = await cancelOutstanding(client, run.id, error);
    const compensate = message.type === 'run.timeout' || message.compensate;
    this.deps.logger.info({ runId: run.id, code: error.code, cancelled: cancelled.length, compensate }, 'run stopped');
    if (!compensate) {
      const outcome = this.transition(run, definition, writes, 'cancelled', undefined, error);
      return { ...outcome, cancelled };
    }
    await updateRun(client, run.id, { status: 'compensating', terminal: false, error });
    const outcome = await this.advanceLocked(client, { ...run, status: 'compensating', error }, writes);
    return { ...outcome, cancelled: [...cancelled, ...outcome.cancelled] };
  }

  private transition(
    run: LockedRun,
    definition: WorkflowDefinition,
    writes: RunWrites,
    status: RunStatus,
    output?: unknown,
    error?: RunError,
  ): Outcome {
    const terminal = isTerminalRun(status);
    writes.changeRun(run.id, { status, terminal, output, error });
    this.deps.logger.info({ runId: run.id, workflow: run.workflow, from: run.status, to: status }, 'run status');
    const outcome = nothing();
    if (!terminal) return outcome;
    outcome.finished.push({ run, status });
    const limit = definition.concurrency?.limit;
    if (limit !== undefined && run.concurrencyKey !== null) {
      outcome.releasedKeys.push({ workflow: run.workflow, key: run.concurrencyKey, limit });
    }
    return outcome;
  }

  /**
   * Enqueues step jobs; a job id already present (a re-enqueue) is a no-op in BullMQ. Built-in kinds
   * (sleep, waitForEvent) are the coordinator's own delayed messages instead of a function job.
   */
  async enqueue(jobs: StepJobData[]): Promise<void> {
    const byFunction = new Map<string, StepJobData[]>();
    const timers: Promise<void>[] = [];
    for (const data of jobs) {
      if (isBuiltin(data.function)) timers.push(this.armBuiltin(data));
      else if (byFunction.has(data.function)) byFunction.get(data.function)?.push(data);
      else byFunction.set(data.function, [data]);
    }
    // One round trip per function queue, however many steps the batch started.
    await Promise.all([
      ...timers,
      ...[...byFunction].map(([fn, list]) =>
        this.functionQueue(fn).addBulk(
          list.map((data) => ({
            name: data.stepId,
            data,
            opts: {
              jobId: data.stepExecutionId,
              attempts: data.retry.attempts,
              // The delay is the function runtime's, computed from `retry` (see runtime/worker.ts).
              backoff: { type: 'baton' },
              removeOnComplete: KEEP_FINISHED_JOBS,
              removeOnFail: KEEP_FINISHED_JOBS,
            },
          })),
        ),
      ),
    ]);
  }

  /** The delayed message that ends a sleep or a wait; its due time was fixed when the step started. */
  async armBuiltin(data: StepJobData): Promise<void> {
    const dueAt = builtinDueAt(data.input);
    const message: BuiltinStepMessage =
      data.function === SLEEP_FUNCTION
        ? { type: 'step.wake', runId: data.runId, stepExecutionId: data.stepExecutionId }
        : { type: 'step.waitTimeout', runId: data.runId, stepExecutionId: data.stepExecutionId };
    await this.selfQueue.add(message.type, message, {
      ...COORDINATOR_JOB_OPTIONS,
      jobId: coordinatorJobId(message),
      delay: Math.max(0, dueAt - Date.now()),
    });
  }

  /**
   * For the reconciler: re-arms a running built-in step whose timer message is gone from Redis (or
   * finished without ending the step). Returns true when it had to.
   */
  async ensureBuiltinArmed(data: StepJobData): Promise<boolean> {
    const type = data.function === SLEEP_FUNCTION ? 'step.wake' : 'step.waitTimeout';
    const jobId = `${type}_${data.stepExecutionId}`;
    const job = await this.selfQueue.getJob(jobId);
    if (job && !['completed', 'failed', 'unknown'].includes(await job.getState())) return false;
    if (job) await this.selfQueue.remove(jobId).catch(() => 0);
    await this.armBuiltin(data);
    return true;
  }

  /** The coordinator's own queue (schedules live on it). */
  get queue(): Queue {
    return this.selfQueue;
  }

  /** Waiting and delayed jobs are removed; running attempts are aborted by their runtime. */
  private async stopJobs(executions: { id: string; function: string }[]): Promise<void> {
    // Removing an active (locked) job fails; its worker aborts on the published cancellation instead.
    await Promise.all(
      executions.map((e) =>
        this.functionQueue(e.function)
          .remove(e.id)
          .catch(() => 0),
      ),
    );
    await publishCancellation(
      this.deps.queues.connection,
      this.deps.queues.prefix,
      executions.map((e) => e.id),
    );
  }

  functionQueue(functionName: string): Queue {
    let queue = this.functionQueues.get(functionName);
    if (!queue) {
      queue = new Queue(functionQueueName(functionName), {
        connection: this.deps.queues.connection,
        prefix: this.deps.queues.prefix,
      });
      this.functionQueues.set(functionName, queue);
    }
    return queue;
  }

  /** Remembers which functions have workers, so definitions naming unknown ones get a warning. */
  private async noteFunction(name: string): Promise<void> {
    // Once per function and coordinator process: not a query per step.
    if (this.seenFunctions.has(name)) return;
    await markFunctionSeen(this.deps.pool, name);
    this.seenFunctions.add(name);
  }

  private async definition(name: string, version: number): Promise<WorkflowDefinition> {
    const key = `${name}@${version}`;
    let definition = this.definitions.get(key);
    if (!definition) {
      // Stored versions never change, so caching them forever is safe.
      definition = (await getDefinition(this.deps.pool, name, version)).definition;
      this.definitions.set(key, definition);
    }
    return definition;
  }

  private observeFinished(run: LockedRun, status: string): void {
    metrics.runsTotal.inc({ workflow: run.workflow, status });
    metrics.runDuration.observe({ workflow: run.workflow, status }, (Date.now() - run.createdAt.getTime()) / 1000);
    if (status === 'compensated' || status === 'compensation_failed') {
      metrics.compensationsTotal.inc({ workflow: run.workflow, status });
    }
  }
}

function runError(code: string, message: string): RunError {
  return { stepId: '', function: '', attempt: 0, code, message, nonRetryable: true };
}

/** The steps and every step that needs them, directly or not: what a retry must run again. */
export function dependentsOf(definition: WorkflowDefinition, stepIds: string[]): string[] {
  const result = new Set(stepIds);
  let grew = true;
  while (grew) {
    grew = false;
    for (const step of definition.steps) {
      if (!result.has(step.id) && step.needs.some((n) => result.has(n))) {
        result.add(step.id);
        grew = true;
      }
    }
  }
  return [...result];
}

/**
 * A built-in step's input with its due time fixed when it starts: `dueAt` (epoch ms) is when a sleep
 * ends or a wait times out. Stored with the execution, so timers can be re-armed after a restart.
 */
function builtinInput(planned: PlannedExecution): unknown {
  const input = (planned.input ?? {}) as Record<string, unknown>;
  if (planned.function === SLEEP_FUNCTION) {
    const until = typeof input.until === 'string' ? Date.parse(input.until) : NaN;
    const duration = Number(input.durationMs);
    const dueAt = Number.isFinite(until) ? until : Date.now() + (Number.isFinite(duration) ? Math.max(0, duration) : 0);
    return { ...input, dueAt };
  }
  if (planned.function === WAIT_FOR_EVENT_FUNCTION) return { ...input, dueAt: Date.now() + Number(input.timeoutMs) };
  return planned.input;
}

function builtinDueAt(input: unknown): number {
  const dueAt = Number((input as { dueAt?: unknown } | null)?.dueAt);
  return Number.isFinite(dueAt) ? dueAt : Date.now();
}

export function isBuiltin(functionName: string): boolean {
  return functionName === SLEEP_FUNCTION || functionName === WAIT_FOR_EVENT_FUNCTION;
}
