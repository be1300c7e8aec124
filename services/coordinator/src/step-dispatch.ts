import { Queue } from 'bullmq';
import { isBuiltinFunction, jobPriority } from '@baton/workflow';
import {
  inboxShardOf,
  functionQueueName,
  KEEP_FINISHED_JOBS,
  metrics,
  publishCancellation,
  traced,
  type QueueContext,
  type RedisConnection,
  type StepJobData,
  type TraceCarrier,
} from '@baton/engine';
import type { BuiltinTimers } from './builtin-steps';

/**
 * Step dispatch, for the coordinator and the reconciler: the job data of a step, its enqueue on
 * `{fn.<function>}` (`jobId = stepExecutionId`, so a second enqueue is a no-op) or, for a built-in,
 * its timer; stopping the jobs of cancelled executions; and, for the reconciler, where a page of
 * jobs is in Redis (`probeJobs`).
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

/** The enqueue hop of a step's path (baton_step_hop_seconds), bound once. */
const enqueueHop = metrics.stepHop.labels('enqueue');

export class StepDispatcher {
  private readonly queues = new Map<string, Queue>();

  constructor(
    private readonly ctx: QueueContext,
    private readonly timers: BuiltinTimers,
  ) {}

  /**
   * Enqueues step jobs; a job id already present (a re-enqueue) is a no-op in BullMQ. Built-in kinds
   * (sleep, waitForEvent) are the coordinator's own delayed messages instead of a function job.
   * `delays`: how long some jobs wait first, by step execution id.
   */
  /**
   * With a sharded inbox the job names the run's shard, where the function reports (it reads no
   * shard setting of its own). Unsharded, the data is unchanged: an older function reports to shard
   * 0, which is the unsharded inbox.
   */
  private withInboxShard(data: StepJobData): StepJobData {
    const shards = this.ctx.inboxShards ?? 1;
    return shards > 1 ? { ...data, inboxShard: inboxShardOf(data.runId, shards) } : data;
  }

  async enqueue(jobs: StepJobData[], delays?: Map<string, number>): Promise<void> {
    const byFunction = new Map<string, StepJobData[]>();
    const timers: Promise<void>[] = [];
    for (const data of jobs) {
      if (isBuiltinFunction(data.function)) timers.push(this.timers.arm(data));
      else if (byFunction.has(data.function)) byFunction.get(data.function)?.push(data);
      else byFunction.set(data.function, [data]);
    }
    // One round trip per function queue, however many steps the batch started.
    await Promise.all([...timers, ...[...byFunction].map(([fn, list]) => this.addBulk(fn, list, delays))]);
  }

  /** One function's jobs in one round trip, timed: each job waited for the whole add. */
  private async addBulk(fn: string, list: StepJobData[], delays?: Map<string, number>): Promise<void> {
    const started = performance.now();
    await this.functionQueue(fn).addBulk(
      list.map((data) => ({
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
      })),
    );
    const seconds = (performance.now() - started) / 1000;
    for (let i = 0; i < list.length; i += 1) enqueueHop.observe(seconds);
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

  /**
   * Where each job of a page of one function's executions is, for the reconciler (see probeJobs
   * below). `lists`: the wait and active lists read so far this pass, by queue.
   */
  probeJobs(
    functionName: string,
    ids: string[],
    lists: Map<string, Promise<Set<string>>>,
  ): Promise<Map<string, JobProbe>> {
    return probeJobs(this.ctx.connection, this.functionQueue(functionName), ids, lists);
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}

/** A function job as Redis has it: `lost` (no job, or a job hash in no state list), finished, or fine. */
export type JobProbe = { state: 'lost'; orphan: boolean } | { state: 'completed' | 'failed' | 'present' };

type Pipeline = ReturnType<RedisConnection['pipeline']>;

async function execPipeline(pipeline: Pipeline): Promise<unknown[]> {
  const replies = (await pipeline.exec()) ?? [];
  return replies.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

/**
 * Where each job is, for a page of one function queue, in one round trip: the job hash exists?
 * finished (completed/failed sets)? delayed, prioritized or waiting for children? A job in none of
 * these must be in the wait or active list, which are read once a pass and queue (`lists`) rather than
 * searched per job (BullMQ's getState scans them whole for every job: quadratic on a backlog). A
 * job found nowhere is confirmed with getState before it counts as an orphan (it may have just
 * moved).
 */
async function probeJobs(
  redis: RedisConnection,
  queue: Queue,
  ids: string[],
  lists: Map<string, Promise<Set<string>>>,
): Promise<Map<string, JobProbe>> {
  const probes = new Map<string, JobProbe>();
  const fromState = (state: string): JobProbe =>
    state === 'unknown'
      ? { state: 'lost', orphan: true }
      : { state: state === 'completed' || state === 'failed' ? state : 'present' };
  const { keys } = queue;
  const sets = [keys.completed, keys.failed, keys.delayed, keys.prioritized, keys['waiting-children']];
  const pipeline = redis.pipeline();
  for (const id of ids) {
    pipeline.exists(queue.toKey(id));
    for (const set of sets) pipeline.zscore(set, id);
  }
  const replies = await execPipeline(pipeline);
  const unplaced: string[] = [];
  ids.forEach((id, i) => {
    const [exists, completed, failed, ...waiting] = replies.slice(i * 6, i * 6 + 6);
    if (!exists) probes.set(id, { state: 'lost', orphan: false });
    else if (completed !== null) probes.set(id, { state: 'completed' });
    else if (failed !== null) probes.set(id, { state: 'failed' });
    else if (waiting.some((score) => score !== null)) probes.set(id, { state: 'present' });
    else unplaced.push(id);
  });
  if (!unplaced.length) return probes;
  let listed = lists.get(queue.name);
  if (!listed) {
    const read = redis.pipeline();
    for (const list of [keys.active, keys.wait, keys.paused]) read.lrange(list, 0, -1);
    listed = execPipeline(read).then((r) => new Set((r as string[][]).flat()));
    lists.set(queue.name, listed);
  }
  const inLists = await listed;
  for (const id of unplaced) {
    probes.set(id, inLists.has(id) ? { state: 'present' } : fromState(await queue.getJobState(id)));
  }
  return probes;
}
