/**
 * @baton/workflow — the workflow language and its planner: definitions and their validation,
 * JSONata expressions and templates (evaluated in a sandbox of worker threads), run and step
 * states, the planner, fan-out, retries, admission, retention, tags, flow keys, forks and schedule
 * ticks, with the errors and the error-code registry they are stated in. Pure: no PostgreSQL, no
 * Redis, no queues — what does I/O is @baton/engine's. Builds on @baton/sdk, never the reverse.
 *
 * Every export is named here, by role, so what the package offers reads at a glance and nothing
 * leaks out of a module by accident (a new export is added here on purpose).
 */

// --- Errors and their codes (the registry every code comes from) ---
export {
  BatonError,
  CancelledError,
  ConfigError,
  ConflictError,
  NonRetryableError,
  NotFoundError,
  RedisUnavailableError,
  RetryableError,
  type SerializedError,
  serializeError,
  StepTimeoutError,
  ValidationError,
  type ValidationProblem,
} from './errors';
export { ErrorCode, isErrorCode } from './error-codes';

// --- The expression sandbox's limits; what PostgreSQL cannot store, removed before a write ---
export {
  DEFAULT_EXPRESSION_LIMITS,
  expressionEnv,
  expressionLimitsFrom,
  type ExpressionSandboxLimits,
} from './expression-limits';
export { storableJson, storableString, storableText, jsonByteLength, DEFAULT_MAX_OUTPUT_BYTES } from './storable';

// --- The workflow language: definitions, expressions, planning ---
export {
  ACTIVE_RUN_STATUSES,
  isOutstandingStep,
  isTerminalRun,
  OUTSTANDING_STEP_STATUSES,
  RETRYABLE_RUN_STATUSES,
  RUN_STATUSES,
  type RunStatus,
  STEP_STATUSES,
  type StepStatus,
  TERMINAL_RUN_STATUSES,
} from './states';
export {
  BACKOFF_TYPES,
  CHILD_WORKFLOW_FUNCTION,
  cronProblem,
  DEBOUNCE_MAX_MS,
  DEFAULT_RETRY_POLICY,
  eventName,
  findCycle,
  FOREACH_MAX_CONCURRENCY,
  isBuiltinFunction,
  parseWorkflowDefinition,
  REPEAT_MAX_ITERATIONS,
  type RetryPolicy,
  retryPolicySchema,
  SINGLETON_MODES,
  SLEEP_FUNCTION,
  type StepDefinition,
  type Trigger,
  WAIT_FOR_EVENT_FUNCTION,
  type WorkflowDefinition,
  type WorkflowDefinitionInput,
  workflowDefinitionSchema,
} from './definition';
export {
  closeExpressionPool,
  compileExpression,
  configureExpressions,
  evaluate,
  evaluateCondition,
  EXPRESSION_LIMITS,
  ExpressionError,
  expressionLimits,
  isCheap,
  resolveTemplate,
  resolveTemplateEach,
  TEMPLATE_EACH_CHUNK,
  templateExpressions,
} from './expressions';
export {
  CANCELLED,
  DEFAULT_FOREACH_MAX_ITEMS,
  expressionContext,
  type FanoutCounts,
  inFlight,
  type ItemFailure,
  type LastIteration,
  latestByStep,
  type Plan,
  type PlannedExecution,
  type PlannedItem,
  type PlanOptions,
  planRun,
  runError,
  type RunError,
  runErrorOf,
  type RunState,
  type Settlement,
  type StepExecutionState,
  WORKFLOW_TIMEOUT,
} from './planner';
export { backoffDelayMs, isRetryable } from './retry';
export { downstreamOf, type ForkPlan, planFork } from './fork';
export {
  CATCH_UP_MAX_TICKS,
  DEFAULT_SCHEDULE_CATCH_UP,
  DEFAULT_SCHEDULE_OVERLAP,
  dueTicks,
  SCHEDULE_CATCH_UPS,
  SCHEDULE_ON_TIME_MS,
  SCHEDULE_OVERLAPS,
  type ScheduleCatchUp,
  type ScheduleOverlap,
  tickJobId,
  tickTimeOfJob,
  ticksToFire,
} from './schedule-ticks';
export {
  DEFAULT_PRIORITY,
  jobPriority,
  MAX_PRIORITY,
  MIN_PRIORITY,
  prioritySchema,
  rateLimitSchema,
  runPriority,
  type WorkflowRateLimit,
} from './admission';
export {
  effectiveRetention,
  parseDuration,
  parseRetentionEnv,
  RETENTION_CLASSES,
  RETENTION_STATUSES,
  type RetentionClass,
  type RetentionPolicy,
  retentionPolicyOf,
  retentionSchema,
  type RetentionSpec,
} from './retention';
export {
  definitionTagsSchema,
  MAX_TAG_VALUE,
  MAX_TAGS,
  resolveRunTags,
  type RunTags,
  runTagsSchema,
  TAG_KEY_PATTERN,
  tagKey,
} from './tags';
export { MAX_FLOW_KEY, resolveFlowKey } from './flow-keys';
