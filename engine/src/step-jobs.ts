import { Queue } from 'bullmq';
import { traced, type StepJobData } from '@baton/sdk';
import { jobPriority } from '@baton/workflow';
import { inboxShardOf } from './inbox';
import { functionQueueName, KEEP_FINISHED_JOBS, type QueueContext } from './queues';
import type { TraceCarrier } from './tracing';

/**
 * A step's job on its function queue `{fn.<function>}`: its data and its options, the one definition
 * for every enqueue — the coordinator's (services/coordinator/src/step-dispatch.ts), the reconciler's
 * re-enqueue, and the gateway's when it starts a run with its first steps (run-starter.ts). The job id
 * is the step execution id, so a second enqueue of the same execution is a no-op.
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
 * The job data of a step: for a first enqueue (with the span that planned it) and a re-enqueue by the
 * reconciler (without one).
 */
export function stepJobData(
  run: { id: string; workflow: string; priority?: number },
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
    ...(run.priority === undefined ? {} : { priority: run.priority }),
    // The function's attempt spans become children of the span that planned the step.
    ...(trace ? traced(trace) : {}),
  };
}

/**
 * The function queues of step jobs, one `Queue` per function, made on first use. Built-in steps
 * (sleep, waitForEvent) never come here: they are the coordinator's own timers.
 */
export class StepQueues {
  private readonly queues = new Map<string, Queue>();

  /** `onAdded`: each function queue's add, timed (seconds) with its number of jobs (the coordinator's hop metric). */
  constructor(
    private readonly ctx: QueueContext,
    private readonly opts: { onAdded?: (seconds: number, jobs: number) => void } = {},
  ) {}

  functionQueue(functionName: string): Queue {
    let queue = this.queues.get(functionName);
    if (!queue) {
      queue = new Queue(functionQueueName(functionName), { connection: this.ctx.connection, prefix: this.ctx.prefix });
      // A failed command rejects the call that sent it (its caller logs it); the queue's 'error'
      // event repeats it, and left without a listener it would end the process.
      queue.on('error', () => undefined);
      this.queues.set(functionName, queue);
    }
    return queue;
  }

  /**
   * Adds function jobs, one round trip (addBulk) per function queue however many there are; a job id
   * already present is a no-op in BullMQ. `delays`: how long some jobs wait first, by step execution id.
   */
  async add(jobs: StepJobData[], delays?: Map<string, number>): Promise<void> {
    const byFunction = new Map<string, StepJobData[]>();
    for (const data of jobs) {
      const list = byFunction.get(data.function);
      if (list) list.push(data);
      else byFunction.set(data.function, [data]);
    }
    await Promise.all([...byFunction].map(([fn, list]) => this.addBulk(fn, list, delays)));
  }

  private async addBulk(fn: string, list: StepJobData[], delays?: Map<string, number>): Promise<void> {
    const started = performance.now();
    const jobs = list.map((data) => this.jobOf(data, delays));
    // One job (the usual case of a lightly loaded coordinator) is added with `add`: the same script
    // call, without the pipeline `addBulk` builds, and an ioredis pipeline on a connection BullMQ
    // defined its ~90 scripts on copies every one of them first (measured: about a tenth of the
    // coordinator's CPU per step, docs/PERFORMANCE.md).
    if (jobs.length === 1) await this.functionQueue(fn).add(jobs[0].name, jobs[0].data, jobs[0].opts);
    else await this.functionQueue(fn).addBulk(jobs);
    this.opts.onAdded?.((performance.now() - started) / 1000, list.length);
  }

  /** A step's BullMQ job: name, data and options. */
  private jobOf(data: StepJobData, delays?: Map<string, number>) {
    return {
      name: data.stepId,
      data: this.withInboxShard(data),
      opts: {
        jobId: data.stepExecutionId,
        attempts: data.retry.attempts,
        // The delay is the function runtime's, computed from `retry` (see runtime/worker.ts).
        backoff: { type: 'baton' },
        removeOnComplete: KEEP_FINISHED_JOBS,
        removeOnFail: KEEP_FINISHED_JOBS,
        // The run's priority; every job has one, since BullMQ hands out jobs without a
        // priority before all prioritized ones (a priority-5 run would pass a priority-1 run).
        priority: jobPriority(data.priority),
        // A repeat step's next iteration waits its `delayMs` (durably: a delayed job).
        ...(delays?.get(data.stepExecutionId) ? { delay: delays.get(data.stepExecutionId) } : {}),
      },
    };
  }

  /**
   * With a sharded inbox the job names the run's shard, where the function reports (it reads no
   * shard setting of its own). Unsharded, the data is unchanged: an older function reports to shard
   * 0, which is the unsharded inbox.
   */
  private withInboxShard(data: StepJobData): StepJobData {
    const shards = this.ctx.inboxShards ?? 1;
    return shards > 1 ? { ...data, inboxShard: inboxShardOf(data.runId, shards) } : data;
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}
