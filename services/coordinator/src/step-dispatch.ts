import { Queue } from 'bullmq';
import {
  isBuiltinFunction,
  functionQueueName,
  KEEP_FINISHED_JOBS,
  publishCancellation,
  traced,
  type QueueContext,
  type StepJobData,
  type TraceCarrier,
} from '@baton/shared';
import type { BuiltinTimers } from './builtin-steps';

/**
 * Step dispatch, for the coordinator and the reconciler: the job data of a step, its enqueue on
 * `{fn.<function>}` (`jobId = stepExecutionId`, so a second enqueue is a no-op) or, for a built-in,
 * its timer; and stopping the jobs of cancelled executions.
 */

/** An execution as a step job needs it: what planning made, or what the reconciler read back. */
export interface DispatchedExecution {
  id: string;
  stepId: string;
  kind: 'action' | 'compensation';
  function: string;
  input: unknown;
  retry: StepJobData['retry'];
  timeoutMs?: number;
  idempotencyKey?: string;
}

/**
 * The job data of a step: the one definition, for a first enqueue (with the span that planned it)
 * and a re-enqueue by the reconciler (without one).
 */
export function stepJobData(
  run: { id: string; workflow: string },
  e: DispatchedExecution,
  trace?: TraceCarrier,
): StepJobData {
  return {
    runId: run.id,
    stepExecutionId: e.id,
    stepId: e.stepId,
    workflow: run.workflow,
    kind: e.kind,
    function: e.function,
    input: e.input,
    retry: e.retry,
    ...(e.timeoutMs === undefined ? {} : { timeoutMs: e.timeoutMs }),
    ...(e.idempotencyKey ? { idempotencyKey: e.idempotencyKey } : {}),
    // The function's attempt spans become children of the span that planned the step.
    ...(trace ? traced(trace) : {}),
  };
}

export class StepDispatcher {
  private readonly queues = new Map<string, Queue>();

  constructor(
    private readonly ctx: QueueContext,
    private readonly timers: BuiltinTimers,
  ) {}

  /**
   * Enqueues step jobs; a job id already present (a re-enqueue) is a no-op in BullMQ. Built-in kinds
   * (sleep, waitForEvent) are the coordinator's own delayed messages instead of a function job.
   */
  async enqueue(jobs: StepJobData[]): Promise<void> {
    const byFunction = new Map<string, StepJobData[]>();
    const timers: Promise<void>[] = [];
    for (const data of jobs) {
      if (isBuiltinFunction(data.function)) timers.push(this.timers.arm(data));
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

  /** Waiting and delayed jobs are removed; running attempts are aborted by their runtime. */
  async stopJobs(executions: { id: string; function: string }[]): Promise<void> {
    // Removing an active (locked) job fails; its worker aborts on the published cancellation instead.
    await Promise.all(
      executions.map((e) =>
        this.functionQueue(e.function)
          .remove(e.id)
          .catch(() => 0),
      ),
    );
    await publishCancellation(
      this.ctx.connection,
      this.ctx.prefix,
      executions.map((e) => e.id),
    );
  }

  functionQueue(functionName: string): Queue {
    let queue = this.queues.get(functionName);
    if (!queue) {
      queue = new Queue(functionQueueName(functionName), { connection: this.ctx.connection, prefix: this.ctx.prefix });
      this.queues.set(functionName, queue);
    }
    return queue;
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}
