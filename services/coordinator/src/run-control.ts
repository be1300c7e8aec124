import {
  CANCELLED,
  downstreamOf,
  isTerminalRun,
  latestByStep,
  WORKFLOW_TIMEOUT,
  type WorkflowDefinition,
} from '@baton/workflow';
import type { Logger, PoolClient, RunControlMessage } from '@baton/engine';
import { reopenFanout } from './fanout-store';
import { nothing, type Outcome } from './outcome';
import { runError, type RunAdvancer } from './run-advancer';
import {
  cancelOutstanding,
  loadExecutions,
  resetForRetry,
  supersedeForRetry,
  updateRun,
  type LockedRun,
  type RunWrites,
} from './run-store';

/**
 * Run control: cancel, retry and timeout, requests that change a run from outside its steps, applied
 * under the run lock (the caller's `inRunTransaction`; a recorded request is taken there too).
 *
 * Writes that are immediate, not buffered in `RunWrites`, and why: a retry's `supersedeForRetry` and
 * `resetForRetry` and a stop's `cancelOutstanding` and `updateRun` change rows the planning that
 * follows reads (the superseded executions, the run's status) — the buffer is written after planning,
 * and planning reads nothing it has buffered.
 */
export class RunControl {
  constructor(
    private readonly advancer: RunAdvancer,
    private readonly logger: Logger,
  ) {}

  async apply(client: PoolClient, run: LockedRun, message: RunControlMessage, writes: RunWrites): Promise<Outcome> {
    const definition = await this.advancer.definition(run.workflow, run.workflowVersion);
    if (message.type === 'run.retry') return this.retry(client, run, definition, message, writes);

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
    this.logger.info({ runId: run.id, code: error.code, cancelled: cancelled.length, compensate }, 'run stopped');
    // Its running children (and theirs, in turn) are stopped the way the run is.
    const cancelChildren = cancelled
      .filter((e) => e.childRunId)
      .map((e) => ({ runId: e.childRunId as string, compensate }));
    if (!compensate) {
      const outcome = this.advancer.transition(run, definition, writes, 'cancelled', undefined, error);
      return { ...outcome, cancelled, cancelChildren };
    }
    await updateRun(client, run.id, { status: 'compensating', terminal: false, error });
    const outcome = await this.advancer.advanceLocked(client, { ...run, status: 'compensating', error }, writes);
    return {
      ...outcome,
      cancelled: [...cancelled, ...outcome.cancelled],
      cancelChildren: [...cancelChildren, ...outcome.cancelChildren],
    };
  }

  /** Retry from failure: the failed and undone steps and their dependants run again. */
  private async retry(
    client: PoolClient,
    run: LockedRun,
    definition: WorkflowDefinition,
    message: RunControlMessage & { type: 'run.retry' },
    writes: RunWrites,
  ): Promise<Outcome> {
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
    // The failed and undone steps and every step that needs them, directly or not.
    const rerun = downstreamOf(definition, [...failed, ...undone]);
    // forEach steps with items run again only their items that did not succeed (the list is not
    // resolved again); other steps start over.
    const reopened = actions.filter((e) => rerun.includes(e.stepId) && e.fanout?.mode === 'forEach');
    await supersedeForRetry(
      client,
      run.id,
      rerun,
      reopened.map((e) => e.id),
    );
    const overrides = { ...run.inputOverrides };
    if (message.input !== undefined) {
      for (const stepId of message.stepId ? [message.stepId] : failed) overrides[stepId] = message.input;
    }
    // A reopened forEach step's re-run items take the retry's input when it names the step.
    for (const e of reopened) {
      const input = message.input !== undefined && e.stepId in overrides ? { value: overrides[e.stepId] } : undefined;
      await reopenFanout(client, e.id, run.retries + 1, input);
    }
    await resetForRetry(client, run.id, overrides);
    // A new deadline for the new attempt; the run keeps its concurrency key.
    writes.changeRun(run.id, { admitted: { concurrencyKey: run.concurrencyKey, deadlineMs: definition.timeoutMs } });
    this.logger.info({ runId: run.id, rerun, attempt: run.retries + 1 }, 'run retried from its failed steps');
    const resumed: LockedRun = {
      ...run,
      status: 'running',
      error: null,
      retries: run.retries + 1,
      inputOverrides: overrides,
    };
    const outcome = await this.advancer.advanceLocked(client, resumed, writes);
    if (definition.timeoutMs)
      outcome.deadlines.push({ runId: run.id, attempt: resumed.retries, delayMs: definition.timeoutMs });
    return outcome;
  }
}
