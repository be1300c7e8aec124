import crypto from 'node:crypto';
import {
  CHILD_WORKFLOW_FUNCTION,
  ErrorCode,
  expressionContext,
  resolveTemplateEach,
  isBuiltinFunction,
  type SerializedError,
  ExpressionError,
  evaluate,
  runPriority,
  isTerminalRun,
  OUTSTANDING_STEP_STATUSES,
  planRun,
  WAIT_FOR_EVENT_FUNCTION,
  type Plan,
  type PlannedExecution,
  type RunError,
  type RunStatus,
  type StepExecutionState,
  type WorkflowDefinition,
} from '@baton/workflow';
import {
  validateRunInput,
  stepIdempotencyKey,
  stepJobData,
  getDefinition,
  injectTrace,
  metrics,
  withTransaction,
  type CoordinatorClient,
  type Logger,
  type Pool,
  type PoolClient,
  type StoredDefinition,
  type StepJobData,
  type TraceCarrier,
} from '@baton/engine';
import { builtinInput } from './builtin-steps';
import { childReport, DEFAULT_MAX_CHILD_DEPTH } from './child-runs';
import { insertChildRuns, latestVersions, type NewChildRun } from './child-store';
import { recordWaitChecks } from './control-store';
import {
  cancelItems,
  failItems,
  insertItems,
  itemsToUndo,
  markStepCompensated,
  markUndoing,
  promoteItems,
  settleFanout,
  type DispatchedItem,
  type NewItem,
} from './fanout-store';
import { merge, nothing, type Outcome } from './outcome';
import {
  heldGroups,
  earlierUnseen,
  heldInOrder,
  holdRun,
  loadExecutions,
  lockConcurrencyKey,
  lockRun,
  rateWindow,
  runsAhead,
  RunWrites,
  undoGenerations,
  waitingRuns,
  type HeldPosition,
  type LockedRun,
  type NewExecution,
} from './run-store';
import type { StepDispatcher } from './step-dispatch';

/**
 * Run advancing: plan a locked run against its executions and buffer what the plan decides
 * (admission under a concurrency limit, new and skipped executions, the run's transition), then,
 * once committed, carry out the outcome (enqueue, stop cancelled jobs, deadlines, wake-ups).
 *
 * Writes go through the buffered `RunWrites` (one statement per kind at commit), except two that
 * must be immediate: admission's `holdRun` under the key's advisory locks (the next admission of the
 * key or rate bucket, in this batch or another, counts this run and its start) and `recordWaitChecks`
 * (the wait's check request must exist in the transaction that plans it; see control-store.ts).
 *
 * Admission (a pending run, `admit`): a run of a workflow with a `concurrency` limit, a `rateLimit`
 * or paused is held until each lets it through, in order (priority, then arrival) — and, limited,
 * while a run that arrived before it has not been looked at by admission yet; held runs are woken by
 * a run of their key finishing (`releasedKeys`), a rate window freeing (a delayed
 * `admission.rateWake`), an admission of their group (`groupFollowUps`), a delayed
 * `admission.groupWake` (a run held for an unseen one), a resume (`workflow.resume`), or the
 * reconciler (`admitHeld`).
 */
/**
 * How soon a run held for an earlier one not yet looked at looks at its group again: a quarter of
 * how long it has waited, within these bounds (due times rounded to the lower one, so one wake-up
 * job serves a group's burst). The earlier run's admission wakes its own group at once; this covers
 * another group's (normally a few ms behind: the other loop's batch), and an earlier run cancelled or
 * failed instead, without polling often when one stays unseen for long (a shard's backlog, a lost
 * start until the reconciler's idle walk).
 */
const UNSEEN_RECHECK_MIN_MS = 10;
const UNSEEN_RECHECK_MAX_MS = 250;

export interface RunAdvancerDeps {
  pool: Pool;
  logger: Logger;
  dispatcher: StepDispatcher;
  coordinator: CoordinatorClient;
  /** A waitForEvent step that began looks at the events already stored (triggers.ts). */
  checkWait: (runId: string, stepExecutionId: string) => Promise<void>;
  /** BATON_FOREACH_MAX_ITEMS (default 10 000). */
  maxForEachItems?: number;
  /** BATON_MAX_CHILD_DEPTH (default 16). */
  maxChildDepth?: number;
}

/** An execution about to be dispatched whose step is a child workflow: what starting its child needs. */
interface ChildToStart {
  id: string;
  stepId: string;
  workflow: string;
  input: unknown;
  delayMs: number;
  /** An item (forEach/repeat): failed by its own update when its child cannot start. */
  item: boolean;
}

export class RunAdvancer {
  private readonly definitions = new Map<string, StoredDefinition>();

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
    const jobsToStop = outcome.cancelled.filter((e) => e.function !== CHILD_WORKFLOW_FUNCTION);
    if (jobsToStop.length) await this.deps.dispatcher.stopJobs(jobsToStop);
    await this.deps.dispatcher.enqueue(outcome.jobs, outcome.delays);
    // Child runs: started, stopped, reported on. Each is durable without these messages (the
    // reconciler finds a pending child, a child whose parent step ended, a report not applied).
    const { coordinator } = this.deps;
    const now = outcome.childStarts.filter((c) => c.delayMs <= 0);
    if (now.length) {
      await coordinator.sendToInbox(
        now.map((c) => ({ type: 'run.start' as const, runId: c.runId })),
        'starting child runs',
      );
    }
    await coordinator.sendAllDelayed(
      outcome.childStarts
        .filter((c) => c.delayMs > 0)
        .map((c) => ({ message: { type: 'run.start' as const, runId: c.runId }, delayMs: c.delayMs })),
    );
    for (const { runId, compensate } of outcome.cancelChildren) {
      await coordinator.send({ type: 'run.cancel', runId, compensate });
    }
    if (outcome.childReports.length) await coordinator.sendToInbox(outcome.childReports, 'reporting child runs');
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
    await this.deps.coordinator.sendAllDelayed(outcome.wakes);
    for (const { workflow, key, limit } of outcome.releasedKeys) {
      for (const runId of await waitingRuns(this.deps.pool, workflow, key, limit)) await this.advance(runId);
    }
    for (const runId of new Set(outcome.readvance)) await this.advance(runId);
    const followUps = new Map(outcome.rateFollowUps.map((f) => [`${f.workflow}\u0000${f.key}`, f]));
    for (const { workflow, key } of followUps.values()) await this.admitHeld(workflow, key, { by: 'rate', max: 1 });
    const groups = new Map(outcome.groupFollowUps.map((f) => [`${f.workflow}\u0000${f.key}`, f]));
    // Stops at the group's first run that stays held: one query when none waits.
    for (const { workflow, key } of groups.values()) await this.admitHeld(workflow, key);
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
        admitted = await this.admit(client, run, definition, writes, outcome);
      } catch (err) {
        if (!(err instanceof ExpressionError)) throw err;
        // A concurrency or rate key, or a priority, that fails on this run's input fails the run
        // (nothing is written before they are known); re-planning it could only fail again.
        return this.transition(run, definition, writes, 'failed', undefined, runError(err.code, err.message));
      }
      if (!admitted) return outcome;
      if (definition.timeoutMs)
        outcome.deadlines.push({ runId: run.id, attempt: run.retries, delayMs: definition.timeoutMs });
    }

    const current = executions ?? (await loadExecutions(client, run.id));
    let plan: Plan;
    try {
      plan = await planRun(definition, { ...run, executions: current }, { maxForEachItems: this.deps.maxForEachItems });
    } catch (err) {
      if (!(err instanceof ExpressionError)) throw err;
      // A template that fails on this run's data fails the run; retrying cannot change the data.
      plan = { start: [], skip: [], status: 'failed', error: runError(err.code, err.message) };
    }
    const toCancel = new Set(plan.cancel ?? []);
    const cancelledSteps = current.filter((e) => toCancel.has(e.id) && OUTSTANDING_STEP_STATUSES.includes(e.status));
    outcome.cancelled = cancelledSteps.map((e) => ({
      id: e.id,
      function: e.function,
      ...(e.childRunId ? { childRunId: e.childRunId } : {}),
    }));
    writes.cancel(
      outcome.cancelled.map((e) => e.id),
      'a sibling step failed (failFast)',
    );
    await this.applyFanoutMoves(client, run, definition, plan, cancelledSteps, outcome);

    // Only a retried run can have steps whose effect was undone; others skip the query.
    const generations = run.retries > 0 && plan.start.length ? await undoGenerations(client, run.id) : undefined;
    const keyOf = (p: { stepId: string; kind: 'action' | 'compensation' }): string | undefined => {
      const generation = generations?.get(p.stepId) ?? 0;
      // Without a generation the runtime derives the same key from the job (stepIdempotencyKey).
      return generation > 0 ? stepIdempotencyKey({ runId: run.id, ...p }, generation) : undefined;
    };
    const children: ChildToStart[] = [];
    const itemJobs: DispatchedItem[] = [];
    const started: NewExecution[] = [];
    for (const p of plan.start) {
      const id = crypto.randomUUID();
      const key = keyOf(p);
      if (p.item) {
        // A repeat step's next iteration, under its step's execution.
        const item = this.newItem(run, p.stepId, key, p.item.index, p.input, true);
        await insertItems(client, this.itemParent(run, p, p.item.parentExecutionId, 'repeat'), [item]);
        this.dispatchItem(p, item, p.item.delayMs, children, itemJobs, outcome);
        continue;
      }
      const execution: NewExecution = { ...p, id, input: builtinInput(p), ...(key ? { idempotencyKey: key } : {}) };
      started.push(execution);
      if (p.fanout && !p.error) {
        // forEach: the list is kept as the step's input; the first `concurrency` items go now (a
        // repeat step's first iteration; a forEach compensation's first item, newest first).
        if (p.fanout.list) execution.input = p.fanout.list;
        const items = p.fanout.undoes
          ? await this.undoItems(client, run, definition, current, p, p.fanout.undoes, key)
          : this.firstItems(run, p, key);
        await insertItems(client, this.itemParent(run, p, id, p.fanout.mode), items);
        for (const item of items.filter((i) => i.dispatched))
          this.dispatchItem(p, item, 0, children, itemJobs, outcome);
        // No item will report: the next plan finds the step done (an empty list's output is []).
        if (!items.length) outcome.readvance.push(run.id);
      } else if (p.function === CHILD_WORKFLOW_FUNCTION && !p.error && p.workflow) {
        children.push({ id, stepId: p.stepId, workflow: p.workflow, input: p.input, delayMs: 0, item: false });
      }
    }
    // Items the plan dispatches under a concurrency cap (forEach).
    const stepsById = new Map(definition.steps.map((s) => [s.id, s]));
    for (const { executionId, count } of plan.promote ?? []) {
      for (const item of await promoteItems(client, executionId, count)) {
        const step = stepsById.get(item.stepId);
        if (item.function === CHILD_WORKFLOW_FUNCTION && step?.workflow) {
          children.push({
            id: item.id,
            stepId: item.stepId,
            workflow: step.workflow,
            input: item.input,
            delayMs: 0,
            item: true,
          });
        } else {
          itemJobs.push(item);
        }
      }
    }
    // Compensation items dispatched: the items they undo are being undone.
    await markUndoing(
      client,
      itemJobs.filter((j) => j.kind === 'compensation').map((j) => j.id),
    );
    // Child runs whose start fails (no such workflow, too deep, input refused) fail their step.
    const refused = await this.startChildren(client, run, children, outcome);
    for (const e of started) {
      const error = refused.get(e.id);
      if (error) e.error = error;
    }
    const failedItems = children.filter((c) => c.item && refused.has(c.id));
    if (failedItems.length) {
      await failItems(
        client,
        failedItems.map((c) => ({ id: c.id, error: refused.get(c.id) as SerializedError })),
      );
      outcome.readvance.push(run.id);
    }
    if (started.some((e) => e.error)) outcome.readvance.push(run.id);
    writes.insertExecutions(run.id, started);
    writes.startBuiltins(
      started.filter((e) => isBuiltinFunction(e.function) && !e.fanout && !e.error).map((e) => e.id),
    );
    await recordWaitChecks(
      client,
      run.id,
      started.filter((e) => e.function === WAIT_FOR_EVENT_FUNCTION).map((e) => e.id),
    );
    writes.insertSkipped(
      run.id,
      plan.skip.map((stepId) => ({ id: crypto.randomUUID(), stepId, function: stepsById.get(stepId)?.function ?? '' })),
    );
    // A plan that leaves the run's status as it is writes nothing to the run's row: most reports only
    // record a step and start the next, and an UPDATE of `runs` per report (every one of its indexes
    // written again, as `updated_at` is in runs_active) was a large part of a batch's writes. The
    // reconciler measures idleness by its executions as well (reconcile-store.ts).
    if (plan.status && plan.status !== run.status) {
      merge(outcome, this.transition(run, definition, writes, plan.status, plan.output, plan.error));
    }
    const carrier = trace ?? injectTrace();
    outcome.jobs = [
      ...started
        .filter((e) => !e.error && !e.fanout && e.function !== CHILD_WORKFLOW_FUNCTION)
        .map((e): StepJobData => stepJobData(run, e, carrier)),
      ...itemJobs.map((item): StepJobData => stepJobData(run, item, carrier)),
    ];
    return outcome;
  }

  /** What the plan decided for forEach/repeat steps in progress: stop items, settle steps. */
  private async applyFanoutMoves(
    client: PoolClient,
    run: LockedRun,
    definition: WorkflowDefinition,
    plan: Plan,
    cancelledSteps: StepExecutionState[],
    outcome: Outcome,
  ): Promise<void> {
    const stopAll = [...cancelledSteps.filter((e) => e.fanout).map((e) => e.id), ...(plan.cancelItemsOf ?? [])];
    const stopped = [
      ...(await cancelItems(client, stopAll, 'its step was stopped')),
      ...(await cancelItems(client, plan.cancelPendingOf ?? [], 'a sibling step failed', true)),
    ];
    outcome.cancelled.push(...stopped);
    // A child stopped with its step is unwound: its parent is unwinding too (failFast, failure).
    for (const e of [...outcome.cancelled]) {
      if (e.childRunId) outcome.cancelChildren.push({ runId: e.childRunId, compensate: true });
    }
    for (const settlement of plan.settle ?? []) {
      if (await settleFanout(client, settlement)) {
        if (settlement.kind === 'compensation' && settlement.status === 'succeeded') {
          await markStepCompensated(client, run.id, settlement.stepId);
        }
        this.deps.logger.info(
          { runId: run.id, workflow: definition.name, stepId: settlement.stepId, status: settlement.status },
          'forEach/repeat step ended',
        );
      }
    }
    if (plan.readvance) outcome.readvance.push(run.id);
  }

  /**
   * The compensation items of a forEach step: one per succeeded item, newest first (item_index is
   * the undo order), each input resolved with that item's `item` and `index`.
   */
  private async undoItems(
    client: PoolClient,
    run: LockedRun,
    definition: WorkflowDefinition,
    executions: StepExecutionState[],
    p: PlannedExecution,
    actionExecutionId: string,
    stepKey: string | undefined,
  ): Promise<NewItem[]> {
    const step = definition.steps.find((s) => s.id === p.stepId);
    const { list, items } = await itemsToUndo(client, actionExecutionId);
    const context = expressionContext({ ...run, executions });
    const base = stepKey ?? stepIdempotencyKey({ runId: run.id, stepId: p.stepId, kind: 'compensation' });
    const inputs = await resolveTemplateEach(
      step?.compensate?.input ?? {},
      context,
      items.map((item) => (Array.isArray(list) ? list[item.index] : undefined)),
      items.map((item) => item.index),
    );
    return items.map((item, position) => ({
      id: crypto.randomUUID(),
      index: position,
      input: inputs[position] ?? {},
      dispatched: position === 0,
      idempotencyKey: `${base}:${item.index}`,
      undoes: item.id,
    }));
  }

  /** A forEach step's items (the first `concurrency` dispatched at once), or a repeat step's first iteration. */
  private firstItems(run: LockedRun, p: PlannedExecution, stepKey: string | undefined): NewItem[] {
    const fanout = p.fanout as NonNullable<PlannedExecution['fanout']>;
    const first = fanout.mode === 'repeat' ? 1 : Math.min(fanout.concurrency ?? Infinity, fanout.items.length);
    return fanout.items.map((it) => this.newItem(run, p.stepId, stepKey, it.index, it.input, it.index < first));
  }

  /** An item row to insert, with its idempotency key (stable per run, step and index). */
  private newItem(
    run: LockedRun,
    stepId: string,
    stepKey: string | undefined,
    index: number,
    input: unknown,
    dispatched: boolean,
  ): NewItem {
    const base = stepKey ?? stepIdempotencyKey({ runId: run.id, stepId, kind: 'action' });
    return { id: crypto.randomUUID(), index, input, dispatched, idempotencyKey: `${base}:${index}` };
  }

  private itemParent(
    run: LockedRun,
    p: PlannedExecution,
    executionId: string,
    mode: 'forEach' | 'repeat',
  ): Parameters<typeof insertItems>[1] {
    return {
      executionId,
      runId: run.id,
      stepId: p.stepId,
      kind: p.kind,
      function: p.function,
      retry: p.retry,
      ...(p.timeoutMs === undefined ? {} : { timeoutMs: p.timeoutMs }),
      mode,
      ...(p.fanout?.concurrency === undefined ? {} : { concurrency: p.fanout.concurrency }),
    };
  }

  /** An item dispatched at insertion: a function job, or a child run. */
  private dispatchItem(
    p: PlannedExecution,
    item: NewItem,
    delayMs: number,
    children: ChildToStart[],
    jobs: DispatchedItem[],
    outcome: Outcome,
  ): void {
    if (p.function === CHILD_WORKFLOW_FUNCTION && p.workflow) {
      children.push({ id: item.id, stepId: p.stepId, workflow: p.workflow, input: item.input, delayMs, item: true });
      return;
    }
    jobs.push({
      id: item.id,
      stepId: p.stepId,
      kind: p.kind,
      function: p.function,
      input: item.input,
      retry: p.retry,
      ...(p.timeoutMs === undefined ? {} : { timeoutMs: p.timeoutMs }),
      idempotencyKey: item.idempotencyKey,
      index: item.index,
    });
    if (delayMs > 0) outcome.delays.set(item.id, delayMs);
  }

  /**
   * Inserts the child runs of executions being dispatched, in this transaction; returns why those
   * that cannot start cannot (WORKFLOW_NOT_FOUND, CHILD_DEPTH_EXCEEDED, INVALID_INPUT), by id.
   */
  private async startChildren(
    client: PoolClient,
    run: LockedRun,
    children: ChildToStart[],
    outcome: Outcome,
  ): Promise<Map<string, SerializedError>> {
    const refused = new Map<string, SerializedError>();
    if (!children.length) return refused;
    const maxDepth = this.deps.maxChildDepth ?? DEFAULT_MAX_CHILD_DEPTH;
    const versions = await latestVersions(client, [...new Set(children.map((c) => c.workflow))]);
    const rows: NewChildRun[] = [];
    for (const child of children) {
      const version = versions.get(child.workflow);
      let error: SerializedError | undefined;
      if (run.depth + 1 > maxDepth) {
        error = {
          code: ErrorCode.CHILD_DEPTH_EXCEEDED,
          message: `a child run of '${child.workflow}' would be ${run.depth + 1} levels deep; BATON_MAX_CHILD_DEPTH is ${maxDepth}`,
          nonRetryable: true,
        };
      } else if (version === undefined) {
        error = {
          code: ErrorCode.WORKFLOW_NOT_FOUND,
          message: `no workflow named '${child.workflow}' is defined`,
          nonRetryable: true,
        };
      } else {
        try {
          validateRunInput(await this.storedDefinition(child.workflow, version), child.input);
        } catch (err) {
          error = {
            code: ErrorCode.INVALID_INPUT,
            message: (err as Error).message,
            nonRetryable: true,
            details: (err as { details?: unknown }).details,
          };
        }
      }
      if (error || version === undefined) {
        refused.set(child.id, error as SerializedError);
        continue;
      }
      rows.push({
        id: child.id,
        workflow: child.workflow,
        version,
        input: child.input,
        parentRunId: run.id,
        parentStepId: child.stepId,
        depth: run.depth + 1,
        metadata: {},
      });
      outcome.childStarts.push({ runId: child.id, delayMs: child.delayMs });
    }
    await insertChildRuns(client, rows);
    return refused;
  }

  /**
   * A pending run is admitted, or held (stays pending, its admission group written at once) while its
   * workflow is paused, its concurrency key has no free slot, or its rate bucket has had `limit`
   * starts within the last period. Held runs ahead of it count too (higher priority first, first come
   * first served within one), so a newcomer never passes them. A run refused by a full rate window
   * arms the delayed wake-up of its bucket for when the window's oldest start leaves it.
   */
  private async admit(
    client: PoolClient,
    run: LockedRun,
    definition: WorkflowDefinition,
    writes: RunWrites,
    outcome: Outcome,
  ): Promise<boolean> {
    const priority = await runPriority(definition.priority, run.input);
    run.priority = priority;
    const limit = definition.concurrency?.limit;
    const rate = definition.rateLimit;
    if (limit === undefined && !rate && !run.paused) {
      writes.changeRun(run.id, { admitted: { concurrencyKey: null, deadlineMs: definition.timeoutMs, priority } });
      return true;
    }
    const key = limit === undefined ? undefined : await admissionKey(definition.concurrency?.key, run.input);
    const rateKey = rate ? await admissionKey(rate.key, run.input) : null;
    // The run's admission group (what the reconciler and a resume look at held runs by).
    const group = key ?? rateKey ?? '';
    // Serialise admissions per rate bucket, then per concurrency key (always in this order), so two
    // runs cannot both take the last slot or the last start of a window.
    if (rateKey !== null) await lockConcurrencyKey(client, run.workflow, rateKey, 'rate');
    if (key !== undefined) await lockConcurrencyKey(client, run.workflow, key);
    const hold = { group, rateKey, priority, started: false };
    let admitted = !run.paused;
    // First come, first served across reading loops and replicas: a run that arrived earlier but is
    // not looked at yet (its run.start still on its way) counts nowhere, so this run could take the
    // slot or the window's start it needs. Its key is not known yet: hold this run (checked under
    // this run's locks, so an earlier run of its group is looked at after this hold commits, and its
    // admission's follow-up finds it), and look at the group again shortly (the earlier run may be of
    // another group, or never admitted; see UNSEEN_RECHECK_MIN_MS).
    if (admitted && (await earlierUnseen(client, run))) {
      admitted = false;
      const now = Date.now();
      const waited = now - run.createdAt.getTime();
      const delayMs = Math.min(UNSEEN_RECHECK_MAX_MS, Math.max(UNSEEN_RECHECK_MIN_MS, waited / 4));
      const dueAt = Math.ceil((now + delayMs) / UNSEEN_RECHECK_MIN_MS) * UNSEEN_RECHECK_MIN_MS;
      outcome.wakes.push({
        message: { type: 'admission.groupWake', workflow: run.workflow, key: group, dueAt },
        delayMs: Math.max(0, dueAt - now),
      });
    }
    // Held runs of this group ahead of it (counted in the checks below).
    let heldAhead = 0;
    if (admitted && limit !== undefined && key !== undefined) {
      // runsAhead reads the stored key of the others; this run's own is written below.
      const ahead = await runsAhead(client, run, key);
      admitted = ahead.total < limit;
      heldAhead = ahead.held;
    }
    if (admitted && rate && rateKey !== null) {
      const window = await rateWindow(client, run, rateKey, rate.periodMs);
      admitted = window.started + window.ahead < rate.limit;
      // Without a concurrency limit the group is the bucket.
      if (limit === undefined) heldAhead = window.ahead;
      if (!admitted && window.started >= rate.limit && window.frees) {
        // One wake-up per bucket and instant (its job id); a few ms late rather than early.
        outcome.wakes.push({
          message: { type: 'admission.rateWake', workflow: run.workflow, key: rateKey, dueAt: window.frees.at },
          delayMs: Math.max(0, Math.ceil(window.frees.inMs)) + 5,
        });
      }
    }
    if (admitted && heldAhead > 0) {
      // There is room for the held runs ahead too: their wake-up is under way (one held for an
      // unseen run, say). They start first: hold this one and walk the group after the commit, which
      // admits them, then this one, in order. (A run admitted in that walk has none held ahead.)
      admitted = false;
      outcome.groupFollowUps.push({ workflow: run.workflow, key: group });
    }
    hold.started = admitted;
    await holdRun(client, run.id, hold);
    if (!admitted) return false;
    writes.changeRun(run.id, { admitted: { concurrencyKey: group, deadlineMs: definition.timeoutMs, priority } });
    // A later run of the group held for this one while it was not looked at goes next, if it can
    // (only a run admitted at its first look can have been unseen: one admitted from held was seen).
    if (run.concurrencyKey === null) outcome.groupFollowUps.push({ workflow: run.workflow, key: group });
    // Under a concurrency limit too, runs of the bucket behind this one may be held by it alone:
    // look at them again once this start is committed (a rate wake-up covers the rest).
    if (rate && rateKey !== null && limit !== undefined)
      outcome.rateFollowUps.push({ workflow: run.workflow, key: rateKey });
    return true;
  }

  /**
   * Wakes held runs in admission order — of an admission group, or of a rate bucket (`by: 'rate'`) —
   * each in its own transaction, until one stays held (those behind it would too) or `max` were
   * admitted. Returns how many were admitted.
   */
  async admitHeld(workflow: string, key: string, opts: { by?: 'group' | 'rate'; max?: number } = {}): Promise<number> {
    const max = opts.max ?? Infinity;
    let admitted = 0;
    let after: HeldPosition['cursor'] | undefined;
    for (;;) {
      const page = await heldInOrder(this.deps.pool, workflow, key, Math.min(100, max - admitted), {
        by: opts.by,
        after,
      });
      for (const held of page) {
        const result = await this.advanceHeld(held.id);
        if (result === 'held') return admitted;
        if (result === 'admitted') admitted += 1;
        if (admitted >= max) return admitted;
      }
      if (page.length < Math.min(100, max - admitted) || !page.length) return admitted;
      after = page[page.length - 1].cursor;
    }
  }

  /** A resumed workflow: its held runs admitted in order, group by group. */
  async admitWorkflow(workflow: string): Promise<number> {
    let admitted = 0;
    for (const group of await heldGroups(this.deps.pool, workflow)) admitted += await this.admitHeld(workflow, group);
    return admitted;
  }

  /** Advances a held run: admitted, still held, or no longer pending (cancelled, admitted elsewhere). */
  private async advanceHeld(runId: string): Promise<'admitted' | 'held' | 'gone'> {
    let result: 'admitted' | 'held' | 'gone' = 'gone';
    await this.inRunTransaction(runId, async (client, run, writes) => {
      if (run.status !== 'pending') return nothing();
      const outcome = await this.advanceLocked(client, run, writes);
      result = writes.admits(run.id) ? 'admitted' : writes.statusOf(run.id) ? 'gone' : 'held';
      return outcome;
    });
    return result;
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
    if (run.parent) {
      outcome.childReports.push(
        childReport({
          id: run.id,
          status,
          output: output ?? null,
          error: error ?? run.error,
          parentRunId: run.parent.runId,
          parentExecutionId: run.parent.executionId,
        }),
      );
    }
    const limit = definition.concurrency?.limit;
    if (limit !== undefined && run.concurrencyKey !== null) {
      outcome.releasedKeys.push({ workflow: run.workflow, key: run.concurrencyKey, limit });
    }
    return outcome;
  }

  async definition(name: string, version: number): Promise<WorkflowDefinition> {
    return (await this.storedDefinition(name, version)).definition;
  }

  private async storedDefinition(name: string, version: number): Promise<StoredDefinition> {
    const key = `${name}@${version}`;
    let stored = this.definitions.get(key);
    if (!stored) {
      // Stored versions never change, so caching them forever is safe.
      stored = await getDefinition(this.deps.pool, name, version);
      this.definitions.set(key, stored);
    }
    return stored;
  }
}

/** A concurrency or rate key over `{input}` (JSONata), as text; '' without an expression. */
async function admissionKey(expression: string | undefined, input: unknown): Promise<string> {
  if (!expression) return '';
  const raw = await evaluate(expression, { input });
  return typeof raw === 'string' ? raw : JSON.stringify(raw ?? null);
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
