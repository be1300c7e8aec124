/**
 * @baton/shared — the engine library the gateway and the coordinator import. What a function process
 * needs is @baton/sdk (sdk/), which this package builds on and never the reverse.
 */
export * from './errors';
export * from './error-codes';
export * from './config';
export { createLogger, type Logger } from './logger';
export { registry, metrics, collectProcessMetrics, startMetricsServer } from './metrics';
export { createPool, withTransaction, type Pool, type PoolClient } from './db/pool';
export { SQLSTATE, isDataError, isDatabaseUnavailable, isUnstorableText } from './db/sqlstate';
export { storableJson, storableString, storableText, jsonByteLength, DEFAULT_MAX_OUTPUT_BYTES } from './storable';
export { ensureDatabase, migrate, seedDemoData, MIGRATIONS_DIR, SEEDS_DIR } from './db/migrate';
export { redisKeys, type RedisKeys } from './keys';
export * from './queues';
export * from './coordinator-client';
export * from './protocol';
export * from './workflow/states';
export * from './workflow/definition';
export * from './workflow/expressions';
export * from './workflow/planner';
export * from './workflow/retry';
export * from './workflow/retention';
export * from './workflow/store';
export * from './workflow/tags';
// The function runtime is the SDK's (@baton/sdk): re-exported for the engine's tests and tools.
export {
  concurrencyEnvName,
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
export * from './runs';
export { RunStarter, RUN_START_BATCH, type StartByNameRequest } from './run-starter';
export * from './events';
export * from './schedules';
export * from './discovery';
export * from './tracing';
export * from './inbox';
export { GroupCommit, type GroupCommitOptions } from './group-commit';
