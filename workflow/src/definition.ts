import { EVENT_NAME_PATTERN } from '@baton/sdk';
import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';
import { ValidationError, type ValidationProblem } from './errors';
import { compileExpression, templateExpressions } from './expressions';
import { ErrorCode } from './error-codes';
import { prioritySchema, rateLimitSchema } from './admission';
import { retentionSchema } from './retention';
import { SCHEDULE_CATCH_UPS, SCHEDULE_OVERLAPS } from './schedule-ticks';
import { definitionTagsSchema } from './tags';

/**
 * The workflow definition language. Definitions are YAML or JSON documents checked here in two
 * passes: shape (zod) and meaning (ids, `needs` graph, expressions). Both report problems by path.
 */

export const BACKOFF_TYPES = ['fixed', 'exponential'] as const;

export const retryPolicySchema = z
  .object({
    /** Every try, the first included. */
    attempts: z.number().int().min(1).max(100).default(3),
    backoff: z
      .object({
        type: z.enum(BACKOFF_TYPES).default('exponential'),
        delayMs: z.number().int().min(0).max(86_400_000).default(1_000),
        maxDelayMs: z.number().int().min(0).max(86_400_000).default(60_000),
        /** 0..1: each delay is scaled by a random factor in [1 - jitter, 1]. */
        jitter: z.number().min(0).max(1).default(0.2),
      })
      .strict()
      .prefault({}),
    /** Error codes that fail the step at once, like a NonRetryableError. */
    nonRetryableErrors: z.array(z.string().min(1)).default([]),
  })
  .strict();

export type RetryPolicy = z.infer<typeof retryPolicySchema>;

export const DEFAULT_RETRY_POLICY: RetryPolicy = retryPolicySchema.parse({});

/** Function and workflow names: they become queue names and URL segments. */
const identifier = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,62}$/, 'use lowercase letters, digits and dashes, starting with a letter (max 63)');

const stepId = z
  .string()
  .regex(
    /^[A-Za-z][A-Za-z0-9_-]{0,62}$/,
    'use letters, digits, dashes and underscores, starting with a letter (max 63)',
  );

/**
 * Event names: `order.created`, `invoice-paid`… The SDK's rule (ctx.emit checks it too): one pattern
 * for definitions, the API and functions.
 */
export const eventName = z
  .string()
  .regex(EVENT_NAME_PATTERN, 'use lowercase letters, digits, dots, dashes and underscores (max 128)');

/** Built-in step kinds run by the coordinator itself, not by a function worker. */
export const SLEEP_FUNCTION = 'baton.sleep';
export const WAIT_FOR_EVENT_FUNCTION = 'baton.waitForEvent';
/** A `workflow:` step: the coordinator starts a child run and the step ends when the child does. */
export const CHILD_WORKFLOW_FUNCTION = 'baton.workflow';

/** forEach `concurrency` bounds (docs/WORKFLOWS.md). */
export const FOREACH_MAX_CONCURRENCY = 1_000;
/** repeat `maxIterations` bounds. */
export const REPEAT_MAX_ITERATIONS = 10_000;

/**
 * Whether a function name is a built-in step kind (the coordinator's own, never a queue or a worker).
 * The one test for it: function names a definition may give are identifiers without a dot, so only
 * the built-ins start with `baton.`.
 */
export function isBuiltinFunction(name: string): boolean {
  return name.startsWith('baton.');
}

const sleepSchema = z
  .object({
    /** A number, or a template resolving to one. */
    durationMs: z
      .union([
        z
          .number()
          .int()
          .min(0)
          .max(366 * 86_400_000),
        z.string().min(1),
      ])
      .optional(),
    /** An ISO 8601 instant, or a template resolving to one. */
    until: z.string().min(1).optional(),
  })
  .strict()
  .refine((s) => (s.durationMs === undefined) !== (s.until === undefined), 'give exactly one of durationMs and until');

const waitForEventSchema = z
  .object({
    name: eventName,
    /** JSONata over `{ event, input, steps }`: which event of that name this run waits for. */
    match: z.string().min(1).optional(),
    timeoutMs: z
      .number()
      .int()
      .min(1)
      .max(366 * 86_400_000),
  })
  .strict();

const repeatSchema = z
  .object({
    /** JSONata over `{ output, iteration, input, steps }`: true ends the loop with that iteration's output. */
    until: z.string().min(1),
    maxIterations: z.number().int().min(1).max(REPEAT_MAX_ITERATIONS),
    /** The durable wait between two iterations. */
    delayMs: z.number().int().min(0).max(86_400_000).default(0),
  })
  .strict();

const stepSchema = z
  .object({
    /** Step ids are referenced from expressions (`steps.createInvoice.output`), so camelCase is allowed. */
    id: stepId,
    /** A function to call — or one of the built-in kinds `sleep` and `waitForEvent`, or a child `workflow`. */
    function: identifier.optional(),
    sleep: sleepSchema.optional(),
    waitForEvent: waitForEventSchema.optional(),
    /** A child run of the latest version of this workflow; its output is the step's output. */
    workflow: identifier.optional(),
    /** A template resolving to a JSON array: the step runs once per item (`item`, `index` in scope). */
    forEach: z.string().min(1).optional(),
    /** forEach only: at most this many items in flight. */
    concurrency: z.number().int().min(1).max(FOREACH_MAX_CONCURRENCY).optional(),
    /** Runs the step again (after `delayMs`) until `until` holds over its output. */
    repeat: repeatSchema.optional(),
    description: z.string().max(1_000).optional(),
    /** Steps this one waits for. Omitted: the previous step in the list (a plain sequence). */
    needs: z.array(stepId).optional(),
    /** JSONata; false skips the step. */
    if: z.string().min(1).optional(),
    /** Templates: `{{ expr }}` alone keeps the value's JSON type; inside text it interpolates. */
    input: z.unknown().optional(),
    retry: retryPolicySchema.prefault({}),
    timeoutMs: z.number().int().min(1).max(86_400_000).optional(),
    compensate: z
      .object({ function: identifier, input: z.unknown().optional(), retry: retryPolicySchema.prefault({}) })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((step, ctx) => {
    const kinds = [step.function, step.sleep, step.waitForEvent, step.workflow].filter((k) => k !== undefined).length;
    if (kinds !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['function'],
        message: 'give exactly one of function, workflow, sleep and waitForEvent',
      });
    }
    const callsSomething = step.function !== undefined || step.workflow !== undefined;
    if (step.forEach !== undefined && !callsSomething)
      ctx.addIssue({ code: 'custom', path: ['forEach'], message: 'forEach runs a function or a workflow per item' });
    if (step.concurrency !== undefined && step.forEach === undefined)
      ctx.addIssue({ code: 'custom', path: ['concurrency'], message: 'concurrency applies to forEach steps only' });
    if (step.repeat !== undefined && !callsSomething)
      ctx.addIssue({ code: 'custom', path: ['repeat'], message: 'repeat runs a function or a workflow' });
    if (step.repeat !== undefined && step.forEach !== undefined)
      ctx.addIssue({ code: 'custom', path: ['repeat'], message: 'a step cannot have both forEach and repeat' });
  });

/** `singleton:` (engine/src/singleton.ts). */
export const SINGLETON_MODES = ['skip', 'cancelRunning'] as const;

const singletonSchema = z
  .object({
    /** JSONata over `{input}`: runs with one value share the slot. Omitted: one slot per workflow. */
    key: z.string().min(1).max(1_000).optional(),
    /** `skip`: a new trigger returns the active run; `cancelRunning`: cancels it and starts anew. */
    mode: z.enum(SINGLETON_MODES),
    /** cancelRunning: the replaced run compensates its completed steps, as `POST .../cancel {compensate}`. */
    compensate: z.boolean().default(false),
  })
  .strict();

/** `debounce:` bounds (engine/src/debounce.ts). */
export const DEBOUNCE_MAX_MS = 7 * 86_400_000;

const debounceSchema = z
  .object({
    /** JSONata over `{input}`: triggers with one value collapse together. Omitted: one per workflow. */
    key: z.string().min(1).max(1_000).optional(),
    /** The run starts once no trigger of the key came for this long. */
    periodMs: z.number().int().min(1).max(DEBOUNCE_MAX_MS),
    /** At the latest this long after the window's first trigger, however the triggers keep coming. */
    maxWaitMs: z.number().int().min(1).max(DEBOUNCE_MAX_MS).optional(),
  })
  .strict();

const triggerSchema = z.union([
  z.object({ http: z.object({}).strict() }).strict(),
  z
    .object({
      schedule: z
        .object({
          /** 5 fields, or 6 with seconds first. */
          cron: z.string().min(1).max(200),
          /** IANA time zone; default UTC. */
          timezone: z.string().min(1).max(64).optional(),
          /** The input of every run it starts. */
          input: z.unknown().optional(),
          /**
           * A tick while a run this schedule started is still active: `allow` (default) starts
           * another, `skip` starts none, `cancelPrevious` cancels the active one and starts anew.
           */
          overlap: z.enum(SCHEDULE_OVERLAPS).optional(),
          /**
           * Ticks missed while no coordinator ran: `latest` (default) one run for them, `none` no
           * run, `all` one per tick (at most CATCH_UP_MAX_TICKS, the latest). schedule-ticks.ts.
           */
          catchUp: z.enum(SCHEDULE_CATCH_UPS).optional(),
        })
        .strict(),
    })
    .strict(),
  z
    .object({
      event: z
        .object({
          name: eventName,
          /** JSONata over the payload: only events for which it is truthy start a run. */
          filter: z.string().min(1).optional(),
        })
        .strict(),
    })
    .strict(),
]);

export type Trigger = z.infer<typeof triggerSchema>;

export const workflowDefinitionSchema = z
  .object({
    name: identifier,
    description: z.string().max(2_000).optional(),
    /** JSON Schema of the run input, checked by the gateway before a run is accepted. */
    input: z.record(z.string(), z.unknown()).optional(),
    /** Template of the run output over the finished steps; default: every step's output by id. */
    output: z.unknown().optional(),
    triggers: z.array(triggerSchema).default([{ http: {} }]),
    /** The whole run's deadline: past it, running steps are cancelled and completed ones compensated. */
    timeoutMs: z
      .number()
      .int()
      .min(1)
      .max(31 * 86_400_000)
      .optional(),
    /**
     * When a step fails for good while siblings run: `failFast` cancels them and unwinds at once;
     * `waitForAll` lets them finish (starting nothing new), then unwinds.
     */
    onStepFailure: z.enum(['failFast', 'waitForAll']).default('failFast'),
    /** At most `limit` running runs per value of `key` (JSONata over `input`); others wait, oldest first. */
    concurrency: z
      .object({ limit: z.number().int().min(1).max(10_000), key: z.string().min(1).optional() })
      .strict()
      .optional(),
    /** At most `limit` run starts per `periodMs` per value of `key` (JSONata over `{input}`); others wait in order. */
    rateLimit: rateLimitSchema.optional(),
    /** 1 (highest) … 10, default 5, or a `{{ }}` template over `{input}`: step jobs and admission take it first. */
    priority: prioritySchema.optional(),
    steps: z.array(stepSchema).min(1).max(200),
    /** How long finished runs are kept, by outcome (`7d`, `12h`…); omitted classes: BATON_RETENTION. */
    retention: retentionSchema.optional(),
    /** Run tags, a template over `{input}` per key, resolved when a run starts (tags.ts). */
    tags: definitionTagsSchema.optional(),
    /** At most one active run per key: a new trigger returns it (`skip`) or replaces it (singleton.ts). */
    singleton: singletonSchema.optional(),
    /** Triggers of one key within `periodMs` collapse into one run with the latest input (debounce.ts). */
    debounce: debounceSchema.optional(),
  })
  .strict();

/** A definition as written (defaults not applied). */
export type WorkflowDefinitionInput = z.input<typeof workflowDefinitionSchema>;
/**
 * A step after parsing: `function` is set for every kind (built-ins get SLEEP_FUNCTION /
 * WAIT_FOR_EVENT_FUNCTION, a `workflow:` step CHILD_WORKFLOW_FUNCTION).
 */
export type StepDefinition = z.infer<typeof stepSchema> & { needs: string[]; function: string };
export type WorkflowDefinition = Omit<z.infer<typeof workflowDefinitionSchema>, 'steps'> & { steps: StepDefinition[] };

function zodPath(path: PropertyKey[]): string {
  return path.reduce<string>((acc, part) => {
    if (typeof part === 'number') return `${acc}[${part}]`;
    return acc ? `${acc}.${String(part)}` : String(part);
  }, '');
}

/**
 * Validates a definition and returns it with defaults applied (`needs` made explicit).
 * Throws a ValidationError whose details name every problem by path.
 */
export function parseWorkflowDefinition(raw: unknown): WorkflowDefinition {
  const parsed = workflowDefinitionSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => ({
      path: zodPath(issue.path) || '(root)',
      message: issue.message,
    }));
    throw new ValidationError('invalid workflow definition', problems, ErrorCode.INVALID_DEFINITION);
  }
  const steps = parsed.data.steps.map((step, index) => ({
    ...step,
    function:
      step.function ??
      (step.sleep ? SLEEP_FUNCTION : step.workflow !== undefined ? CHILD_WORKFLOW_FUNCTION : WAIT_FOR_EVENT_FUNCTION),
    needs: step.needs ?? (index === 0 ? [] : [parsed.data.steps[index - 1].id]),
  }));
  const definition: WorkflowDefinition = { ...parsed.data, steps };
  const problems = semanticProblems(definition);
  if (problems.length) throw new ValidationError('invalid workflow definition', problems, ErrorCode.INVALID_DEFINITION);
  return definition;
}

function semanticProblems(def: WorkflowDefinition): ValidationProblem[] {
  const problems: ValidationProblem[] = [];
  const indexById = new Map<string, number>();
  def.steps.forEach((step, i) => {
    if (indexById.has(step.id)) problems.push({ path: `steps[${i}].id`, message: `duplicate step id '${step.id}'` });
    else indexById.set(step.id, i);
  });
  def.steps.forEach((step, i) => {
    step.needs.forEach((need, j) => {
      if (!indexById.has(need)) problems.push({ path: `steps[${i}].needs[${j}]`, message: `unknown step '${need}'` });
      if (need === step.id) problems.push({ path: `steps[${i}].needs[${j}]`, message: 'a step cannot need itself' });
    });
    const b = step.retry.backoff;
    if (b.maxDelayMs < b.delayMs) {
      problems.push({ path: `steps[${i}].retry.backoff.maxDelayMs`, message: 'must be at least delayMs' });
    }
    if (step.if !== undefined) checkExpression(step.if, `steps[${i}].if`, problems);
    checkTemplates(step.input, `steps[${i}].input`, problems);
    if (step.compensate) checkTemplates(step.compensate.input, `steps[${i}].compensate.input`, problems);
    if (step.sleep) checkTemplates(step.sleep, `steps[${i}].sleep`, problems);
    if (step.waitForEvent?.match) checkExpression(step.waitForEvent.match, `steps[${i}].waitForEvent.match`, problems);
    if (step.forEach !== undefined) checkTemplates(step.forEach, `steps[${i}].forEach`, problems);
    if (step.repeat) checkExpression(step.repeat.until, `steps[${i}].repeat.until`, problems);
  });
  def.triggers.forEach((trigger, i) => {
    if ('schedule' in trigger) {
      const { cron, timezone } = trigger.schedule;
      const problem = cronProblem(cron, timezone);
      if (problem) problems.push({ path: `triggers[${i}].schedule.${problem.field}`, message: problem.message });
    }
    if ('event' in trigger && trigger.event.filter) {
      checkExpression(trigger.event.filter, `triggers[${i}].event.filter`, problems);
    }
  });
  checkTemplates(def.output, 'output', problems);
  checkTemplates(def.tags, 'tags', problems);
  if (def.concurrency?.key !== undefined) checkExpression(def.concurrency.key, 'concurrency.key', problems);
  if (def.singleton?.key !== undefined) checkExpression(def.singleton.key, 'singleton.key', problems);
  if (def.debounce?.key !== undefined) checkExpression(def.debounce.key, 'debounce.key', problems);
  if (def.debounce?.maxWaitMs !== undefined && def.debounce.maxWaitMs < def.debounce.periodMs)
    problems.push({ path: 'debounce.maxWaitMs', message: 'must be at least periodMs' });
  if (def.debounce && def.singleton)
    problems.push({ path: 'debounce', message: 'a workflow cannot have both debounce and singleton' });
  if (def.rateLimit?.key !== undefined) checkExpression(def.rateLimit.key, 'rateLimit.key', problems);
  if (typeof def.priority === 'string') checkTemplates(def.priority, 'priority', problems);
  const cycle = findCycle(def.steps);
  if (cycle) {
    problems.push({ path: `steps[${indexById.get(cycle[0])}].needs`, message: `cycle: ${cycle.join(' -> ')}` });
  }
  return problems;
}

/** Checks a cron pattern (5 fields, or 6 with seconds) and its time zone the way the scheduler reads them. */
export function cronProblem(
  cron: string,
  timezone?: string,
): { field: 'cron' | 'timezone'; message: string } | undefined {
  if (timezone !== undefined) {
    try {
      new Intl.DateTimeFormat('en', { timeZone: timezone });
    } catch {
      return { field: 'timezone', message: `unknown time zone '${timezone}'` };
    }
  }
  const fields = cron.trim().split(/\s+/).length;
  if (fields !== 5 && fields !== 6) return { field: 'cron', message: `expected 5 or 6 fields, got ${fields}` };
  try {
    CronExpressionParser.parse(cron, timezone ? { tz: timezone } : {});
  } catch (err) {
    return { field: 'cron', message: `invalid cron pattern: ${(err as Error).message}` };
  }
  return undefined;
}

function checkExpression(expr: string, path: string, problems: ValidationProblem[]): void {
  try {
    compileExpression(expr);
  } catch (err) {
    problems.push({ path, message: `expression does not parse: ${(err as Error).message}` });
  }
}

function checkTemplates(value: unknown, path: string, problems: ValidationProblem[]): void {
  for (const { path: subPath, expression } of templateExpressions(value, path))
    checkExpression(expression, subPath, problems);
}

/** A cycle in the `needs` graph as a list of step ids (first repeated at the end), or undefined. */
export function findCycle(steps: Pick<StepDefinition, 'id' | 'needs'>[]): string[] | undefined {
  const needs = new Map(steps.map((s) => [s.id, s.needs]));
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (id: string): string[] | undefined => {
    if (state.get(id) === 'done' || !needs.has(id)) return undefined;
    if (state.get(id) === 'visiting') return [...stack.slice(stack.indexOf(id)), id];
    state.set(id, 'visiting');
    stack.push(id);
    for (const next of needs.get(id) ?? []) {
      const found = visit(next);
      if (found) return found;
    }
    stack.pop();
    state.set(id, 'done');
    return undefined;
  };
  for (const step of steps) {
    const found = visit(step.id);
    if (found) return found;
  }
  return undefined;
}
