/**
 * @baton/shared — the runtime library every Baton deployable imports.
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
export * from './workflow/store';
export * from './runtime/function';
export { startFunctionWorker, type FunctionWorker, type FunctionWorkerOptions } from './runtime/worker';
export { runFunctionMain, SHUTDOWN_TIMEOUT_MS, type FunctionProcess } from './runtime/main';
export * from './runs';
export { RunStarter, RUN_START_BATCH, type StartByNameRequest } from './run-starter';
export * from './events';
export * from './schedules';
export * from './discovery';
export * from './tracing';
export * from './inbox';
export { GroupCommit, type GroupCommitOptions } from './group-commit';
