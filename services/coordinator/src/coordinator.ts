import { Worker, type Job, type Queue } from 'bullmq';
import {
  coordinatorQueue,
  inSpan,
  isInboxMessage,
  type CoordinatorClient,
  type CoordinatorMessage,
  type InboxMessage,
  type Logger,
  type Pool,
  type QueueContext,
  type StepJobData,
  type TraceCarrier,
  syncFunctionPauses,
} from '@baton/engine';
import { BatchApplier } from './batch-apply';
import { BuiltinTimers } from './builtin-steps';
import { Debouncer } from './debouncer';
import { takeRequest } from './control-store';
import { InboxConsumer, type InboxConsumerOptions } from './inbox-consumer';
import { nothing } from './outcome';
import { RunAdvancer } from './run-advancer';
import { RunControl } from './run-control';
import { finishBuiltin } from './run-store';
import { StepDispatcher } from './step-dispatch';
import { Triggers } from './triggers';

export interface CoordinatorDeps {
  pool: Pool;
  queues: QueueContext;
  logger: Logger;
  /** BullMQ messages (timers, schedules, control requests) handled at once. */
  concurrency?: number;
  /**
   * Inbox tuning (batch size, reading loops, claim time, shards read); defaults in
   * inbox-consumer.ts, shards: `queues.inboxShards`.
   */
  inbox?: Partial<Pick<InboxConsumerOptions, 'batchSize' | 'loops' | 'claimIdleMs' | 'maxDeliveries' | 'shards'>>;
  /** Largest step output stored (BATON_MAX_OUTPUT_BYTES); report-guard.ts. */
  maxOutputBytes?: number;
  /** BATON_FOREACH_MAX_ITEMS and BATON_MAX_CHILD_DEPTH (defaults: 10 000 and 16). */
  maxForEachItems?: number;
  maxChildDepth?: number;
}

/**
 * Advances runs. For each message: lock the run row, apply the report, plan, write, commit — then
 * enqueue the planned steps with `jobId = stepExecutionId`, so an enqueue repeated by the
 * reconciler is a no-op. Nothing is enqueued before its row is committed; a crash in between
 * leaves a queued row without a job, which the reconciler restores.
 *
 * This class only wires the parts and routes messages to them: inbox batches to `BatchApplier`
 * (batch-apply.ts), run control to `RunControl` (run-control.ts), events and schedule ticks to
 * `Triggers` (triggers.ts), built-in timers to `RunAdvancer` (run-advancer.ts), which all of them
 * use to plan a run; `StepDispatcher` (step-dispatch.ts) and `BuiltinTimers` (builtin-steps.ts)
 * enqueue, shared with the reconciler; `CoordinatorClient` (shared) sends the
 * coordinator's own messages.
 */
export class Coordinator {
  readonly client: CoordinatorClient;
  readonly timers: BuiltinTimers;
  readonly dispatcher: StepDispatcher;
  private readonly advancer: RunAdvancer;
  private readonly control: RunControl;
  private readonly triggers: Triggers;
  private readonly batches: BatchApplier;
  /** Debounce windows (debouncer.ts): fired by their timer, and by the reconciler when it is lost. */
  readonly debouncer: Debouncer;
  private worker?: Worker<CoordinatorMessage>;
  private inbox?: InboxConsumer;
  private inboxStarted?: Promise<void>;

  constructor(private readonly deps: CoordinatorDeps) {
    const { pool, logger } = deps;
    this.client = coordinatorQueue(deps.queues);
    this.timers = new BuiltinTimers(this.client);
    this.dispatcher = new StepDispatcher(deps.queues, this.timers);
    this.advancer = new RunAdvancer({
      pool,
      logger,
      dispatcher: this.dispatcher,
      coordinator: this.client,
      checkWait: (runId, stepExecutionId) => this.triggers.checkWait(runId, stepExecutionId),
      maxForEachItems: deps.maxForEachItems,
      maxChildDepth: deps.maxChildDepth,
    });
    this.control = new RunControl(this.advancer, logger);
    this.triggers = new Triggers({ pool, logger, advancer: this.advancer, coordinator: this.client });
    this.debouncer = new Debouncer({ pool, logger, coordinator: this.client });
    this.batches = new BatchApplier({
      pool,
      logger,
      advancer: this.advancer,
      triggers: this.triggers,
      maxOutputBytes: deps.maxOutputBytes,
    });
  }

  start(): void {
    const { queues, logger } = this.deps;
    this.worker = new Worker<CoordinatorMessage>(
      this.client.name,
      (job: Job<CoordinatorMessage>) => this.handle(job.data, job.id),
      {
        connection: queues.connection,
        prefix: queues.prefix,
        concurrency: this.deps.concurrency ?? 16,
        // Applying a message is idempotent, so a message re-run after a coordinator crash is safe.
        maxStalledCount: 5,
      },
    );
    this.worker.on('error', (err) => logger.error({ err }, 'coordinator worker error'));
    this.worker.on('failed', (job, err) =>
      logger.warn({ err, message: job?.data, attempts: job?.attemptsMade }, 'coordinator message failed'),
    );
    this.inbox = new InboxConsumer({
      redis: queues.connection,
      prefix: queues.prefix,
      logger,
      handleBatch: (messages, onCommit) => this.handleBatch(messages, onCommit),
      shards: queues.inboxShards ?? 1,
      ...this.deps.inbox,
    });
    this.inboxStarted = this.inbox.start().catch((err: unknown) => {
      logger.error({ err }, 'cannot read the coordinator inbox');
      throw err;
    });
  }

  async close(): Promise<void> {
    await this.inboxStarted?.catch(() => undefined);
    await this.inbox?.close();
    await this.worker?.close();
    await this.dispatcher.close();
    await this.client.close();
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

  /** Run starts and step reports, a batch in one transaction (batch-apply.ts). */
  handleBatch(received: InboxMessage[], onCommit?: () => Promise<void>): Promise<void> {
    return this.batches.handleBatch(received, onCommit);
  }

  /** A message not from the inbox, in a transaction of its own. */
  private async handleMessage(message: Exclude<CoordinatorMessage, InboxMessage>, jobId?: string): Promise<void> {
    if (message.type === 'event.deliver') return this.triggers.deliverEvent(message.eventId);
    if (message.type === 'schedule.fire') {
      await this.triggers.fireSchedule(message.scheduleId, message.workflow, jobId);
      return;
    }
    if (message.type === 'debounce.fire') {
      await this.debouncer.fire(message);
      return;
    }
    // Held runs, admitted in order: a rate window freed, a run held for an earlier one, a workflow resumed.
    if (message.type === 'admission.rateWake') {
      await this.advancer.admitHeld(message.workflow, message.key, { by: 'rate' });
      return;
    }
    if (message.type === 'admission.groupWake') {
      await this.advancer.admitHeld(message.workflow, message.key);
      return;
    }
    if (message.type === 'workflow.resume') {
      await this.advancer.admitWorkflow(message.workflow);
      return;
    }
    await this.advancer.inRunTransaction(message.runId, async (client, run, writes) => {
      switch (message.type) {
        case 'run.cancel':
        case 'run.retry':
          // A recorded request is marked done in the transaction that applies it: applied once, however
          // often its message or the reconciler brings it.
          if (message.requestId && !(await takeRequest(client, message.requestId))) return nothing();
          return this.control.apply(client, run, message, writes);
        case 'run.timeout':
          return this.control.apply(client, run, message, writes);
        case 'step.wake':
        case 'step.waitTimeout':
          return (await finishBuiltin(client, message)) ? this.advancer.advanceLocked(client, run, writes) : nothing();
      }
    });
  }

  /** Re-plans a run without a new report (the reconciler, a freed concurrency slot). */
  advance(runId: string): Promise<void> {
    return this.advancer.advance(runId);
  }

  /**
   * A schedule tick as its `schedule.fire` job would be handled, at `now` (tests choose the time to
   * see catch-up and overlap without waiting for ticks): the ids of the runs it started.
   */
  fireSchedule(scheduleId: string, workflow: string, jobId: string | undefined, now?: number): Promise<string[]> {
    return this.triggers.fireSchedule(scheduleId, workflow, jobId, now);
  }

  /** Held runs of an admission group, in order, until one stays held or `max` were admitted. */
  admitHeld(workflow: string, key: string, max?: number): Promise<number> {
    return this.advancer.admitHeld(workflow, key, { max });
  }

  /** Offers a stored event to the runs parked on it (triggers.ts; the control outbox re-drives it). */
  deliverEvent(eventId: string): Promise<void> {
    return this.triggers.deliverEvent(eventId);
  }

  /** A waitForEvent step's look at the events already stored (triggers.ts). */
  checkWait(runId: string, stepExecutionId: string): Promise<void> {
    return this.triggers.checkWait(runId, stepExecutionId);
  }

  /** Enqueues step jobs (step-dispatch.ts). */
  enqueue(jobs: StepJobData[]): Promise<void> {
    return this.dispatcher.enqueue(jobs);
  }

  /**
   * For the reconciler: re-arms a running built-in step whose timer message is gone from Redis
   * (builtin-steps.ts). Returns true when it had to.
   */
  ensureBuiltinArmed(data: StepJobData): Promise<boolean> {
    return this.timers.ensureArmed(data);
  }

  /** The coordinator's own queue (schedules live on it). */
  get queue(): CoordinatorClient {
    return this.client;
  }

  /**
   * Function pauses stored in PostgreSQL put back on their queues (engine/src/function-controls.ts):
   * at start and on every reconcile pass, so a Redis wipe or restart never resumes a function.
   */
  syncFunctionPauses(): Promise<{ paused: string[]; resumed: string[] }> {
    return syncFunctionPauses(this.deps.pool, this.deps.queues);
  }

  functionQueue(functionName: string): Queue {
    return this.dispatcher.functionQueue(functionName);
  }
}
