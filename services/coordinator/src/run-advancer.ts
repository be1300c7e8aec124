import crypto from 'node:crypto';
import {
  isBuiltinFunction,
  stepIdempotencyKey,
  ExpressionError,
  evaluate,
  getDefinition,
  injectTrace,
  isTerminalRun,
  metrics,
  OUTSTANDING_STEP_STATUSES,
  planRun,
  WAIT_FOR_EVENT_FUNCTION,
  withTransaction,
  type CoordinatorClient,
  type Logger,
  type Plan,
  type Pool,
  type PoolClient,
  type RunError,
  type RunStatus,
  type StepExecutionState,
  type StepJobData,
  type TraceCarrier,
  type WorkflowDefinition,
} from '@baton/shared';
import { builtinInput } from './builtin-steps';
import { recordWaitChecks } from './control-store';
import { merge, nothing, type Outcome } from './outcome';
import {
  loadExecutions,
  lockConcurrencyKey,
  lockRun,
  runsAhead,
  RunWrites,
  setConcurrencyKey,
  undoGenerations,
  waitingRuns,
  type LockedRun,
  type NewExecution,
} from './run-store';
import { stepJobData, type StepDispatcher } from './step-dispatch';

/**
 * Run advancing: plan a locked run against its executions and buffer what the plan decides
 * (admission under a concurrency limit, new and skipped executions, the run's transition), then,
 * once committed, carry out the outcome (enqueue, stop cancelled jobs, deadlines, wake-ups).
 *
 * Writes go through the buffered `RunWrites` (one statement per kind at commit), except two that
 * must be immediate: admission's `setConcurrencyKey` under the key's advisory lock (the next admission
 * of the key, in this batch or another, counts this run) and `recordWaitChecks` (the wait's check
 * request must exist in the transaction that plans it; see control-store.ts).
 */
export interface RunAdvancerDeps {
  pool: Pool;
  logger: Logger;
  dispatcher: StepDispatcher;
  coordinator: CoordinatorClient;
  /** A waitForEvent step that began looks at the events already stored (triggers.ts). */
  checkWait: (runId: string, stepExecutionId: string) => Promise<void>;
}

export class RunAdvancer {
  private readonly definitions = new Map<string, WorkflowDefinition>();

  constructor(private readonly deps: RunAdvancerDeps) {}

  /** Re-plans a run without a new report (the reconciler, a freed concurrency slot). */
  async advance(runId: string): Promise<void> {
    await this.inRunTransaction(runId, (client, run, writes) => this.advanceLocked(client, run, writes));
  }

  /** Locks the run, runs `fn`, writes what it buffered, commits, then carries out the outcome. */
  async inRunTransaction(
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

  /** Effects that must follow a successful commit. */
  async afterCommit(outcome: Outcome): Promise<void> {
    for (const { run, status } of outcome.finished) observeFinished(run, status);
    if (outcome.cancelled.length) await this.deps.dispatcher.stopJobs(outcome.cancelled);
    await this.deps.dispatcher.enqueue(outcome.jobs);
    // Waits that began look at the events already stored; a check that fails here is re-driven by
    // the reconciler (its request is recorded with the step).
    await Promise.all(
      outcome.jobs
        .filter((job) => job.function === WAIT_FOR_EVENT_FUNCTION)
        .map((job) =>
          this.deps
            .checkWait(job.runId, job.stepExecutionId)
            .catch((err: unknown) =>
              this.deps.logger.warn({ err, runId: job.runId, stepId: job.stepId }, 'waitForEvent check deferred'),
            ),
        ),
    );
    for (const notify of outcome.notify) await notify();
    await this.deps.coordinator.sendAllDelayed(
      outcome.deadlines.map(({ runId, attempt, delayMs }) => ({
        message: { type: 'run.timeout', runId, attempt },
        delayMs,
      })),
    );
    for (const { workflow, key, limit } of outcome.releasedKeys) {
      for (const runId of await waitingRuns(this.deps.pool, workflow, key, limit)) await this.advance(runId);
    }
  }

  /**
   * Plans the run and buffers what the plan decides in `writes` (written at commit). `executions`:
   * the run's current executions when the caller has loaded them already.
   */
  async advanceLocked(
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
      return {
        ...p,
        id: crypto.randomUUID(),
        input: builtinInput(p),
        // Without a generation the runtime derives the same key from the job (stepIdempotencyKey).
        ...(generation > 0 ? { idempotencyKey: stepIdempotencyKey({ runId: run.id, ...p }, generation) } : {}),
      };
    });
    writes.insertExecutions(run.id, started);
    writes.startBuiltins(started.filter((e) => isBuiltinFunction(e.function)).map((e) => e.id));
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
    outcome.jobs = started.map((e): StepJobData => stepJobData(run, e, trace ?? injectTrace()));
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
    // Serialises admissions per key, so two runs cannot both take the last slot. The key is written
    // at once, not buffered: the next admission of the key (in this batch or another) counts this run.
    await lockConcurrencyKey(client, run.workflow, key);
    await setConcurrencyKey(client, run.id, key);
    if ((await runsAhead(client, run, key)) >= limit) return false;
    writes.changeRun(run.id, { admitted: { concurrencyKey: key, deadlineMs: definition.timeoutMs } });
    return true;
  }

  /** Buffers a run's change of status; a terminal one also releases its concurrency slot. */
  transition(
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

  async definition(name: string, version: number): Promise<WorkflowDefinition> {
    const key = `${name}@${version}`;
    let definition = this.definitions.get(key);
    if (!definition) {
      // Stored versions never change, so caching them forever is safe.
      definition = (await getDefinition(this.deps.pool, name, version)).definition;
      this.definitions.set(key, definition);
    }
    return definition;
  }
}

export function runError(code: string, message: string): RunError {
  return { stepId: '', function: '', attempt: 0, code, message, nonRetryable: true };
}

function observeFinished(run: LockedRun, status: string): void {
  metrics.runsTotal.inc({ workflow: run.workflow, status });
  metrics.runDuration.observe({ workflow: run.workflow, status }, (Date.now() - run.createdAt.getTime()) / 1000);
  if (status === 'compensated' || status === 'compensation_failed') {
    metrics.compensationsTotal.inc({ workflow: run.workflow, status });
  }
}
