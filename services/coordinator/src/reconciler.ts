import { CHILD_WORKFLOW_FUNCTION, isBuiltinFunction, ErrorCode } from '@baton/workflow';
import {
  getDefinition,
  metrics,
  syncSchedules,
  type Logger,
  type Pool,
  type StepJobData,
  type StepReport,
} from '@baton/engine';
import type { Coordinator } from './coordinator';
import { childReport } from './child-runs';
import { endedChildren } from './child-store';
import { redriveControlRequests } from './control-outbox';
import { Periodic } from './periodic';
import {
  heldKeysPage,
  idlePage,
  outstandingJobData,
  orphanedChildrenPage,
  outstandingPage,
  overduePage,
  type Cursor,
  type HeldKey,
  type OutstandingRow,
} from './reconcile-store';
import type { JobProbe } from './step-dispatch';

/**
 * PostgreSQL is the truth, Redis is a work list. The reconciler compares the two and restores what
 * Redis lost — a crash between commit and enqueue, a Redis restart without persistence, a FLUSHALL —
 * so no run is ever stranded. Every action it takes is idempotent, so any number of coordinator
 * replicas may reconcile at once.
 *
 * Each kind of work (outstanding executions, idle runs, runs held by a concurrency limit, overdue
 * runs) is walked with a keyset cursor, `batchSize` rows a page and at most `maxPagesPerPass` pages a
 * pass; the cursor is kept across passes and starts over once a walk reaches the end. So whatever
 * lies ahead of a row (thousands of long `waitForEvent` waits, a backlog, a row whose repair keeps
 * failing), it is reached within ceil(rows / (batchSize × maxPagesPerPass)) + 1 passes. Every row is
 * repaired on its own: a failure is logged, counted in `baton_reconcile_failures_total{kind}`, and
 * the pass goes on.
 */
export interface ReconcilerOptions {
  pool: Pool;
  coordinator: Coordinator;
  logger: Logger;
  intervalMs: number;
  /** Rows touched more recently than this are skipped: their enqueue may just be under way. */
  graceMs: number;
  /** Rows a page (default 500). */
  batchSize?: number;
  /** Pages of each walk a pass reads at most (default 20); the rest waits for the next pass. */
  maxPagesPerPass?: number;
}

export interface ReconcileResult {
  runsAdvanced: number;
  stepsRequeued: number;
  reportsReplayed: number;
  runsTimedOut: number;
  /** Debounce windows past due that this pass fired (their timer lost). */
  debouncesFired?: number;
  /** Outstanding executions looked at in this pass. */
  stepsChecked: number;
  /** Repairs (or whole pages) that threw; see `baton_reconcile_failures_total`. */
  failures: number;
}

/** What a failure was about: the `kind` label of `baton_reconcile_failures_total`. */
type FailureKind =
  'step' | 'run_advance' | 'run_timeout' | 'schedules' | 'function_pauses' | 'page' | 'child' | 'debounce';

/** The walks a pass makes; each keeps its own cursor. */
type WalkName = 'steps' | 'idle' | 'held' | 'overdue' | 'orphans';

const DEFAULT_BATCH_SIZE = 500;
const DEFAULT_MAX_PAGES = 20;

export class Reconciler {
  private readonly periodic: Periodic;
  private readonly cursors: Partial<Record<WalkName, Cursor>> = {};
  /** Concurrency limits by `workflow@version` (stored versions never change). */
  private readonly limits = new Map<string, number | undefined>();

  constructor(private readonly opts: ReconcilerOptions) {
    this.periodic = new Periodic(() => this.reconcileOnce(), { ...opts, what: 'reconcile pass' });
  }

  start(): void {
    this.periodic.start();
  }

  async stop(): Promise<void> {
    await this.periodic.stop();
  }

  async reconcileOnce(): Promise<ReconcileResult> {
    const result: ReconcileResult = {
      runsAdvanced: 0,
      stepsRequeued: 0,
      reportsReplayed: 0,
      runsTimedOut: 0,
      stepsChecked: 0,
      failures: 0,
    };
    // Wait and active lists of function queues, read once a pass and only when needed (see StepDispatcher.probeJobs).
    const lists = new Map<string, Promise<Set<string>>>();

    // 0. Function pauses stored in PostgreSQL, back on their queues (a Redis wipe loses them) before
    // anything is re-enqueued on them below.
    try {
      const pauses = await this.opts.coordinator.syncFunctionPauses();
      if (pauses.paused.length || pauses.resumed.length) this.opts.logger.info(pauses, 'function pauses re-applied');
    } catch (err) {
      this.failed(result, 'function_pauses', err, {}, 'function pause sync failed');
    }
    // 1. Executions the DB says are outstanding: is their job (or timer) still in Redis?
    await this.walk(
      'steps',
      result,
      (after, limit) => outstandingPage(this.opts.pool, this.graceSecs(), after, limit),
      (rows) => this.checkSteps(rows, result, lists),
    );
    // 2. Active runs with nothing outstanding: a lost `run.start`, or a plan that was never acted on.
    await this.walk(
      'idle',
      result,
      (after, limit) => idlePage(this.opts.pool, this.graceSecs(), after, limit),
      (rows) => this.advanceEach(rows, result),
    );
    // 2b. Runs a concurrency limit holds: only those a free slot would admit (a lost wake-up).
    await this.walk(
      'held',
      result,
      (after, limit) => heldKeysPage(this.opts.pool, this.graceSecs(), after, limit),
      (rows) => this.admitHeld(rows, result),
    );
    // 2c. Child runs still active whose parent step ended: their cancellation was lost.
    await this.walk(
      'orphans',
      result,
      (after, limit) => orphanedChildrenPage(this.opts.pool, this.graceSecs(), after, limit),
      (rows) => this.cancelEach(rows, result),
    );
    // 3. Schedules follow the latest definitions (a PUT elsewhere, a Redis wipe).
    try {
      await syncSchedules(this.opts.pool, this.opts.coordinator.queue);
    } catch (err) {
      this.failed(result, 'schedules', err, {}, 'schedule sync failed');
    }
    // 4. Runs past their deadline whose delayed timeout message was lost with Redis.
    await this.walk(
      'overdue',
      result,
      (after, limit) => overduePage(this.opts.pool, this.graceSecs(), after, limit),
      (rows) => this.timeOutEach(rows, result),
    );
    // 4b. Debounce windows past due whose timer was lost (debouncer.ts): each fired on its own.
    try {
      const fired = await this.opts.coordinator.debouncer.fireOverdue(this.opts.graceMs, (swept) => {
        this.failed(result, 'debounce', swept.err, { runId: swept.runId }, 'debounce window not fired');
      });
      result.debouncesFired = fired;
    } catch (err) {
      this.failed(result, 'debounce', err, {}, 'debounce sweep failed');
    }

    const { stepsRequeued, reportsReplayed, runsAdvanced, runsTimedOut, failures } = result;
    if (stepsRequeued || reportsReplayed || runsAdvanced || runsTimedOut || failures) {
      this.opts.logger.info(result, 'reconciled');
    }
    // 5. Cancel/retry requests, wait checks and events recorded in PostgreSQL whose wake-up was lost.
    await redriveControlRequests(this.opts).catch((err: unknown) =>
      this.opts.logger.warn({ err }, 'control request re-drive failed'),
    );
    return result;
  }

  /**
   * Reads pages from the walk's cursor on, at most `maxPagesPerPass`, handing each to `visit`. A
   * short page is the end: the next pass starts from the beginning again. A page whose `visit` fails
   * as a whole (rows fail one by one inside it; this is Redis or PostgreSQL failing) is passed over
   * like any other, its rows come round again; a page query that fails ends this walk for this pass.
   */
  private async walk<T extends { cursor: Cursor }>(
    name: WalkName,
    result: ReconcileResult,
    page: (after: Cursor | undefined, limit: number) => Promise<T[]>,
    visit: (rows: T[]) => Promise<void>,
  ): Promise<void> {
    const limit = this.opts.batchSize ?? DEFAULT_BATCH_SIZE;
    const maxPages = this.opts.maxPagesPerPass ?? DEFAULT_MAX_PAGES;
    for (let n = 0; n < maxPages; n += 1) {
      let rows: T[];
      try {
        rows = await page(this.cursors[name], limit);
      } catch (err) {
        this.failed(result, 'page', err, { walk: name }, 'reconcile page query failed');
        return;
      }
      if (rows.length) {
        try {
          await visit(rows);
        } catch (err) {
          this.failed(result, 'page', err, { walk: name, rows: rows.length }, 'reconcile page failed');
        }
      }
      if (rows.length < limit) {
        delete this.cursors[name];
        return;
      }
      this.cursors[name] = rows[rows.length - 1].cursor;
    }
  }

  private failed(
    result: ReconcileResult,
    kind: FailureKind,
    err: unknown,
    where: Record<string, unknown>,
    msg: string,
  ): void {
    result.failures += 1;
    metrics.reconcileFailuresTotal.inc({ kind });
    this.opts.logger.error({ err, ...where }, msg);
  }

  private graceSecs(): number {
    return this.opts.graceMs / 1000;
  }

  // ---- 1. outstanding executions ------------------------------------------------------------

  private async checkSteps(
    rows: OutstandingRow[],
    result: ReconcileResult,
    lists: Map<string, Promise<Set<string>>>,
  ): Promise<void> {
    result.stepsChecked += rows.length;
    const { coordinator } = this.opts;
    const where = (row: { run_id: string; step_id: string; id: string }) => ({
      runId: row.run_id,
      stepId: row.step_id,
      stepExecutionId: row.id,
    });

    // Child-workflow steps: a child that ended without its report applied gets it re-sent.
    await this.reportEndedChildren(
      rows.filter((r) => r.function_name === CHILD_WORKFLOW_FUNCTION),
      result,
    );
    // Built-ins: a timer still delayed is fine, whenever it is due (one pipelined ZSCORE each).
    const builtins = rows.filter(
      (r) => isBuiltinFunction(r.function_name) && r.function_name !== CHILD_WORKFLOW_FUNCTION,
    );
    const armed = await this.delayedTimers(builtins);
    const toArm = builtins.filter((r) => !armed.has(r.id));

    // Function steps: one pipelined probe per function queue.
    const probes = new Map<string, JobProbe>();
    const byFunction = new Map<string, OutstandingRow[]>();
    for (const row of rows) {
      if (isBuiltinFunction(row.function_name)) continue;
      const list = byFunction.get(row.function_name);
      if (list) list.push(row);
      else byFunction.set(row.function_name, [row]);
    }
    for (const [fn, list] of byFunction) {
      try {
        const found = await coordinator.dispatcher.probeJobs(
          fn,
          list.map((r) => r.id),
          lists,
        );
        for (const [id, probe] of found) probes.set(id, probe);
      } catch (err) {
        for (const row of list) this.failed(result, 'step', err, where(row), 'could not check step jobs in Redis');
      }
    }
    const toRepair = [...probes].filter(([, p]) => p.state !== 'present').map(([id]) => id);
    if (!toArm.length && !toRepair.length) return;

    // The few that need a repair, with their payloads, if they are still outstanding.
    const data = await outstandingJobData(this.opts.pool, [...toArm.map((r) => r.id), ...toRepair]);

    for (const row of toArm) {
      const job = data.get(row.id);
      if (!job) continue;
      try {
        if (await coordinator.ensureBuiltinArmed(job)) {
          result.stepsRequeued += 1;
          metrics.reconciledTotal.inc({ kind: 'timer_rearmed' });
          this.opts.logger.warn(where(row), 'step timer missing from Redis: re-armed');
        }
      } catch (err) {
        this.failed(result, 'step', err, where(row), 'could not re-arm a step timer');
      }
    }

    const lost: StepJobData[] = [];
    for (const id of toRepair) {
      const job = data.get(id);
      const probe = probes.get(id);
      if (!job || !probe) continue;
      const at = { runId: job.runId, stepId: job.stepId, stepExecutionId: id };
      try {
        const queue = coordinator.functionQueue(job.function);
        if (probe.state === 'lost') {
          // A job hash in no state list is an orphan (a partial wipe, an AOF cut short): no worker
          // will ever take it, so it counts as missing.
          if (probe.orphan) await queue.remove(id).catch(() => undefined);
          lost.push(job);
          continue;
        }
        // The job finished but its report never reached the coordinator (lost with a flushed or
        // restarted coordinator queue): replay the report from the job itself.
        const finished = await queue.getJob(id);
        // A job that finished without this execution's data ran nothing: its hash was emptied by a
        // wipe while its id stayed in a list, and the runtime skipped it. Replaying it would record
        // a step that never ran (a success with no output), so it is removed and enqueued anew.
        if (!finished || finished.data?.stepExecutionId !== id) {
          if (finished) await queue.remove(id).catch(() => undefined);
          lost.push(job);
          continue;
        }
        const base = {
          runId: job.runId,
          stepExecutionId: id,
          attempt: Math.max(1, finished.attemptsMade),
          workerId: finished.processedBy ?? 'reconciler',
          at: new Date(finished.finishedOn ?? Date.now()).toISOString(),
        };
        const report: StepReport =
          probe.state === 'completed'
            ? { type: 'step.succeeded', ...base, output: finished.returnvalue ?? null }
            : {
                type: 'step.failed',
                ...base,
                error: {
                  code: ErrorCode.STEP_FAILED,
                  message: finished.failedReason || 'step failed',
                  nonRetryable: false,
                },
              };
        await coordinator.handle(report);
        result.reportsReplayed += 1;
        metrics.reconciledTotal.inc({ kind: 'report_replayed' });
        this.opts.logger.warn({ ...at, state: probe.state }, 'finished job had no report: replayed');
      } catch (err) {
        this.failed(result, 'step', err, at, 'could not repair a step');
      }
    }
    await this.requeue(lost, result);
  }

  /** Re-sends the reports of child runs that ended while their parent's step still waits. */
  private async reportEndedChildren(rows: OutstandingRow[], result: ReconcileResult): Promise<void> {
    if (!rows.length) return;
    for (const child of await endedChildren(
      this.opts.pool,
      rows.map((r) => r.id),
    )) {
      const where = { runId: child.parentRunId, stepExecutionId: child.parentExecutionId, childRunId: child.id };
      try {
        await this.opts.coordinator.handle(childReport(child));
        result.reportsReplayed += 1;
        metrics.reconciledTotal.inc({ kind: 'report_replayed' });
        this.opts.logger.warn(where, 'child run ended without its report applied: re-sent');
      } catch (err) {
        this.failed(result, 'child', err, where, 'could not report a child run');
      }
    }
  }

  /** Cancels child runs whose parent step ended without them. */
  private async cancelEach(rows: { id: string; compensate: boolean }[], result: ReconcileResult): Promise<void> {
    for (const row of rows) {
      try {
        await this.opts.coordinator.handle({ type: 'run.cancel', runId: row.id, compensate: row.compensate });
        result.runsAdvanced += 1;
        this.opts.logger.warn({ runId: row.id }, 'child run outlived its parent step: cancelled');
      } catch (err) {
        this.failed(result, 'child', err, { runId: row.id }, 'could not cancel an orphaned child run');
      }
    }
  }

  /** Ids of the built-in steps whose timer is still a delayed job on the coordinator queue. */
  private async delayedTimers(rows: OutstandingRow[]): Promise<Set<string>> {
    return this.opts.coordinator.timers.armed(
      rows.map((r) => ({ runId: r.run_id, stepExecutionId: r.id, function: r.function_name })),
    );
  }

  /** Re-enqueues lost jobs: all at once (one addBulk per queue), one by one if that fails. */
  private async requeue(jobs: StepJobData[], result: ReconcileResult): Promise<void> {
    if (!jobs.length) return;
    const done = (job: StepJobData) => {
      result.stepsRequeued += 1;
      metrics.reconciledTotal.inc({ kind: 'step_requeued' });
      this.opts.logger.warn({ runId: job.runId, stepId: job.stepId }, 'step job missing from Redis: re-enqueued');
    };
    try {
      await this.opts.coordinator.enqueue(jobs);
      jobs.forEach(done);
      return;
    } catch {
      // One of them (or Redis): find out which, one at a time.
    }
    for (const job of jobs) {
      try {
        await this.opts.coordinator.enqueue([job]);
        done(job);
      } catch (err) {
        const at = { runId: job.runId, stepId: job.stepId, stepExecutionId: job.stepExecutionId };
        this.failed(result, 'step', err, at, 'could not re-enqueue a step');
      }
    }
  }

  // ---- 2. idle and held runs ------------------------------------------------------------------

  private async advanceEach(rows: { id: string }[], result: ReconcileResult): Promise<void> {
    for (const row of rows) {
      try {
        await this.opts.coordinator.advance(row.id);
        result.runsAdvanced += 1;
        metrics.reconciledTotal.inc({ kind: 'run_advanced' });
      } catch (err) {
        this.failed(result, 'run_advance', err, { runId: row.id }, 'could not advance an idle run');
      }
    }
  }

  /**
   * A held run waits until a run of its key finishes, its rate window frees or its workflow is resumed,
   * and that wakes it. If the wake-up was lost (a crash after the commit, a Redis wipe), the group has
   * held runs of a workflow not paused: advance them in admission order while there are free slots,
   * until one stays held (a rate window still full: it arms its wake-up again). A group whose slots
   * are all taken costs nothing more; one held by its rate limit, one transaction.
   */
  private async admitHeld(keys: HeldKey[], result: ReconcileResult): Promise<void> {
    for (const k of keys) {
      try {
        const limit = await this.concurrencyLimit(k.workflow, k.version);
        const free = (limit ?? Infinity) - k.holding;
        if (free <= 0) continue;
        const admitted = await this.opts.coordinator.admitHeld(
          k.workflow,
          k.key,
          Math.min(free, this.opts.batchSize ?? DEFAULT_BATCH_SIZE),
        );
        result.runsAdvanced += admitted;
        if (admitted) metrics.reconciledTotal.inc({ kind: 'run_advanced' }, admitted);
      } catch (err) {
        const where = { workflow: k.workflow, concurrencyKey: k.key };
        this.failed(result, 'run_advance', err, where, 'could not admit held runs');
      }
    }
  }

  private async concurrencyLimit(workflow: string, version: number): Promise<number | undefined> {
    const key = `${workflow}@${version}`;
    if (!this.limits.has(key)) {
      const { definition } = await getDefinition(this.opts.pool, workflow, version);
      this.limits.set(key, definition.concurrency?.limit);
    }
    return this.limits.get(key);
  }

  // ---- 4. overdue runs ----------------------------------------------------------------------

  private async timeOutEach(rows: { id: string; retries: number }[], result: ReconcileResult): Promise<void> {
    for (const row of rows) {
      try {
        await this.opts.coordinator.handle({ type: 'run.timeout', runId: row.id, attempt: row.retries });
        result.runsTimedOut += 1;
        metrics.reconciledTotal.inc({ kind: 'run_timed_out' });
      } catch (err) {
        this.failed(result, 'run_timeout', err, { runId: row.id }, 'could not time out an overdue run');
      }
    }
  }
}
