import type { WorkflowDefinition } from './definition';

/**
 * Fork (`POST /v1/runs/:id/fork`), without I/O: which steps of the source run a fork keeps. The step
 * forked from and every step that needs it, directly or not, run again; every other step keeps the
 * output of its succeeded execution; a step that did not succeed in the source runs again too.
 */

/** The steps and every step that needs one of them, directly or not, in definition order. */
export function downstreamOf(definition: WorkflowDefinition, stepIds: readonly string[]): string[] {
  const result = new Set(stepIds);
  let grew = true;
  while (grew) {
    grew = false;
    for (const step of definition.steps) {
      if (!result.has(step.id) && step.needs.some((n) => result.has(n))) {
        result.add(step.id);
        grew = true;
      }
    }
  }
  return definition.steps.map((s) => s.id).filter((id) => result.has(id));
}

export interface ForkPlan {
  /** Source executions copied into the fork (their steps do not run). */
  keep: { stepId: string; executionId: string }[];
  /** Steps the fork runs: `fromStep`, its dependants, and the steps that had not succeeded. */
  rerun: string[];
}

/**
 * `succeeded`: the source run's succeeded executions in force, one per step. Throws nothing: the
 * caller checks that `fromStep` is a step of the definition.
 */
export function planFork(
  definition: WorkflowDefinition,
  fromStep: string,
  succeeded: readonly { stepId: string; executionId: string }[],
): ForkPlan {
  const again = new Set(downstreamOf(definition, [fromStep]));
  const byStep = new Map(succeeded.map((s) => [s.stepId, s.executionId]));
  const keep: ForkPlan['keep'] = [];
  const rerun: string[] = [];
  for (const step of definition.steps) {
    const executionId = byStep.get(step.id);
    if (!again.has(step.id) && executionId !== undefined) keep.push({ stepId: step.id, executionId });
    else rerun.push(step.id);
  }
  return { keep, rerun };
}
