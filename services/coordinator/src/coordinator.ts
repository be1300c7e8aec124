import crypto from 'node:crypto';
import { Queue, Worker, type Job } from 'bullmq';
import {
  COORDINATOR_QUEUE,
  ExpressionError,
  KEEP_FINISHED_JOBS,
  functionQueueName,
  getDefinition,
  isTerminalRun,
  metrics,
  planRun,
  withTransaction,
  type CoordinatorMessage,
  type Logger,
  type Plan,
  type Pool,
  type PoolClient,
  type RunStatus,
  type QueueContext,
  type StepJobData,
  type WorkflowDefinition,
} from '@baton/shared';
import {
  applyReport,
  insertExecutions,
  insertLogs,
  insertSkipped,
  loadExecutions,
  lockRun,
  stepIdOf,
  touchRun,
  updateRun,
  type LockedRun,
  type NewExecution,
} from './run-store';

/** What a committed transaction leaves to do. */
interface Outcome {
  jobs: StepJobData[];
  finished?: { run: LockedRun; status: RunStatus };
}

const NOTHING: Outcome = { jobs: [] };

export interface CoordinatorDeps {
  pool: Pool;
  queues: QueueContext;
  logger: Logger;
  concurrency?: number;
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
  private worker?: Worker<CoordinatorMessage>;

  constructor(private readonly deps: CoordinatorDeps) {}

  start(): void {
    this.worker = new Worker<CoordinatorMessage>(
      COORDINATOR_QUEUE,
      (job: Job<CoordinatorMessage>) => this.handle(job.data),
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
  }

  async close(): Promise<void> {
    await this.worker?.close();
    await Promise.all([...this.functionQueues.values()].map((q) => q.close()));
  }

  async handle(message: CoordinatorMessage): Promise<void> {
    const outcome = await withTransaction(this.deps.pool, async (client) => {
      const run = await lockRun(client, message.runId);
      if (!run) {
        this.deps.logger.warn({ message }, 'message for an unknown run dropped');
        return NOTHING;
      }
      if (message.type !== 'run.start') {
        const changed = await applyReport(client, message);
        if (message.type !== 'step.started' && changed) {
          await insertLogs(client, run.id, message, await stepIdOf(client, message.stepExecutionId));
        }
        // Started and retrying reports change no plan.
        if (!changed || message.type === 'step.started' || message.type === 'step.retrying') return NOTHING;
      }
      return this.advanceLocked(client, run);
    });
    await this.afterCommit(outcome);
  }

  /** Re-plans a run without a new report (used by the reconciler). */
  async advance(runId: string): Promise<void> {
    const outcome = await withTransaction(this.deps.pool, async (client) => {
      const run = await lockRun(client, runId);
      return run ? this.advanceLocked(client, run) : NOTHING;
    });
    await this.afterCommit(outcome);
  }

  /** Effects that must follow a successful commit: enqueueing planned steps, counting finished runs. */
  private async afterCommit(outcome: Outcome): Promise<void> {
    if (outcome.finished) this.observeFinished(outcome.finished.run, outcome.finished.status);
    await this.enqueue(outcome.jobs);
  }

  private async advanceLocked(client: PoolClient, run: LockedRun): Promise<Outcome> {
    if (isTerminalRun(run.status)) return NOTHING;
    const definition = await this.definition(run.workflow, run.workflowVersion);
    const executions = await loadExecutions(client, run.id);
    let plan: Plan;
    try {
      plan = await planRun(definition, { ...run, executions });
    } catch (err) {
      if (!(err instanceof ExpressionError)) throw err;
      // A template that fails on this run's data fails the run; retrying cannot change the data.
      plan = {
        start: [],
        skip: [],
        status: 'failed',
        error: { stepId: '', function: '', attempt: 0, code: err.code, message: err.message, nonRetryable: true },
      };
    }

    const started: NewExecution[] = plan.start.map((p) => ({ ...p, id: crypto.randomUUID() }));
    await insertExecutions(client, run.id, started);
    const stepsById = new Map(definition.steps.map((s) => [s.id, s]));
    await insertSkipped(
      client,
      run.id,
      plan.skip.map((stepId) => ({ id: crypto.randomUUID(), stepId, function: stepsById.get(stepId)?.function ?? '' })),
    );
    let finished: Outcome['finished'];
    if (plan.status && plan.status !== run.status) {
      const terminal = isTerminalRun(plan.status);
      await updateRun(client, run.id, { status: plan.status, terminal, output: plan.output, error: plan.error });
      this.deps.logger.info({ runId: run.id, workflow: run.workflow, from: run.status, to: plan.status }, 'run status');
      if (terminal) finished = { run, status: plan.status };
    } else {
      await touchRun(client, run.id);
    }

    const jobs = started.map((e) => ({
      runId: run.id,
      stepExecutionId: e.id,
      stepId: e.stepId,
      workflow: run.workflow,
      kind: e.kind,
      function: e.function,
      input: e.input,
      retry: e.retry,
      ...(e.timeoutMs === undefined ? {} : { timeoutMs: e.timeoutMs }),
    }));
    return { jobs, finished };
  }

  /** Enqueues step jobs; a job id already present (a re-enqueue) is a no-op in BullMQ. */
  async enqueue(jobs: StepJobData[]): Promise<void> {
    await Promise.all(
      jobs.map((data) =>
        this.functionQueue(data.function).add(data.stepId, data, {
          jobId: data.stepExecutionId,
          attempts: data.retry.attempts,
          // The delay is the function runtime's, computed from `retry` (see runtime/worker.ts).
          backoff: { type: 'baton' },
          removeOnComplete: KEEP_FINISHED_JOBS,
          removeOnFail: KEEP_FINISHED_JOBS,
        }),
      ),
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
