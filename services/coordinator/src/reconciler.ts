import {
  metrics,
  OUTSTANDING_STEP_STATUSES,
  syncSchedules,
  type Logger,
  type Pool,
  type StepJobData,
  type StepReport,
} from '@baton/shared';
import { isBuiltin, type Coordinator } from './coordinator';
import { redriveControlRequests } from './control-outbox';

/**
 * PostgreSQL is the truth, Redis is a work list. The reconciler compares the two and restores what
 * Redis lost — a crash between commit and enqueue, a Redis restart without persistence, a FLUSHALL —
 * so no run is ever stranded. Every action it takes is idempotent, so any number of coordinator
 * replicas may reconcile at once.
 */
export interface ReconcilerOptions {
  pool: Pool;
  coordinator: Coordinator;
  logger: Logger;
  intervalMs: number;
  /** Rows touched more recently than this are skipped: their enqueue may just be under way. */
  graceMs: number;
  batchSize?: number;
}

export interface ReconcileResult {
  runsAdvanced: number;
  stepsRequeued: number;
  reportsReplayed: number;
  runsTimedOut: number;
}

export class Reconciler {
  private timer?: NodeJS.Timeout;
  private running?: Promise<unknown>;

  constructor(private readonly opts: ReconcilerOptions) {}

  start(): void {
    const tick = (): void => {
      this.running = this.reconcileOnce()
        .catch((err) => this.opts.logger.warn({ err }, 'reconcile pass failed'))
        .finally(() => {
          if (this.timer) this.timer = setTimeout(tick, this.opts.intervalMs);
        });
    };
    this.timer = setTimeout(tick, this.opts.intervalMs);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  async reconcileOnce(): Promise<ReconcileResult> {
    const result: ReconcileResult = { runsAdvanced: 0, stepsRequeued: 0, reportsReplayed: 0, runsTimedOut: 0 };
    const { pool, coordinator, graceMs } = this.opts;
    const limit = this.opts.batchSize ?? 500;

    // 1. Executions the DB says are outstanding: is their job still in Redis?
    const outstanding = await pool.query(
      `SELECT e.id, e.run_id, e.step_id, e.kind, e.function_name, e.input, e.retry_policy, e.timeout_ms,
              e.metadata->>'idempotencyKey' AS idempotency_key, r.workflow_name
         FROM step_executions e JOIN runs r ON r.id = e.run_id
        WHERE e.status = ANY($1) AND e.updated_at < now() - make_interval(secs => $2)
        ORDER BY e.updated_at LIMIT $3`,
      [OUTSTANDING_STEP_STATUSES, graceMs / 1000, limit],
    );
    for (const row of outstanding.rows) {
      const data: StepJobData = {
        runId: row.run_id,
        stepExecutionId: row.id,
        stepId: row.step_id,
        workflow: row.workflow_name,
        kind: row.kind,
        function: row.function_name,
        input: row.input,
        retry: row.retry_policy,
        ...(row.idempotency_key ? { idempotencyKey: row.idempotency_key } : {}),
        ...(row.timeout_ms ? { timeoutMs: row.timeout_ms } : {}),
      };
      if (isBuiltin(data.function)) {
        if (await coordinator.ensureBuiltinArmed(data)) {
          result.stepsRequeued += 1;
          metrics.reconciledTotal.inc({ kind: 'timer_rearmed' });
        }
        continue;
      }
      const queue = coordinator.functionQueue(data.function);
      let job = await queue.getJob(data.stepExecutionId);
      // A job hash in no state list is an orphan (a partial wipe, an AOF cut short): no worker will
      // ever take it, so it counts as missing.
      if (job && (await job.getState()) === 'unknown') {
        await queue.remove(data.stepExecutionId).catch(() => undefined);
        job = undefined;
      }
      if (!job) {
        await coordinator.enqueue([data]);
        result.stepsRequeued += 1;
        metrics.reconciledTotal.inc({ kind: 'step_requeued' });
        this.opts.logger.warn({ runId: data.runId, stepId: data.stepId }, 'step job missing from Redis: re-enqueued');
        continue;
      }
      // The job finished but its report never reached the coordinator (lost with a flushed or
      // restarted coordinator queue): replay the report from the job itself.
      const state = await job.getState();
      const base = {
        runId: data.runId,
        stepExecutionId: data.stepExecutionId,
        attempt: Math.max(1, job.attemptsMade),
        workerId: job.processedBy ?? 'reconciler',
        at: new Date(job.finishedOn ?? Date.now()).toISOString(),
      };
      let report: StepReport | undefined;
      if (state === 'completed') report = { type: 'step.succeeded', ...base, output: job.returnvalue ?? null };
      if (state === 'failed') {
        report = {
          type: 'step.failed',
          ...base,
          error: { code: 'STEP_FAILED', message: job.failedReason || 'step failed', nonRetryable: false },
        };
      }
      if (report) {
        await coordinator.handle(report);
        result.reportsReplayed += 1;
        metrics.reconciledTotal.inc({ kind: 'report_replayed' });
        this.opts.logger.warn(
          { runId: data.runId, stepId: data.stepId, state },
          'finished job had no report: replayed',
        );
      }
    }

    // 2. Active runs with nothing outstanding: a lost `run.start`, or a plan that was never acted on.
    const idle = await pool.query(
      `SELECT r.id FROM runs r
        WHERE r.status IN ('pending', 'running', 'compensating')
          AND r.updated_at < now() - make_interval(secs => $1)
          AND NOT EXISTS (SELECT 1 FROM step_executions e WHERE e.run_id = r.id AND e.status = ANY($2))
        ORDER BY r.updated_at LIMIT $3`,
      [graceMs / 1000, OUTSTANDING_STEP_STATUSES, limit],
    );
    for (const row of idle.rows) {
      await coordinator.advance(row.id);
      result.runsAdvanced += 1;
      metrics.reconciledTotal.inc({ kind: 'run_advanced' });
    }
    // 3. Schedules follow the latest definitions (a PUT elsewhere, a Redis wipe).
    await syncSchedules(pool, coordinator.queue);

    // 4. Runs past their deadline whose delayed timeout message was lost with Redis.
    const overdue = await pool.query(
      `SELECT id, retries FROM runs
        WHERE status = 'running' AND deadline_at < now() - make_interval(secs => $1)
        ORDER BY deadline_at LIMIT $2`,
      [graceMs / 1000, limit],
    );
    for (const row of overdue.rows) {
      await coordinator.handle({ type: 'run.timeout', runId: row.id, attempt: row.retries });
      result.runsTimedOut += 1;
      metrics.reconciledTotal.inc({ kind: 'run_timed_out' });
    }

    if (result.stepsRequeued || result.reportsReplayed || result.runsAdvanced || result.runsTimedOut) {
      this.opts.logger.info(result, 'reconciled');
    }
    // 5. Cancel/retry requests, wait checks and events recorded in PostgreSQL whose wake-up was lost.
    await redriveControlRequests(this.opts).catch((err: unknown) =>
      this.opts.logger.warn({ err }, 'control request re-drive failed'),
    );
    return result;
  }
}
