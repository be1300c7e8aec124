import {
  debounceTimer,
  fireDueWindow,
  traced,
  type CoordinatorClient,
  type Logger,
  type Pool,
  type TraceCarrier,
} from '@baton/engine';
import { overdueWindows, windowDue } from './debounce-store';

/**
 * Fires debounce windows (engine/src/debounce.ts): on a window's timer (`debounce.fire`) and, for the
 * reconciler, on every window past due whose timer Redis lost. A due window is deleted and its run
 * inserted (`pending`, with the id every trigger of the window was answered) in one statement
 * (`fireDueWindow`, engine/src/flow-store.ts), then `run.start` goes to the inbox; a window a later
 * trigger pushed back is re-armed at its new due time instead. A second fire of the same window (a
 * re-sent timer, the sweep, another replica) finds no row and does nothing.
 *
 * Immediate writes: the window's delete and the run's insert are one statement (that is the
 * exactly-once); nothing here goes through `RunWrites`, as no run is locked yet.
 */
export class Debouncer {
  constructor(private readonly deps: { pool: Pool; coordinator: CoordinatorClient; logger: Logger }) {}

  /** Fires the window of `runId` if it is due; re-arms its timer if it is not yet. True: a run started. */
  async fire(target: { workflow: string; key: string; runId: string; dueAt?: number }): Promise<boolean> {
    const { runId } = target;
    const fired = await fireDueWindow(this.deps.pool, target);
    if (fired) {
      this.deps.logger.info({ runId, workflow: target.workflow, debounced: fired.count }, 'debounced run started');
      // Lost: the reconciler starts a pending run that has nothing outstanding.
      const trace = (fired.metadata.trace ?? {}) as TraceCarrier;
      await this.deps.coordinator
        .sendToInbox([{ type: 'run.start', runId, ...traced(trace) }], 'appending a debounced run.start')
        .catch((err: unknown) => this.deps.logger.warn({ err, runId }, 'debounced run.start not appended'));
      return true;
    }
    const open = await windowDue(this.deps.pool, runId);
    if (open) {
      const timer = debounceTimer(target.workflow, target.key, runId, open.fireAt, open.now);
      // A timer that came a little early (Redis's clock against PostgreSQL's) re-arms for the same
      // due time: a new job id all the same, or the add would be a no-op while this job is active.
      if (target.dueAt !== undefined && timer.message.type === 'debounce.fire' && timer.message.dueAt <= target.dueAt)
        timer.message.dueAt = target.dueAt + 1;
      await this.deps.coordinator.sendDelayed(timer);
    }
    return false;
  }

  /**
   * The reconciler's sweep: windows due for longer than `graceMs` (their timer lost) are fired here,
   * each on its own (`failed` hears of one that throws). Returns the runs started.
   */
  async fireOverdue(
    graceMs: number,
    failed: (f: { runId: string; err: unknown }) => void,
    limit = 500,
  ): Promise<number> {
    let started = 0;
    for (const window of await overdueWindows(this.deps.pool, graceMs / 1000, limit)) {
      try {
        if (await this.fire(window)) started += 1;
      } catch (err) {
        failed({ runId: window.runId, err });
      }
    }
    return started;
  }
}
