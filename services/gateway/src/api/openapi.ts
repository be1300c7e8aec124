import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import * as api from './schemas';

/**
 * The OpenAPI 3.1 description of the gateway, built from the zod schemas in `./schemas.ts` (the ones
 * the routes validate with) by zod's own JSON Schema output: OpenAPI 3.1 schemas *are* JSON Schema
 * 2020-12, which is what `z.toJSONSchema` emits, so no converter library sits in between.
 *
 * `OPERATIONS` lists every route the app serves. test/integration/openapi.test.ts walks the express
 * router and fails when a route is served without being listed here (or in `NOT_IN_API`), and when
 * a listed one is not served.
 */

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
type Io = 'input' | 'output';
type JsonSchema = Record<string, unknown>;

interface ResponseSpec {
  description: string;
  /** A JSON body described by this schema. */
  schema?: z.ZodType;
  /** Other bodies by media type (binary or text), as OpenAPI media type objects. */
  content?: Record<string, JsonSchema>;
  headers?: Record<string, { description: string; schema: JsonSchema }>;
}

export interface Operation {
  method: Method;
  /** The express pattern (`/v1/runs/:id`); the document writes `{id}`. */
  path: string;
  operationId: string;
  tag: string;
  summary: string;
  description?: string;
  params?: Record<string, z.ZodType>;
  query?: z.ZodObject;
  /** Accepts the `Idempotency-Key` header. */
  idempotencyKeyHeader?: boolean;
  body?: { schema: z.ZodType; mediaTypes?: readonly string[]; required?: boolean };
  responses: Record<number, ResponseSpec>;
  /** Statuses answered with the error body besides the ones every operation may give. */
  errors?: Record<number, string>;
}

/** Paths that need `Authorization: Bearer <key>` when BATON_API_KEYS is set (app.ts mounts the check there). */
export const AUTHENTICATED_PREFIXES = ['/v1', '/invoice/start'] as const;

/**
 * Routes the app serves that are not part of the JSON API, with the reason. The route-coverage test
 * skips routes matching these; anything else served must be in `OPERATIONS`.
 */
export const NOT_IN_API: readonly { match: RegExp; why: string }[] = [
  { match: /^\/admin\/queues(\/|$)/, why: 'Bull Board, a UI of its own' },
  { match: /^\/(runs\/:id|workflows|functions)?$/, why: 'dashboard pages (HTML), clients of the API' },
  { match: /^\/assets\//, why: 'dashboard scripts and styles' },
];

/** Paths the rate limit (BATON_RATE_LIMIT) never applies to; http/security.ts skips the same. */
export const NOT_RATE_LIMITED = ['/healthz', '/readyz', '/metrics'] as const;

const RATE_LIMITED =
  'more than BATON_RATE_LIMIT requests in a minute from this client (RATE_LIMITED); wait `Retry-After` seconds';

const JSON_BODY_ERRORS = {
  400: 'invalid body (`details` names each problem by path) or malformed JSON',
  413: 'body over BATON_BODY_LIMIT',
  415: 'body in a media type other than JSON',
};
const BAD_ID = 'the id is not a UUID (INVALID_ID)';
const REDIS_UNAVAILABLE =
  'Redis did not answer within BATON_REDIS_COMMAND_TIMEOUT_MS, or refused (REDIS_UNAVAILABLE); try again in a few seconds';
const DATABASE_UNAVAILABLE =
  'PostgreSQL is unreachable or out of connections (DATABASE_UNAVAILABLE): nothing was done; try again in a few seconds';

/** What both bulk routes answer: the operation created (202), or with dryRun the count alone (200). */
const BULK_RESPONSES: Record<number, ResponseSpec> = {
  202: {
    description: 'the operation was created; `statusUrl` shows its progress',
    schema: api.bulkAcceptedResponse,
    headers: { Location: { description: 'the operation URL', schema: { type: 'string' } } },
  },
  200: { description: 'dryRun: the count only, nothing stored', schema: api.bulkDryRunResponse },
};
const STARTED: Record<number, ResponseSpec> = {
  202: {
    description:
      'the run was created (a singleton `cancelRunning` start lists the run it replaced in `singleton.cancelled`), ' +
      'or a debounced trigger joined its window (`status: debounced`, `debounce`); `statusUrl` shows its progress',
    schema: api.runAcceptedResponse,
    headers: { Location: { description: 'the run status URL', schema: { type: 'string' } } },
  },
  200: {
    description:
      'the idempotency key was seen before: the first run; or a singleton `skip` workflow already has an active ' +
      'run for the key: that run (`started: false`, `singleton.skipped`)',
    schema: api.runAcceptedResponse,
  },
};

export const OPERATIONS: readonly Operation[] = [
  {
    method: 'post',
    path: '/invoice/start',
    operationId: 'startInvoice',
    tag: 'runs',
    summary: 'Start the invoice workflow for a customer',
    idempotencyKeyHeader: true,
    body: { schema: api.invoiceStartBody },
    responses: STARTED,
    errors: { ...JSON_BODY_ERRORS, 404: 'no `invoice` workflow is defined' },
  },
  {
    method: 'post',
    path: '/v1/workflows/:name/runs',
    operationId: 'startRun',
    tag: 'runs',
    summary: 'Start a run of a workflow',
    params: { name: api.workflowNameParam },
    idempotencyKeyHeader: true,
    body: { schema: api.startRunBody, required: false },
    responses: STARTED,
    errors: { ...JSON_BODY_ERRORS, 404: 'unknown workflow' },
  },
  {
    method: 'get',
    path: '/v1/runs',
    operationId: 'listRuns',
    tag: 'runs',
    summary: 'Runs, newest first',
    description: '`parentRunId` lists the child runs of a run, `topLevel=true` only runs without a parent.',
    query: api.listRunsQuery,
    responses: { 200: { description: 'a page of runs', schema: api.runPageResponse } },
    errors: { 400: 'invalid query or cursor (INVALID_QUERY, INVALID_CURSOR; `details` names the parameter)' },
  },
  {
    method: 'get',
    path: '/v1/runs/:id',
    operationId: 'getRun',
    tag: 'runs',
    summary: 'A run with its steps, attempts and compensations',
    description:
      "Each step lists its own executions. A forEach/repeat step adds its items' counts (`fanout`), its first " +
      '20 items in index order (`items`) and, when there are more, `itemsNext` for ' +
      '`GET /v1/runs/{id}/steps/{stepId}/items`. A `workflow:` step (and item) names its `childRunId`.',
    params: { id: api.uuid },
    responses: { 200: { description: 'the run', schema: api.runDetailResponse } },
    errors: { 400: BAD_ID, 404: 'unknown run' },
  },
  {
    method: 'get',
    path: '/v1/runs/:id/steps/:stepId/items',
    operationId: 'listStepItems',
    tag: 'runs',
    summary: "A forEach step's items, or a repeat step's iterations, in index order",
    description:
      "The items of the step's current execution (not those a retry superseded), keyset-paged on their index.",
    params: { id: api.uuid, stepId: api.stepIdParam },
    query: api.listItemsQuery,
    responses: { 200: { description: 'a page of items', schema: api.stepItemPageResponse } },
    errors: {
      400: `${BAD_ID}, or an invalid limit or cursor (INVALID_QUERY, INVALID_CURSOR; \`details\` names the parameter)`,
      404: 'unknown run, or no forEach or repeat step of that id in the run',
    },
  },
  {
    method: 'post',
    path: '/v1/runs/:id/cancel',
    operationId: 'cancelRun',
    tag: 'runs',
    summary: 'Cancel a running run',
    description: 'Waiting jobs are removed and running attempts aborted; the run ends `cancelled` within moments.',
    params: { id: api.uuid },
    body: { schema: api.cancelBody, required: false },
    responses: { 202: { description: 'cancellation requested', schema: api.runAcceptedResponse } },
    errors: { ...JSON_BODY_ERRORS, 400: `${BAD_ID}, or an invalid body`, 404: 'unknown run', 409: 'already finished' },
  },
  {
    method: 'post',
    path: '/v1/runs/:id/retry',
    operationId: 'retryRun',
    tag: 'runs',
    summary: 'Resume a failed, compensated or cancelled run at its failed step',
    description: 'Succeeded steps keep their outputs and never run again.',
    params: { id: api.uuid },
    body: { schema: api.retryBody, required: false },
    responses: { 202: { description: 'retry requested', schema: api.runAcceptedResponse } },
    errors: {
      ...JSON_BODY_ERRORS,
      400: `${BAD_ID}, an invalid body, or a stepId that did not fail`,
      404: 'unknown run',
      409: 'the run is not in a retryable state',
    },
  },
  {
    method: 'post',
    path: '/v1/runs/:id/fork',
    operationId: 'forkRun',
    tag: 'runs',
    summary: 'Fork a finished run from a step: a new run that keeps the outputs of the steps before it',
    description:
      'A new run of the same workflow version, `forkedFrom` the source. Every step not downstream of `fromStep` in ' +
      'the needs graph keeps its succeeded output (copied; never run nor compensated by the fork); `fromStep`, ' +
      'every step that needs it and any step that had not succeeded run again. A forEach/repeat step is copied as ' +
      'its output only (its items are not). `input` replaces the run input.',
    params: { id: api.uuid },
    body: { schema: api.forkBody },
    responses: {
      202: {
        description: 'the fork was created; `statusUrl` shows its progress',
        schema: api.forkAcceptedResponse,
        headers: { Location: { description: 'the fork status URL', schema: { type: 'string' } } },
      },
    },
    errors: {
      ...JSON_BODY_ERRORS,
      400: `${BAD_ID}, an invalid body, an input the input schema refuses, or a fromStep the run's workflow version does not have`,
      404: 'unknown run',
      409: 'the run has not finished',
    },
  },
  {
    method: 'post',
    path: '/v1/runs/bulk/retry',
    operationId: 'bulkRetryRuns',
    tag: 'runs',
    summary: 'Retry every run a filter matches, paced, as one operation',
    description:
      'The matched runs (top-level only) are snapshotted now; the coordinator then retries them from their failed ' +
      'steps at most `ratePerSec` a second, as `POST /v1/runs/{id}/retry` would. A run no longer retryable when its ' +
      'turn comes is skipped, with the reason. `dryRun`: only the count. The filter must name a workflow or a status.',
    body: { schema: api.bulkRetryBody },
    responses: BULK_RESPONSES,
    errors: {
      ...JSON_BODY_ERRORS,
      400: 'invalid body (`details` names the field): an empty filter, a status that cannot be retried, more than 100 000 runs',
    },
  },
  {
    method: 'post',
    path: '/v1/runs/bulk/cancel',
    operationId: 'bulkCancelRuns',
    tag: 'runs',
    summary: 'Cancel every run a filter matches, paced, as one operation',
    description:
      'As the bulk retry, with `POST /v1/runs/{id}/cancel` for each unfinished run matched; one finished meanwhile ' +
      'is skipped.',
    body: { schema: api.bulkCancelBody },
    responses: BULK_RESPONSES,
    errors: {
      ...JSON_BODY_ERRORS,
      400: 'invalid body (`details` names the field): an empty filter, a finished status, more than 100 000 runs',
    },
  },
  {
    method: 'get',
    path: '/v1/operations',
    operationId: 'listOperations',
    tag: 'runs',
    summary: 'Bulk operations, newest first, with their progress',
    query: api.listOperationsQuery,
    responses: { 200: { description: 'operations', schema: api.operationListResponse } },
    errors: { 400: 'invalid query (INVALID_QUERY; `details` names the parameter)' },
  },
  {
    method: 'get',
    path: '/v1/operations/:id',
    operationId: 'getOperation',
    tag: 'runs',
    summary: 'A bulk operation: its progress and the runs it skipped or failed, with why',
    params: { id: api.uuid },
    responses: { 200: { description: 'the operation', schema: api.operationResponse } },
    errors: { 400: BAD_ID, 404: 'unknown operation' },
  },
  {
    method: 'post',
    path: '/v1/operations/:id/cancel',
    operationId: 'cancelOperation',
    tag: 'runs',
    summary: 'Stop a running bulk operation; the runs it has not reached are left as they are',
    params: { id: api.uuid },
    responses: { 200: { description: 'the operation, cancelled', schema: api.operationResponse } },
    errors: { 400: BAD_ID, 404: 'unknown operation', 409: 'the operation has ended' },
  },
  {
    method: 'get',
    path: '/v1/runs/:id/logs',
    operationId: 'listRunLogs',
    tag: 'runs',
    summary: 'What handlers logged through ctx.log, oldest first',
    params: { id: api.uuid },
    query: api.listLogsQuery,
    responses: { 200: { description: 'a page of log lines', schema: api.logPageResponse } },
    errors: { 400: `${BAD_ID}, or an invalid query or cursor`, 404: 'unknown run' },
  },
  {
    method: 'get',
    path: '/v1/workflows',
    operationId: 'listWorkflows',
    tag: 'workflows',
    summary: 'The latest version of every workflow',
    responses: { 200: { description: 'workflows', schema: api.workflowListResponse } },
  },
  {
    method: 'get',
    path: '/v1/workflows/:name',
    operationId: 'getWorkflow',
    tag: 'workflows',
    summary: 'A workflow definition and its versions',
    params: { name: api.workflowNameParam },
    query: api.getWorkflowQuery,
    responses: { 200: { description: 'the definition', schema: api.workflowDetailResponse } },
    errors: { 400: 'invalid query', 404: 'unknown workflow or version' },
  },
  {
    method: 'put',
    path: '/v1/workflows/:name',
    operationId: 'putWorkflow',
    tag: 'workflows',
    summary: 'Store a workflow definition (JSON or YAML)',
    description: 'A new or changed definition gets the next version (201); an identical one is a no-op (200).',
    params: { name: api.workflowNameParam },
    body: { schema: api.workflowDefinitionBody, mediaTypes: ['application/json', ...api.YAML_TYPES] },
    responses: {
      201: {
        description: 'stored as a new version',
        schema: api.workflowSavedResponse,
        headers: { Location: { description: 'the workflow URL', schema: { type: 'string' } } },
      },
      200: { description: 'identical to the latest version: nothing stored', schema: api.workflowSavedResponse },
    },
    errors: { ...JSON_BODY_ERRORS, 400: 'invalid definition (INVALID_DEFINITION; `details` names each problem)' },
  },
  {
    method: 'post',
    path: '/v1/workflows/:name/pause',
    operationId: 'pauseWorkflow',
    tag: 'workflows',
    summary: 'Pause a workflow: new runs are accepted and stay pending',
    description: 'Running runs go on. Stored in PostgreSQL: a pause survives restarts. Pausing twice is a no-op.',
    params: { name: api.workflowNameParam },
    responses: { 200: { description: 'the pause state', schema: api.workflowPauseResponse } },
    errors: { 404: 'unknown workflow' },
  },
  {
    method: 'post',
    path: '/v1/workflows/:name/resume',
    operationId: 'resumeWorkflow',
    tag: 'workflows',
    summary: 'Resume a workflow: its pending runs are admitted in order (priority, then arrival)',
    description: "Admission still respects the workflow's `concurrency` and `rateLimit`. Resuming twice is a no-op.",
    params: { name: api.workflowNameParam },
    responses: { 200: { description: 'the pause state', schema: api.workflowPauseResponse } },
    errors: { 404: 'unknown workflow' },
  },
  {
    method: 'get',
    path: '/v1/documents/:id',
    operationId: 'getDocument',
    tag: 'documents',
    summary: 'A stored document (the invoice PDF)',
    params: { id: api.uuid },
    responses: {
      200: {
        description: 'the document, in the media type it was stored with',
        content: { 'application/pdf': {}, 'application/octet-stream': {} },
      },
    },
    errors: { 400: BAD_ID, 404: 'unknown document' },
  },
  {
    method: 'post',
    path: '/v1/events/:name',
    operationId: 'publishEvent',
    tag: 'events',
    summary: 'Publish an event: start every subscribed workflow, wake matching waitForEvent steps',
    params: { name: api.eventNameParam },
    idempotencyKeyHeader: true,
    body: { schema: api.eventBody, required: false },
    responses: {
      202: { description: 'stored and delivered', schema: api.eventPublishedResponse },
      200: { description: 'the idempotency key was seen before: the first answer', schema: api.eventPublishedResponse },
    },
    errors: { ...JSON_BODY_ERRORS, 400: 'invalid event name or body' },
  },
  {
    method: 'get',
    path: '/v1/schedules',
    operationId: 'listSchedules',
    tag: 'schedules',
    summary: 'Cron schedules with their next fire time',
    responses: { 200: { description: 'schedules', schema: api.scheduleListResponse } },
  },
  {
    method: 'put',
    path: '/v1/schedules/:id',
    operationId: 'updateSchedule',
    tag: 'schedules',
    summary: 'Pause or resume a schedule',
    params: { id: api.scheduleIdParam },
    body: { schema: api.scheduleBody },
    responses: { 200: { description: 'the schedule', schema: api.scheduleResponse } },
    errors: { ...JSON_BODY_ERRORS, 404: 'unknown schedule' },
  },
  {
    method: 'get',
    path: '/v1/functions',
    operationId: 'listFunctions',
    tag: 'operations',
    summary: 'Every known function: queue depth by state, workers, replicas',
    responses: { 200: { description: 'functions', schema: api.functionListResponse } },
    errors: { 503: REDIS_UNAVAILABLE },
  },
  {
    method: 'post',
    path: '/v1/functions/:name/pause',
    operationId: 'pauseFunction',
    tag: 'operations',
    summary: 'Pause a function: its queue hands out no job (running ones finish; new ones wait) until resumed',
    description:
      'Stored in PostgreSQL, so a Redis wipe or a restart does not resume it; KEDA does not scale a paused function up. ' +
      'Pausing a paused function keeps its first pause time (and its reason, unless a new one is given).',
    params: { name: api.functionNameParam },
    body: { schema: api.functionPauseBody, required: false },
    responses: { 200: { description: 'the function, paused', schema: api.functionControlResponse } },
    errors: { ...JSON_BODY_ERRORS, 404: 'unknown function (no worker reported it and no workflow names it)' },
  },
  {
    method: 'post',
    path: '/v1/functions/:name/resume',
    operationId: 'resumeFunction',
    tag: 'operations',
    summary: 'Resume a paused function: its waiting jobs are handed out again',
    params: { name: api.functionNameParam },
    responses: { 200: { description: 'the function, resumed', schema: api.functionControlResponse } },
    errors: { 400: 'invalid function name', 404: 'unknown function (no worker reported it and no workflow names it)' },
  },
  {
    method: 'get',
    path: '/v1/prometheus/targets',
    operationId: 'prometheusTargets',
    tag: 'operations',
    summary: 'Every live Baton process to scrape, in Prometheus HTTP service-discovery format',
    responses: { 200: { description: 'target groups', schema: api.prometheusTargetsResponse } },
    errors: { 503: REDIS_UNAVAILABLE },
  },
  {
    method: 'get',
    path: '/healthz',
    operationId: 'health',
    tag: 'operations',
    summary: 'Liveness: the process answers',
    responses: { 200: { description: 'alive', schema: api.healthResponse } },
  },
  {
    method: 'get',
    path: '/readyz',
    operationId: 'ready',
    tag: 'operations',
    summary: 'Readiness: PostgreSQL and Redis answer',
    responses: { 200: { description: 'ready', schema: api.readinessResponse } },
    errors: { 503: 'shutting down, or a dependency is unreachable (`details` has each check)' },
  },
  {
    method: 'get',
    path: '/metrics',
    operationId: 'metrics',
    tag: 'operations',
    summary: 'Prometheus metrics',
    description:
      'Served on the API port unless BATON_METRICS_PORT is set: then only on that port (which no Ingress ' +
      'exposes), and the API port answers 404.',
    responses: { 200: { description: 'Prometheus text exposition format', content: { 'text/plain': {} } } },
  },
  {
    method: 'get',
    path: '/openapi.json',
    operationId: 'openapi',
    tag: 'operations',
    summary: 'This document',
    responses: {
      200: { description: 'the OpenAPI 3.1 description of this API', content: { 'application/json': {} } },
    },
  },
];

const COMPONENT_PREFIX = '#/components/schemas/';

/** Keywords zod adds to a standalone JSON Schema that have no place inside an OpenAPI document. */
function strip(schema: JsonSchema): JsonSchema {
  const { $schema: _schema, $id: _id, ...rest } = schema;
  return rest;
}

/**
 * - zod closes every object of an *output* schema (`additionalProperties: false`, since parsing
 *   strips unknown keys); a response may gain fields, so only `.strict()` objects stay closed.
 * - Readability: a `format` says enough without zod's long regex beside it, and the integer bounds
 *   zod adds by default (±2^53-1) say nothing a reader needs.
 */
const tidy = ({ zodSchema, jsonSchema: s }: { zodSchema: z.core.$ZodTypes; jsonSchema: JsonSchema }): void => {
  if (zodSchema._zod.def.type === 'object' && !zodSchema._zod.def.catchall && s.additionalProperties === false) {
    delete s.additionalProperties;
  }
  if (s.format === 'date-time' || s.format === 'uuid') delete s.pattern;
  if (s.minimum === Number.MIN_SAFE_INTEGER) delete s.minimum;
  if (s.maximum === Number.MAX_SAFE_INTEGER) delete s.maximum;
};

function components(registry: z.core.$ZodRegistry<{ id: string }>, io: Io): Record<string, JsonSchema> {
  const { schemas } = z.toJSONSchema(registry, {
    io,
    unrepresentable: 'any',
    override: tidy,
    uri: (id) => `${COMPONENT_PREFIX}${id}`,
  });
  if ('__shared' in schemas) throw new Error('a schema with a global id would be shared outside components');
  return Object.fromEntries(Object.entries(schemas).map(([id, schema]) => [id, strip(schema as JsonSchema)]));
}

function mergeComponents(...sets: Record<string, JsonSchema>[]): Record<string, JsonSchema> {
  const merged: Record<string, JsonSchema> = {};
  for (const set of sets) {
    for (const [id, schema] of Object.entries(set)) {
      if (id in merged) throw new Error(`schema id '${id}' is both a request and a response component`);
      merged[id] = schema;
    }
  }
  return merged;
}

/** A `$ref` for a registered schema, the schema itself otherwise. */
function schemaOf(schema: z.ZodType, io: Io): JsonSchema {
  const registry = io === 'input' ? api.requestComponents : api.responseComponents;
  const id = registry.get(schema)?.id;
  if (id) return { $ref: `${COMPONENT_PREFIX}${id}` };
  return strip(z.toJSONSchema(schema, { io, unrepresentable: 'any', override: tidy }) as JsonSchema);
}

/** A parameter's description sits on the parameter, not its schema. */
function parameter(name: string, where: 'path' | 'query' | 'header', schema: JsonSchema, required: boolean) {
  const { description, ...rest } = schema;
  return { name, in: where, required, ...(description ? { description } : {}), schema: rest };
}

function parametersOf(op: Operation): unknown[] {
  const params: unknown[] = [];
  for (const [name, schema] of Object.entries(op.params ?? {})) {
    params.push(parameter(name, 'path', schemaOf(schema, 'input'), true));
  }
  if (op.query) {
    const query = schemaOf(op.query, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] };
    for (const [name, schema] of Object.entries(query.properties ?? {})) {
      params.push(parameter(name, 'query', schema, query.required?.includes(name) ?? false));
    }
  }
  if (op.idempotencyKeyHeader) {
    params.push(
      parameter(
        'Idempotency-Key',
        'header',
        { ...schemaOf(api.idempotencyKey, 'input'), description: 'a repeated key answers with the first result' },
        false,
      ),
    );
  }
  return params;
}

const errorContent = () => ({ 'application/json': { schema: schemaOf(api.errorResponse, 'output') } });

function responsesOf(op: Operation, authenticated: boolean, readOnlyKeys: boolean): Record<string, unknown> {
  const responses: Record<string, unknown> = {};
  for (const [status, spec] of Object.entries(op.responses)) {
    responses[status] = {
      description: spec.description,
      ...(spec.headers ? { headers: spec.headers } : {}),
      ...(spec.schema
        ? { content: { 'application/json': { schema: schemaOf(spec.schema, 'output') } } }
        : spec.content
          ? { content: spec.content }
          : {}),
    };
  }
  const errors: Record<number, string> = { ...op.errors };
  if (authenticated) errors[401] = 'missing or invalid API key (`Authorization: Bearer <key>`)';
  if (authenticated && readOnlyKeys && op.method !== 'get') {
    errors[403] = 'a read-only key (BATON_READONLY_API_KEYS) on a method that changes something (FORBIDDEN)';
  }
  // Every API route reads or writes PostgreSQL: one it cannot reach is a 503, nothing done.
  if (op.path.startsWith('/v1/') || op.path === '/invoice/start') {
    errors[503] = errors[503] ? `${errors[503]}; or ${DATABASE_UNAVAILABLE}` : DATABASE_UNAVAILABLE;
  }
  const limited = !(NOT_RATE_LIMITED as readonly string[]).includes(op.path);
  if (limited) errors[429] = RATE_LIMITED;
  for (const [status, description] of Object.entries(errors)) {
    responses[status] = {
      description,
      ...(Number(status) === 429
        ? {
            headers: {
              'Retry-After': { description: 'seconds until the window resets', schema: { type: 'integer' } },
              RateLimit: {
                description: 'IETF draft-7 `limit=…, remaining=…, reset=…`',
                schema: { type: 'string' },
              },
            },
          }
        : {}),
      content: errorContent(),
    };
  }
  responses.default = { description: 'unexpected error (500 INTERNAL)', content: errorContent() };
  return responses;
}

/** `/v1/runs/:id` → `/v1/runs/{id}` */
export const openApiPath = (expressPath: string): string => expressPath.replace(/:(\w+)/g, '{$1}');

export const isAuthenticatedPath = (expressPath: string): boolean =>
  AUTHENTICATED_PREFIXES.some((prefix) => expressPath === prefix || expressPath.startsWith(`${prefix}/`));

function packageVersion(): string {
  try {
    // src/api and dist/api are both two levels below the package.
    const pkg = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../package.json'), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export interface OpenApiOptions {
  /** API keys are configured: authenticated paths carry the bearer security requirement. */
  auth: boolean;
  /** Read-only keys are configured: operations that change something may answer 403. */
  readOnlyKeys?: boolean;
}

/** The whole document; plain JSON. */
export function buildOpenApiDocument(opts: OpenApiOptions): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of OPERATIONS) {
    const authenticated = opts.auth && isAuthenticatedPath(op.path);
    const parameters = parametersOf(op);
    const item = (paths[openApiPath(op.path)] ??= {});
    item[op.method] = {
      operationId: op.operationId,
      tags: [op.tag],
      summary: op.summary,
      ...(op.description ? { description: op.description } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(op.body
        ? {
            requestBody: {
              required: op.body.required ?? true,
              content: Object.fromEntries(
                (op.body.mediaTypes ?? ['application/json']).map((type) => [
                  type,
                  { schema: schemaOf(op.body!.schema, 'input') },
                ]),
              ),
            },
          }
        : {}),
      responses: responsesOf(op, authenticated, opts.readOnlyKeys ?? false),
      ...(authenticated ? { security: [{ bearerAuth: [] }] } : {}),
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Baton API',
      version: packageVersion(),
      description:
        'Start, inspect, cancel and retry workflow runs; store workflow definitions; publish events. ' +
        'Errors are `{"error": {"code", "message", "details"?}}`.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    tags: [
      { name: 'runs', description: 'workflow runs: start, inspect, cancel, retry, logs' },
      { name: 'workflows', description: 'workflow definitions, versioned by the server' },
      { name: 'events', description: 'events that start subscribed workflows and wake waiting steps' },
      { name: 'schedules', description: 'cron triggers' },
      { name: 'documents', description: 'documents stored by steps (invoice PDFs)' },
      { name: 'operations', description: 'health, readiness, metrics and this description' },
    ],
    paths,
    components: {
      schemas: mergeComponents(
        components(api.requestComponents, 'input'),
        components(api.responseComponents, 'output'),
      ),
      ...(opts.auth
        ? {
            securitySchemes: {
              bearerAuth: {
                type: 'http',
                scheme: 'bearer',
                description: opts.readOnlyKeys
                  ? 'one of the keys in BATON_API_KEYS, or in BATON_READONLY_API_KEYS for GET only'
                  : 'one of the keys in BATON_API_KEYS',
              },
            },
          }
        : {}),
    },
  };
}
