import { SLEEP_FUNCTION, WAIT_FOR_EVENT_FUNCTION, type PlannedExecution } from '@baton/workflow';
import type { BuiltinStepMessage, CoordinatorClient, StepJobData } from '@baton/engine';

/**
 * Built-in steps (`baton.sleep`, `baton.waitForEvent`): they never reach a function queue. They start
 * `running`, their due time is fixed in their input when they start (`dueAt`), and a delayed
 * coordinator message ends them (`step.wake`, `step.waitTimeout`), re-armed by the reconciler when
 * Redis lost it. Which functions are built-ins: `isBuiltinFunction` (@baton/workflow). What ends them is in run-store.ts (`finishBuiltin`) and triggers.ts (an event).
 */

/**
 * A built-in step's input with its due time fixed when it starts: `dueAt` (epoch ms) is when a sleep
 * ends or a wait times out. Stored with the execution, so timers can be re-armed after a restart.
 */
export function builtinInput(planned: PlannedExecution): unknown {
  const input = (planned.input ?? {}) as Record<string, unknown>;
  if (planned.function === SLEEP_FUNCTION) {
    const until = typeof input.until === 'string' ? Date.parse(input.until) : NaN;
    const duration = Number(input.durationMs);
    const dueAt = Number.isFinite(until) ? until : Date.now() + (Number.isFinite(duration) ? Math.max(0, duration) : 0);
    return { ...input, dueAt };
  }
  if (planned.function === WAIT_FOR_EVENT_FUNCTION) return { ...input, dueAt: Date.now() + Number(input.timeoutMs) };
  return planned.input;
}

function builtinDueAt(input: unknown): number {
  const dueAt = Number((input as { dueAt?: unknown } | null)?.dueAt);
  return Number.isFinite(dueAt) ? dueAt : Date.now();
}

/** The delayed message that ends a built-in step: a sleep's wake-up, a wait's timeout. */
export function timerMessage(step: { runId: string; stepExecutionId: string; function: string }): BuiltinStepMessage {
  const type = step.function === SLEEP_FUNCTION ? 'step.wake' : 'step.waitTimeout';
  return { type, runId: step.runId, stepExecutionId: step.stepExecutionId };
}

/** Arms and re-arms the timers of built-in steps, on the coordinator's own queue. */
export class BuiltinTimers {
  constructor(private readonly coordinator: CoordinatorClient) {}

  /** The delayed message that ends a sleep or a wait; its due time was fixed when the step started. */
  async arm(data: StepJobData): Promise<void> {
    await this.coordinator.sendDelayed({ message: timerMessage(data), delayMs: builtinDueAt(data.input) - Date.now() });
  }

  /**
   * For the reconciler: re-arms a running built-in step whose timer message is gone from Redis (or
   * finished without ending the step). Returns true when it had to.
   */
  async ensureArmed(data: StepJobData): Promise<boolean> {
    if (await this.coordinator.pending(timerMessage(data))) return false;
    await this.arm(data);
    return true;
  }

  /** Which of these running built-in steps still have their timer delayed (one round trip). */
  async armed(steps: { runId: string; stepExecutionId: string; function: string }[]): Promise<Set<string>> {
    const delayed = await this.coordinator.delayedStill(steps.map(timerMessage));
    return new Set(steps.filter((_, i) => delayed[i]).map((s) => s.stepExecutionId));
  }
}
