/**
 * @baton/engine — what the gateway and the coordinator run on: configuration, PostgreSQL (pool,
 * migrations, stored definitions, runs, events, schedules, flow control), Redis (keys, queues, the
 * coordinator's inbox and its messages, discovery), metrics and tracing. The workflow language it
 * executes is @baton/workflow's, imported from there (this package does not re-export it); what a
 * function process needs is @baton/sdk. Both sit under this package, never the reverse.
 *
 * Every export is named here, by role, so what the package offers reads at a glance and nothing
 * leaks out of a module by accident (a new export is added here on purpose).
 */

// --- PostgreSQL's SQLSTATEs by name (errors and their codes are @baton/workflow's) ---
export { SQLSTATE, isDataError, isDatabaseUnavailable, isUnstorableText } from './db/sqlstate';

// --- Configuration, logs and metrics ---
export {
  type BaseConfig,
  baseEnv,
  type BaseEnv,
  type DatabaseSettings,
  DEFAULT_PG_LIMITS,
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

// --- PostgreSQL: the pool, migrations, stored definitions, runs, events and schedules ---
export { createPool, pipelined, withOwnTransaction, withTransaction, type Pool, type PoolClient } from './db/pool';
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
export { type DispatchedExecution, stepJobData, StepQueues } from './step-jobs';
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
