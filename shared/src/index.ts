/**
 * @baton/shared — the engine library the gateway and the coordinator import. What a function process
 * needs is @baton/sdk (sdk/), which this package builds on and never the reverse.
 *
 * Every export is named here, by role, so what the package offers reads at a glance and nothing
 * leaks out of a module by accident (a new export is added here on purpose).
 */

// --- Errors and their codes (the registry every code comes from), PostgreSQL's SQLSTATEs by name ---
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
export { SQLSTATE, isDataError, isDatabaseUnavailable, isUnstorableText } from './db/sqlstate';

// --- Configuration, logs and metrics ---
export {
  type BaseConfig,
  baseEnv,
  type BaseEnv,
  type DatabaseSettings,
  DEFAULT_EXPRESSION_LIMITS,
  DEFAULT_PG_LIMITS,
  expressionEnv,
  expressionLimitsFrom,
  type ExpressionSandboxLimits,
  loadConfigOrExit,
  loadConfigOrExitAsync,
  maskCredentials,
  migrationDatabaseUrl,
  outputLimitEnv,
  parseEnv,
  type PgSessionLimits,
  type RedisOptions,
  redisOptionsFrom,
  toBaseConfig,
} from './config';
export { createLogger, type Logger } from './logger';
export { registry, metrics, collectProcessMetrics, epochMs, startMetricsServer } from './metrics';
export { storableJson, storableString, storableText, jsonByteLength, DEFAULT_MAX_OUTPUT_BYTES } from './storable';

// --- The workflow language: definitions, expressions, planning (pure: no I/O) ---
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
} from './workflow/states';
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
} from './workflow/definition';
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
} from './workflow/expressions';
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
} from './workflow/planner';
export { backoffDelayMs, isRetryable } from './workflow/retry';
export { downstreamOf, type ForkPlan, planFork } from './workflow/fork';
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
} from './workflow/schedule-ticks';
export {
  DEFAULT_PRIORITY,
  jobPriority,
  MAX_PRIORITY,
  MIN_PRIORITY,
  prioritySchema,
  rateLimitSchema,
  runPriority,
  type WorkflowRateLimit,
} from './workflow/admission';
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
} from './workflow/retention';
export {
  definitionTagsSchema,
  MAX_TAG_VALUE,
  MAX_TAGS,
  resolveRunTags,
  type RunTags,
  runTagsSchema,
  TAG_KEY_PATTERN,
  tagKey,
} from './workflow/tags';

// --- PostgreSQL: the pool, migrations, stored definitions, runs, events and schedules ---
export { createPool, withTransaction, type Pool, type PoolClient } from './db/pool';
export { ensureDatabase, migrate, seedDemoData, MIGRATIONS_DIR, SEEDS_DIR } from './db/migrate';
export {
  getDefinition,
  type KnownFunction,
  knownFunctions,
  listLatestDefinitions,
  listVersions,
  loadDefinitionsFromDir,
  parseDefinitionText,
  type SavedDefinition,
  saveDefinition,
  type StoredDefinition,
  unknownFunctionWarnings,
} from './workflow/store';
export { pausedWorkflows, setWorkflowPaused, type WorkflowPause } from './workflow/pauses';
export {
  type CancelWakeup,
  debounceWakeups,
  notifyCoordinator,
  type Queryable,
  sendWakeups,
  type Wakeups,
  type RunTrigger,
  type StartedRun,
  startRun,
  type StartRunRequest,
  traced,
  validateRunInput,
} from './runs';
export { RunStarter, RUN_START_BATCH, type StartByNameRequest } from './run-starter';
export { insertRuns, type NewRun } from './run-rows';
export { replaceSingleton, type ReplaceOutcome, singletonOf, type SingletonStart } from './singleton';
export {
  armDebounce,
  type DebouncedTrigger,
  debounceOf,
  type DebounceStart,
  debounceTimer,
  debounceTrigger,
  type FiredWindow,
} from './debounce';
export {
  fireDueWindow,
  releaseSingleton,
  SINGLETON_ACTIVE_STATUSES,
  singletonHolders,
  singletonSlot,
  upsertDebounce,
  type DebounceTrigger,
  type DebounceWindow,
} from './flow-store';
export { MAX_FLOW_KEY, resolveFlowKey } from './workflow/flow-keys';
export { GroupCommit, type GroupCommitOptions } from './group-commit';
export { type PublishedEvent, publishEvent, publishEventNow, type PublishEventRequest } from './events';
export {
  desiredSchedules,
  listSchedules,
  type ScheduleSpec,
  type ScheduleView,
  setSchedulePaused,
  syncSchedules,
} from './schedules';
export {
  applyFunctionPause,
  type FunctionControl,
  functionControls,
  recordFunctionPaused,
  syncFunctionPauses,
} from './function-controls';

// --- Redis: keys, queues, the coordinator's inbox and messages, discovery; tracing across them ---
export { redisKeys, type RedisKeys } from './keys';
export {
  boundedRedisCall,
  cancelChannel,
  commandTimeoutOf,
  COORDINATOR_JOB_OPTIONS,
  COORDINATOR_QUEUE,
  createRedis,
  deleteKeysWithPrefix,
  duplicateRedis,
  functionNameOfQueue,
  isCluster,
  keyServers,
  functionQueueName,
  KEEP_FINISHED_JOBS,
  publishCancellation,
  queueContext,
  type QueueContext,
  type RedisConnection,
} from './queues';
export { CoordinatorClient, coordinatorQueue, type DelayedMessage } from './coordinator-client';
export {
  type AdmissionMessage,
  type BuiltinStepMessage,
  coordinatorJobId,
  type CoordinatorMessage,
  PROTOCOL_VERSION,
  type RunControlMessage,
  stepIdempotencyKey,
  type StepJobData,
  type StepLogLine,
  type StepReport,
  type StepRetryPolicy,
  type TriggerMessage,
} from './protocol';
export {
  appendEncodedToInbox,
  appendToInbox,
  deadInboxKey,
  encodeInboxMessage,
  INBOX_GROUP,
  INBOX_MESSAGE_FIELD,
  inboxKey,
  inboxShardOf,
  type InboxMessage,
  isInboxMessage,
} from './inbox';
export {
  advertiseHost,
  HEARTBEAT_INTERVAL_MS,
  listTargets,
  type ProcessTarget,
  registerTarget,
  TARGET_TTL_MS,
  toHttpServiceDiscovery,
} from './discovery';
export {
  extractTrace,
  injectTrace,
  inSpan,
  openSpan,
  type OpenSpan,
  startTracing,
  type TraceCarrier,
  type TracingHandle,
} from './tracing';

// --- The function runtime is the SDK's (@baton/sdk): re-exported for the engine's tests and tools ---
export {
  concurrencyEnvName,
  FUNCTION_RATE_LIMIT_ENV,
  parseRateLimit,
  type RateLimit,
  rateLimitEnvName,
  defineFunction,
  runFunctionMain,
  startFunctionWorker,
  SHUTDOWN_TIMEOUT_MS,
  type FunctionContext,
  type FunctionDefinition,
  type FunctionProcess,
  type FunctionWorker,
  type FunctionWorkerOptions,
  type StepLog,
} from '@baton/sdk';
