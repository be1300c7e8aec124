import type { Queue } from 'bullmq';
import { isBuiltinFunction } from '@baton/workflow';
import {
  metrics,
  publishCancellation,
  StepQueues,
  type QueueContext,
  type RedisConnection,
  type StepJobData,
} from '@baton/engine';
import type { BuiltinTimers } from './builtin-steps';

/**
 * Step dispatch, for the coordinator and the reconciler: a step's enqueue on `{fn.<function>}`
 * (`jobId = stepExecutionId`, so a second enqueue is a no-op; job data and options are the engine's
 * step-jobs.ts, which the gateway's run start uses too) or, for a built-in, its timer; stopping the
 * jobs of cancelled executions; and, for the reconciler, where a page of jobs is in Redis
 * (`probeJobs`).
 */

/** The enqueue hop of a step's path (baton_step_hop_seconds), bound once. */
const enqueueHop = metrics.stepHop.labels('enqueue');

export class StepDispatcher {
  private readonly queues: StepQueues;

  constructor(
    private readonly ctx: QueueContext,
    private readonly timers: BuiltinTimers,
  ) {
    // Each add is timed: every job of a function's addBulk waited for the whole round trip.
    this.queues = new StepQueues(ctx, {
      onAdded: (seconds, jobs) => {
        for (let i = 0; i < jobs; i += 1) enqueueHop.observe(seconds);
      },
    });
  }

  /**
   * Enqueues step jobs (StepQueues.add: one round trip per function queue). Built-in kinds (sleep,
   * waitForEvent) are the coordinator's own delayed messages instead of a function job. `delays`: how
   * long some jobs wait first, by step execution id.
   */
  async enqueue(jobs: StepJobData[], delays?: Map<string, number>): Promise<void> {
    const functionJobs: StepJobData[] = [];
    const timers: Promise<void>[] = [];
    for (const data of jobs) {
      if (isBuiltinFunction(data.function)) timers.push(this.timers.arm(data));
      else functionJobs.push(data);
    }
    await Promise.all([...timers, this.queues.add(functionJobs, delays)]);
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
    return this.queues.functionQueue(functionName);
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
    await this.queues.close();
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
