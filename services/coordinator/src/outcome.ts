import type { StepJobData, RunStatus } from '@baton/shared';
import type { LockedRun } from './run-store';

/** What a committed transaction leaves to do (run-advancer.ts carries it out after the commit). */
export interface Outcome {
  jobs: StepJobData[];
  /** Executions cancelled in the transaction: remove their jobs, abort their running attempts. */
  cancelled: { id: string; function: string }[];
  finished: { run: LockedRun; status: RunStatus }[];
  /** Runs took a concurrency slot or freed one: wake the next waiting run(s) of the key. */
  releasedKeys: { workflow: string; key: string; limit: number }[];
  /** Runs started with a deadline: send the delayed timeout messages. */
  deadlines: { runId: string; attempt: number; delayMs: number }[];
  /** Coordinator notifications of events published in the transaction. */
  notify: (() => Promise<void>)[];
}

export const nothing = (): Outcome => ({
  jobs: [],
  cancelled: [],
  finished: [],
  releasedKeys: [],
  deadlines: [],
  notify: [],
});

export function merge(into: Outcome, from: Outcome): Outcome {
  into.jobs.push(...from.jobs);
  into.cancelled.push(...from.cancelled);
  into.finished.push(...from.finished);
  into.releasedKeys.push(...from.releasedKeys);
  into.deadlines.push(...from.deadlines);
  into.notify.push(...from.notify);
  return into;
}
