import type { RunStatus } from '@baton/workflow';
import type { DelayedMessage, StepJobData, StepReport } from '@baton/engine';
import type { CancelledExecution, LockedRun } from './run-store';

/** What a committed transaction leaves to do (run-advancer.ts carries it out after the commit). */
export interface Outcome {
  jobs: StepJobData[];
  /** repeat iterations: how long each of these jobs waits before it runs (by step execution id). */
  delays: Map<string, number>;
  /** Executions cancelled in the transaction: remove their jobs, abort their running attempts. */
  cancelled: CancelledExecution[];
  /** Child runs to cancel (their parent step was cancelled), compensating them or not. */
  cancelChildren: { runId: string; compensate: boolean }[];
  /** Child runs inserted in the transaction: start them (after `delayMs` for a repeat iteration). */
  childStarts: { runId: string; delayMs: number }[];
  /** Child runs that ended: their reports to the parent's step. */
  childReports: StepReport[];
  /** Runs to plan again in a new transaction (a forEach/repeat step settled). */
  readvance: string[];
  finished: { run: LockedRun; status: RunStatus }[];
  /** Runs took a concurrency slot or freed one: wake the next waiting run(s) of the key. */
  releasedKeys: { workflow: string; key: string; limit: number }[];
  /** Runs started with a deadline: send the delayed timeout messages. */
  deadlines: { runId: string; attempt: number; delayMs: number }[];
  /** Held runs' wake-ups, sent delayed (a rate-limit window that frees). */
  wakes: DelayedMessage[];
  /** Rate buckets that admitted a run under a concurrency limit too: look at their next held run. */
  rateFollowUps: { workflow: string; key: string }[];
  /**
   * Admission groups of constrained workflows to walk after the commit (admitHeld): one that admitted
   * a run at its first look (a run of the group may have been held for it while it was unseen,
   * run-store.ts earlierUnseen), or held a run only for held runs ahead of it that there is room for
   * (they go first, then it). A held run admitted in such a walk adds none, so walks do not recurse.
   */
  groupFollowUps: { workflow: string; key: string }[];
  /** Coordinator notifications of events published in the transaction. */
  notify: (() => Promise<void>)[];
}

export const nothing = (): Outcome => ({
  jobs: [],
  delays: new Map(),
  cancelled: [],
  cancelChildren: [],
  childStarts: [],
  childReports: [],
  readvance: [],
  finished: [],
  releasedKeys: [],
  deadlines: [],
  wakes: [],
  rateFollowUps: [],
  groupFollowUps: [],
  notify: [],
});

export function merge(into: Outcome, from: Outcome): Outcome {
  into.jobs.push(...from.jobs);
  for (const [id, ms] of from.delays) into.delays.set(id, ms);
  into.cancelled.push(...from.cancelled);
  into.cancelChildren.push(...from.cancelChildren);
  into.childStarts.push(...from.childStarts);
  into.childReports.push(...from.childReports);
  into.readvance.push(...from.readvance);
  into.finished.push(...from.finished);
  into.releasedKeys.push(...from.releasedKeys);
  into.deadlines.push(...from.deadlines);
  into.wakes.push(...from.wakes);
  into.rateFollowUps.push(...from.rateFollowUps);
  into.groupFollowUps.push(...from.groupFollowUps);
  into.notify.push(...from.notify);
  return into;
}
