import { z } from 'zod';
import {
  ErrorCode,
  eventName,
  MAX_TAGS,
  RUN_STATUSES,
  runTagsSchema,
  SCHEDULE_CATCH_UPS,
  SCHEDULE_OVERLAPS,
  SINGLETON_MODES,
  STEP_STATUSES,
  TAG_KEY_PATTERN,
  workflowDefinitionSchema,
} from '@baton/workflow';

/**
 * The gateway's API in zod: what the routes validate requests with, and what they answer. The
 * routes import the request schemas from here; `api/openapi.ts` turns all of them into the OpenAPI
 * document served at `/openapi.json`, so the document cannot say something validation does not.
 *
 * Named schemas are registered in `requestComponents` / `responseComponents`: they become
 * `components.schemas` (requests as zod *input* types — defaults make fields optional, coercion
 * accepts strings — responses as *output* types). `.meta({ description })` lands in the document.
 */

export const requestComponents = z.registry<{ id: string }>();
export const responseComponents = z.registry<{ id: string }>();

function request<S extends z.ZodType>(id: string, schema: S): S {
  requestComponents.add(schema, { id });
  return schema;
}

function response<S extends z.ZodType>(id: string, schema: S): S {
  responseComponents.add(schema, { id });
  return schema;
}

// ---------------------------------------------------------------------------------------------------
// Path and header parameters
// ---------------------------------------------------------------------------------------------------

/** Any UUID (version not checked); ids in paths are refused with INVALID_ID otherwise. */
export const uuid = z
  .string()
  .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i)
  .meta({ format: 'uuid' });

export const idempotencyKey = z.string().min(1).max(255);

export const workflowNameParam = z.string().min(1).meta({ description: 'workflow name' });
export const eventNameParam = eventName.meta({ description: 'event name, e.g. `order.created`' });
export const stepIdParam = z.string().min(1).meta({ description: 'a forEach or repeat step id of the definition' });
export const scheduleIdParam = z.string().min(1).meta({ description: '`<workflow>.<trigger index>`' });
export const functionNameParam = z
  .string()
  .min(1)
  .meta({ description: 'function name (its queue is `{fn.<name>}`)', examples: ['send-email'] });

// ---------------------------------------------------------------------------------------------------
// Request bodies and queries
// ---------------------------------------------------------------------------------------------------

const runTags = runTagsSchema.meta({
  description:
    `run tags, string → string (at most ${MAX_TAGS}; keys ${TAG_KEY_PATTERN.source}, values up to 256 characters); ` +
    "merged over the definition's `tags:`, which they override",
  examples: [{ customer: 'cust-01' }],
});

export const startRunBody = request(
  'StartRunRequest',
  z
    .object({
      /** Optional so that workflows without input can be started with `{}`. */
      input: z.unknown().optional().meta({ description: "the run input, checked against the workflow's input schema" }),
      idempotencyKey: idempotencyKey
        .optional()
        .meta({ description: 'a repeated key returns the first run (200); also accepted as header Idempotency-Key' }),
      tags: runTags.optional(),
    })
    .strict(),
);

export const invoiceStartBody = request(
  'InvoiceStartRequest',
  z
    .object({
      customerId: z
        .string()
        .min(1)
        .meta({ examples: ['cust-01'] }),
      tags: runTags.optional(),
    })
    .strict(),
);

const limitParam = (max: number, fallback: number) => z.coerce.number().int().min(1).max(max).default(fallback);

export const listRunsQuery = z.object({
  workflow: z.string().min(1).max(63).optional().meta({ description: 'only runs of this workflow' }),
  /** One status or a comma list (`failed,compensation_failed`). */
  status: z
    .string()
    .transform((value, ctx) => {
      const statuses = value.split(',').map((s) => s.trim());
      const unknown = statuses.filter((s) => !(RUN_STATUSES as readonly string[]).includes(s));
      if (unknown.length === 0) return statuses;
      ctx.addIssue({
        code: 'custom',
        message: `unknown status '${unknown.join("', '")}'; one of ${RUN_STATUSES.join(', ')}`,
      });
      return z.NEVER;
    })
    .optional()
    .meta({ description: `one status or a comma-separated list of: ${RUN_STATUSES.join(', ')}` }),
  limit: limitParam(100, 20),
  cursor: z.string().min(1).optional().meta({ description: '`nextCursor` of the previous page' }),
  parentRunId: uuid.optional().meta({ description: "only this run's child runs (its `workflow:` steps')" }),
  topLevel: z
    .enum(['true', 'false'])
    .transform((value) => value === 'true')
    .optional()
    .meta({ description: '`true`: only runs without a parent (no child runs)' }),
  tag: z
    .union([z.string(), z.array(z.string()).max(MAX_TAGS)])
    .transform((value, ctx) => {
      const pairs: { key: string; value: string }[] = [];
      for (const tag of Array.isArray(value) ? value : [value]) {
        const colon = tag.indexOf(':');
        if (colon < 1 || !TAG_KEY_PATTERN.test(tag.slice(0, colon))) {
          ctx.addIssue({ code: 'custom', message: `'${tag}' is not key:value with a valid tag key` });
          return z.NEVER;
        }
        pairs.push({ key: tag.slice(0, colon), value: tag.slice(colon + 1) });
      }
      return pairs;
    })
    .optional()
    .meta({ description: 'only runs with this tag, as `key:value` (`customer:cust-01`); repeat it: all must match' }),
});

export const listItemsQuery = z.object({
  limit: limitParam(500, 100),
  cursor: z
    .string()
    .min(1)
    .optional()
    .meta({ description: "`next` of the previous page, or the step's `itemsNext` in the run" }),
});

/** Log levels from least to most severe; `level=warn` returns warn and above. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;

export const listLogsQuery = z.object({
  limit: limitParam(1000, 100),
  cursor: z.string().min(1).optional().meta({ description: '`nextCursor` of the previous page' }),
  stepId: z.string().min(1).max(63).optional().meta({ description: 'only what this step logged' }),
  level: z.enum(LOG_LEVELS).optional().meta({ description: 'this level and above' }),
});

export const cancelBody = request(
  'CancelRunRequest',
  z
    .object({
      compensate: z
        .boolean()
        .default(false)
        .meta({ description: 'compensate completed steps before ending cancelled' }),
    })
    .strict(),
);

export const retryBody = request(
  'RetryRunRequest',
  z
    .object({
      /** Replaces the failed step's input (the step named by `stepId` when several failed). */
      input: z.unknown().optional().meta({ description: "replaces the failed step's input" }),
      stepId: z.string().min(1).max(63).optional().meta({ description: 'the failed step the input is for' }),
    })
    .strict(),
);

/** A bulk operation's runs: which ones (top-level runs only; a child is handled through its parent). */
const bulkFilter = z
  .object({
    workflow: z.string().min(1).max(63).optional().meta({ description: 'only runs of this workflow' }),
    status: z
      .union([z.enum(RUN_STATUSES), z.array(z.enum(RUN_STATUSES)).min(1)])
      .transform((value) => (Array.isArray(value) ? value : [value]))
      .optional()
      .meta({
        description:
          'one status or a list; default: every status the operation applies to (retry: failed, compensated, ' +
          'compensation_failed, cancelled; cancel: pending, running, compensating)',
      }),
    tags: runTagsSchema.optional().meta({ description: 'only runs carrying every one of these tags' }),
    createdAfter: z.iso.datetime({ offset: true }).optional().meta({ description: 'only runs created after this' }),
    createdBefore: z.iso.datetime({ offset: true }).optional().meta({ description: 'only runs created before this' }),
  })
  .strict()
  .meta({ description: 'the runs to act on; at least `workflow` or `status` (an empty filter is refused)' });

const bulkCommon = {
  filter: bulkFilter,
  dryRun: z
    .boolean()
    .default(false)
    .meta({ description: 'only count the runs the filter matches now (200): nothing is stored or done' }),
  ratePerSec: z
    .number()
    .int()
    .min(1)
    .max(1000)
    .default(10)
    .meta({ description: 'at most this many runs retried (cancelled) in any one second' }),
};

export const bulkRetryBody = request(
  'BulkRetryRequest',
  z
    .object({
      ...bulkCommon,
      input: z
        .unknown()
        .optional()
        .meta({ description: "replaces the input of each run's failed step(s), as `POST /v1/runs/{id}/retry`" }),
    })
    .strict(),
);

export const bulkCancelBody = request(
  'BulkCancelRequest',
  z
    .object({
      ...bulkCommon,
      compensate: z
        .boolean()
        .default(false)
        .meta({ description: 'compensate completed steps before ending cancelled' }),
    })
    .strict(),
);

export const OPERATION_STATUSES = ['running', 'succeeded', 'cancelled', 'failed'] as const;

export const listOperationsQuery = z.object({
  limit: limitParam(100, 20),
  status: z.enum(OPERATION_STATUSES).optional().meta({ description: 'only operations in this status' }),
});

export const forkBody = request(
  'ForkRunRequest',
  z
    .object({
      fromStep: z
        .string()
        .min(1)
        .max(63)
        .meta({ description: 'the step to run again from: it and every step that needs it, directly or not' }),
      input: z
        .unknown()
        .optional()
        .meta({ description: "the fork's run input (checked against the input schema); default the source run's" }),
    })
    .strict(),
);

export const getWorkflowQuery = z.object({
  version: z.coerce.number().int().min(1).optional().meta({ description: 'an older version; default the latest' }),
});

/** Media types a definition may be PUT as besides JSON. */
export const YAML_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml'];

/**
 * A definition as PUT: the definition language's own schema (workflow/src/definition.ts), with
 * `name` optional since the URL names the workflow. Meaning checks (ids, needs graph, expressions)
 * come on top and are reported the same way, as a 400 whose details name each path.
 */
export const workflowDefinitionBody = request(
  'WorkflowDefinition',
  workflowDefinitionSchema
    .extend({
      name: workflowDefinitionSchema.shape.name
        .optional()
        .meta({ description: 'must equal the name in the URL; may be left out' }),
    })
    .meta({ description: 'a workflow definition (docs/WORKFLOWS.md), as JSON or YAML' }),
);

export const eventBody = request(
  'PublishEventRequest',
  z
    .object({
      payload: z.unknown().optional().meta({ description: 'the input of every run the event starts' }),
      idempotencyKey: idempotencyKey.optional().meta({
        description: 'a repeated key returns the first answer (200); also accepted as header Idempotency-Key',
      }),
    })
    .strict(),
);

export const scheduleBody = request('SchedulePatch', z.object({ paused: z.boolean() }).strict());

export const functionPauseBody = request(
  'PauseFunctionRequest',
  z
    .object({
      reason: z
        .string()
        .min(1)
        .max(500)
        .optional()
        .meta({ description: 'why, shown with the function (GET /v1/functions, the dashboard)' }),
    })
    .strict(),
);

// ---------------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------------

const isoTime = z.iso.datetime();
const isoTimeOrNull = isoTime.nullable();

export const errorResponse = response(
  'Error',
  z
    .object({
      error: z.object({
        code: z.string().meta({ examples: [ErrorCode.INVALID_REQUEST, ErrorCode.NOT_FOUND] }),
        message: z.string(),
        details: z
          .unknown()
          .optional()
          .meta({ description: 'for a 400, `[{path, message}]` naming each problem; for /readyz, each check' }),
      }),
    })
    .meta({ description: 'every error: a machine code, a human message, details when there are any' }),
);

export const problem = response('Problem', z.object({ path: z.string(), message: z.string() }));

export const runAcceptedResponse = response(
  'RunAccepted',
  z.object({
    runId: z.uuid().meta({ description: 'the run; for a debounced trigger, the id of the run its window will start' }),
    status: z.enum([...RUN_STATUSES, 'debounced']).meta({
      description:
        '`running`: started with its first steps queued (a workflow without admission limits, BATON_DIRECT_START); `pending`: left to the coordinator to admit and start (concurrency, rateLimit, a paused workflow, a first step that is not a function); `debounced`: no run yet, it starts when the debounce window closes (`debounce.firesAt`)',
    }),
    statusUrl: z.string().meta({
      description: '`/v1/runs/<runId>`: where the outcome shows (404 for a debounced trigger until its window fires)',
    }),
    started: z
      .boolean()
      .optional()
      .meta({ description: 'singleton and debounced workflows only: whether this request started the run' }),
    singleton: z
      .object({
        key: z.string(),
        mode: z.enum(SINGLETON_MODES),
        skipped: z.boolean().optional().meta({ description: 'the key had an active run: that run is returned (200)' }),
        cancelled: z
          .array(z.uuid())
          .optional()
          .meta({ description: 'cancelRunning: the active run(s) this start replaced (cancel requested)' }),
      })
      .optional()
      .meta({ description: 'a `singleton:` workflow: its key for this input and what the start did' }),
    debounce: z
      .object({
        key: z.string(),
        count: z.number().int().meta({ description: 'triggers collapsed into the window so far, this one included' }),
        firesAt: z.iso.datetime().meta({ description: 'when the run starts if no other trigger of the key comes' }),
        deadline: z.iso
          .datetime()
          .nullable()
          .meta({ description: 'the latest it starts (first trigger + maxWaitMs); null without maxWaitMs' }),
      })
      .optional()
      .meta({ description: 'a `debounce:` workflow: the window this trigger joined' }),
  }),
);

export const attemptResponse = response(
  'Attempt',
  z.object({
    attempt: z.number().int(),
    status: z.enum(['running', 'succeeded', 'failed']),
    workerId: z.string().nullable(),
    startedAt: isoTimeOrNull,
    finishedAt: isoTimeOrNull,
    error: z.unknown(),
  }),
);

const itemStatus = z.enum(STEP_STATUSES);

export const stepItemResponse = response(
  'StepItem',
  z
    .object({
      index: z
        .number()
        .int()
        .meta({ description: 'position in the forEach list, or iteration of a repeat step, from 0' }),
      executionId: z.uuid(),
      status: itemStatus.meta({ description: '`pending`: created, not yet dispatched (forEach `concurrency`)' }),
      attempts: z.number().int().meta({ description: 'attempts made so far' }),
      childRunId: z.uuid().optional().meta({ description: 'a `workflow:` step: the child run of this item' }),
      childRunDeleted: z
        .literal(true)
        .optional()
        .meta({ description: 'that child run was deleted (retention): `childRunId` is a 404' }),
      error: z.unknown().optional().meta({ description: 'when it failed or was cancelled' }),
      output: z.unknown().optional().meta({ description: 'when it succeeded' }),
      startedAt: isoTimeOrNull,
      finishedAt: isoTimeOrNull,
    })
    .meta({ description: 'one item of a forEach step, or one iteration of a repeat step: its own execution' }),
);

export const fanoutResponse = response(
  'Fanout',
  z
    .object({
      mode: z.enum(['forEach', 'repeat']),
      total: z.number().int().meta({ description: 'items created: the list length, or the iterations begun' }),
      pending: z.number().int().meta({ description: 'created, not yet dispatched' }),
      running: z.number().int().meta({ description: 'dispatched, not finished' }),
      succeeded: z.number().int(),
      failed: z.number().int(),
      cancelled: z.number().int(),
      compensated: z.number().int().meta({ description: 'succeeded items whose effect is being, or was, undone' }),
      concurrency: z.number().int().nullable().meta({ description: 'forEach `concurrency`; null: no cap' }),
    })
    .meta({ description: "a forEach/repeat step's items by state" }),
);

export const stepItemPageResponse = response(
  'StepItemPage',
  z.object({
    items: z.array(stepItemResponse),
    next: z.string().optional().meta({ description: 'pass as `cursor` for the next page; absent at the end' }),
  }),
);

export const stepResponse = response(
  'Step',
  z
    .object({
      id: z.string().meta({ description: 'the step id of the definition' }),
      executionId: z.uuid(),
      function: z.string(),
      status: z.enum(STEP_STATUSES),
      attempts: z.number().int().meta({ description: 'attempts made so far' }),
      maxAttempts: z.number().int(),
      queuedAt: isoTimeOrNull,
      startedAt: isoTimeOrNull,
      finishedAt: isoTimeOrNull,
      error: z.unknown(),
      output: z.unknown(),
      attemptHistory: z.array(attemptResponse),
      childRunId: z.uuid().optional().meta({ description: 'a `workflow:` step: the child run it started' }),
      childRunDeleted: z
        .literal(true)
        .optional()
        .meta({ description: 'that child run was deleted (retention): `childRunId` is a 404' }),
      copiedFrom: z.uuid().optional().meta({
        description:
          'a fork kept this step: the execution of the source run it was copied from (not run, never compensated here)',
      }),
      fanout: fanoutResponse.optional().meta({ description: 'a forEach/repeat step: its items by state' }),
      items: z
        .array(stepItemResponse)
        .optional()
        .meta({ description: 'a forEach/repeat step: its first 20 items (iterations) in index order' }),
      itemsNext: z.string().optional().meta({
        description: 'when it has more items: the `cursor` of `GET /v1/runs/{id}/steps/{stepId}/items` for the rest',
      }),
    })
    .meta({ description: 'one execution of a step or a compensation; a retried run lists earlier ones too' }),
);

const runFields = {
  id: z.uuid(),
  workflow: z.string(),
  workflowVersion: z.number().int(),
  status: z.enum(RUN_STATUSES),
  input: z.unknown(),
  output: z.unknown(),
  error: z.unknown().meta({
    description:
      '`{stepId, function, attempt, code, message, nonRetryable, itemIndex?}` when it failed ' +
      '(`itemIndex`: the forEach item or repeat iteration that failed the step)',
  }),
  trigger: z.unknown().meta({ description: 'how it started: `{type: http|schedule|event|parent|fork, …}`' }),
  idempotencyKey: z.string().nullable(),
  createdAt: isoTime,
  startedAt: isoTimeOrNull,
  finishedAt: isoTimeOrNull,
  parentRunId: z.uuid().nullable().meta({ description: 'a child run: the run whose `workflow:` step started it' }),
  parentStepId: z.string().nullable().meta({ description: 'a child run: that step' }),
  parentRunDeleted: z
    .literal(true)
    .optional()
    .meta({ description: 'the parent run was deleted (retention): `parentRunId` is a 404' }),
  depth: z.number().int().meta({ description: "0 for a top-level run; a child is its parent's + 1" }),
  tags: z
    .record(z.string(), z.string())
    .meta({ description: "its tags (given at start, from the definition's `tags:`, or its parent's)" }),
  forkedFrom: z
    .uuid()
    .nullable()
    .meta({ description: 'a fork (`POST /v1/runs/{id}/fork`): the run it was forked from' }),
  priority: z
    .number()
    .int()
    .meta({ description: "1 (highest) … 10, from the definition's `priority` when admitted (5 until then)" }),
};

export const runSummaryResponse = response('RunSummary', z.object(runFields));

export const forkAcceptedResponse = response(
  'ForkAccepted',
  z.object({
    runId: z.uuid().meta({ description: 'the fork' }),
    status: z.literal('pending'),
    statusUrl: z.string().meta({ description: '`/v1/runs/<runId>`: where the outcome shows' }),
    forkedFrom: z.uuid(),
    kept: z.array(z.string()).meta({ description: 'steps whose succeeded output the fork keeps (not run again)' }),
    rerun: z
      .array(z.string())
      .meta({ description: 'steps the fork runs: fromStep, what needs it, what had not succeeded' }),
  }),
);

export const bulkAcceptedResponse = response(
  'BulkOperationAccepted',
  z.object({
    operationId: z.uuid(),
    matched: z
      .number()
      .int()
      .meta({ description: 'runs the filter matched, snapshotted now: the operation acts on these' }),
    statusUrl: z.string().meta({ description: '`/v1/operations/<operationId>`: its progress' }),
  }),
);

export const bulkDryRunResponse = response(
  'BulkOperationDryRun',
  z.object({
    dryRun: z.literal(true),
    matched: z.number().int().meta({ description: 'runs the filter matches now' }),
  }),
);

const operationFields = {
  id: z.uuid(),
  kind: z.enum(['retry', 'cancel']),
  status: z.enum(OPERATION_STATUSES).meta({
    description:
      '`running` until every matched run is handled (`succeeded`), it is cancelled, or its slices kept failing (`failed`)',
  }),
  filter: z.record(z.string(), z.unknown()).meta({ description: 'the filter as given' }),
  params: z.record(z.string(), z.unknown()).meta({ description: '`{input?}` of a retry, `{compensate}` of a cancel' }),
  ratePerSec: z.number().int(),
  matched: z.number().int(),
  done: z.number().int().meta({ description: 'runs whose retry (cancel) was requested' }),
  skipped: z.number().int().meta({ description: 'runs no longer retryable (cancellable) when their turn came' }),
  failed: z.number().int().meta({ description: 'runs whose request could not be recorded' }),
  remaining: z.number().int().meta({ description: 'runs not handled yet' }),
  error: z.string().nullable().meta({ description: 'why the operation failed' }),
  createdAt: isoTime,
  updatedAt: isoTime,
  firstProcessedAt: isoTimeOrNull,
  lastProcessedAt: isoTimeOrNull,
  finishedAt: isoTimeOrNull,
};

export const operationSummaryResponse = response('BulkOperationSummary', z.object(operationFields));

export const operationResponse = response(
  'BulkOperation',
  z.object({
    ...operationFields,
    problems: z
      .array(
        z.object({
          runId: z.uuid(),
          outcome: z.enum(['skipped', 'failed']),
          reason: z.string(),
          processedAt: isoTime,
        }),
      )
      .meta({ description: 'the first 100 skipped or failed runs, with why' }),
  }),
);

export const operationListResponse = response(
  'BulkOperationList',
  z.object({ operations: z.array(operationSummaryResponse) }),
);

export const runDetailResponse = response(
  'Run',
  z.object({
    ...runFields,
    steps: z.array(stepResponse),
    compensations: z.array(stepResponse),
  }),
);

export const runPageResponse = response(
  'RunPage',
  z.object({
    runs: z.array(runSummaryResponse),
    nextCursor: z.string().nullable().meta({ description: 'pass as `cursor` for the next page; null at the end' }),
  }),
);

export const logEntryResponse = response(
  'LogEntry',
  z.object({
    id: z.number().int(),
    time: isoTime,
    level: z.enum(LOG_LEVELS),
    message: z.string(),
    stepId: z.string().nullable(),
    data: z.unknown(),
  }),
);

export const logPageResponse = response(
  'LogPage',
  z.object({
    logs: z.array(logEntryResponse),
    nextCursor: z.string().nullable().meta({ description: 'pass as `cursor` for more; null when there is none yet' }),
  }),
);

const workflowPauseFields = {
  paused: z.boolean().meta({ description: 'new runs stay `pending` until the workflow is resumed' }),
  pausedAt: isoTimeOrNull.meta({ description: 'when it was paused; null when it is not' }),
};

/** A workflow's pause state, as pause and resume answer it. */
export const workflowPauseResponse = response('WorkflowPause', z.object({ name: z.string(), ...workflowPauseFields }));

export const workflowSummaryResponse = response(
  'WorkflowSummary',
  z.object({
    name: z.string(),
    version: z.number().int(),
    description: z.string().nullable(),
    createdAt: isoTime,
    steps: z.array(z.object({ id: z.string(), function: z.string(), needs: z.array(z.string()) })),
    ...workflowPauseFields,
  }),
);

export const workflowListResponse = response('WorkflowList', z.object({ workflows: z.array(workflowSummaryResponse) }));

export const workflowDetailResponse = response(
  'WorkflowDetail',
  z.object({
    name: z.string(),
    version: z.number().int(),
    createdAt: isoTime,
    definition: z
      .record(z.string(), z.unknown())
      .meta({ description: 'the definition as stored: defaults applied, `needs` explicit' }),
    versions: z.array(z.object({ version: z.number().int(), createdAt: isoTime })),
    ...workflowPauseFields,
  }),
);

export const workflowSavedResponse = response(
  'WorkflowSaved',
  z.object({
    name: z.string(),
    version: z.number().int(),
    warnings: z.array(problem).meta({ description: 'functions no worker has reported yet (saved all the same)' }),
  }),
);

export const eventPublishedResponse = response(
  'EventPublished',
  z.object({
    eventId: z.uuid(),
    runIds: z.array(z.uuid()).meta({ description: 'the runs the event started' }),
    rejected: z
      .array(z.object({ workflow: z.string(), message: z.string() }))
      .optional()
      .meta({ description: 'subscribed workflows whose input schema refused the payload' }),
  }),
);

export const scheduleResponse = response(
  'Schedule',
  z.object({
    id: z.string(),
    workflow: z.string(),
    version: z.number().int(),
    cron: z.string(),
    timezone: z.string(),
    input: z.unknown(),
    overlap: z.enum(SCHEDULE_OVERLAPS).meta({
      description: 'a tick while a run it started is active: allow (another run), skip, cancelPrevious',
    }),
    catchUp: z.enum(SCHEDULE_CATCH_UPS).meta({
      description: 'ticks missed while no coordinator ran: latest (one run), none, all (at most 100)',
    }),
    paused: z.boolean(),
    nextFireAt: isoTimeOrNull.meta({ description: 'null when paused' }),
  }),
);

export const scheduleListResponse = response('ScheduleList', z.object({ schedules: z.array(scheduleResponse) }));

export const healthResponse = response('Health', z.object({ status: z.literal('ok') }));

export const readinessResponse = response(
  'Readiness',
  z.object({ status: z.literal('ok'), checks: z.object({ database: z.literal('ok'), redis: z.literal('ok') }) }),
);

const functionPauseFields = {
  paused: z.boolean().meta({
    description: 'paused through POST /v1/functions/:name/pause: its queue hands out no job until resumed',
  }),
  pausedAt: isoTimeOrNull.meta({ description: 'when it was paused; null when not paused' }),
  pauseReason: z.string().nullable().meta({ description: 'the reason given with the pause' }),
};

export const functionControlResponse = response(
  'FunctionControl',
  z.object({ name: z.string(), ...functionPauseFields }),
);

export const functionListResponse = response(
  'FunctionList',
  z.object({
    functions: z.array(
      z.object({
        name: z.string(),
        ...functionPauseFields,
        queue: z.string().meta({ description: 'the BullMQ queue, `{fn.<name>}`' }),
        jobs: z.object(
          Object.fromEntries(
            ['waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed'].map((state) => [
              state,
              z.number().int(),
            ]),
          ),
        ),
        workers: z.number().int().meta({ description: 'workers connected to the queue now' }),
        lastSeenAt: isoTimeOrNull.meta({ description: 'when a worker of it last reported' }),
        replicas: z
          .object({ desired: z.number().int(), ready: z.number().int() })
          .nullable()
          .meta({ description: 'its Deployment, in Kubernetes; null elsewhere' }),
      }),
    ),
    kubernetes: z.boolean().meta({ description: 'whether replicas could be read from Kubernetes' }),
  }),
);

export const prometheusTargetsResponse = response(
  'PrometheusTargets',
  z
    .array(z.object({ targets: z.array(z.string()), labels: z.record(z.string(), z.string()) }))
    .meta({ description: 'Prometheus HTTP service discovery: a target group per live process' }),
);
