/**
 * @baton/sdk — what a Baton step function is written with: `defineFunction` and `runFunctionMain`,
 * the errors a handler throws, the `ctx` it gets, and the versioned wire protocol with the
 * coordinator. Runtime dependencies: bullmq, ioredis, pino, prom-client, @opentelemetry/api (and zod,
 * a peer). The OpenTelemetry Node SDK, installed by the project that wants traces, is imported only
 * when OTEL_EXPORTER_OTLP_ENDPOINT is set.
 */

// Writing a function
export {
  defineFunction,
  concurrencyEnvName,
  FUNCTION_NAME_PATTERN,
  FUNCTION_RATE_LIMIT_ENV,
  rateLimitEnvName,
  type FunctionContext,
  type FunctionDefinition,
  type StepLog,
} from './function';
export { runFunctionMain, SHUTDOWN_TIMEOUT_MS, type FunctionProcess } from './main';
export {
  startFunctionWorker,
  REPORT_CLOSE_GRACE_MS,
  REPORT_RETRY_MAX_MS,
  REPORT_RETRY_MIN_MS,
  STARTED_REPORT_DELAY_MS,
  type FunctionWorker,
  type FunctionWorkerOptions,
} from './worker';

// Errors a handler throws, and their codes
export {
  BatonError,
  CancelledError,
  ConfigError,
  NonRetryableError,
  RetryableError,
  StepTimeoutError,
  serializeError,
  type SerializedError,
} from './errors';
export { StepErrorCode } from './error-codes';

// Configuration
export {
  DEFAULT_MAX_OUTPUT_BYTES,
  jsonByteLength,
  loadConfigOrExit,
  loadConfigOrExitAsync,
  maskCredentials,
  outputLimitEnv,
  parseClusterNodes,
  parseEnv,
  parseRateLimit,
  type RateLimit,
  rateLimitSetting,
  redisEnv,
  redisOptionsFrom,
  toFunctionConfig,
  type FunctionConfig,
  type LogLevel,
  type RedisEnv,
  type RedisOptions,
} from './config';
export { createPostgresPool, postgresPoolConfig, type PostgresPoolConfig } from './postgres';

// The wire protocol with the coordinator
export {
  appendEncodedToInbox,
  backoffDelayMs,
  EVENT_NAME_PATTERN,
  INBOX_MESSAGE_FIELD,
  isRetryable,
  PROTOCOL_VERSION,
  stepIdempotencyKey,
  type StepJobData,
  type StepLogLine,
  type StepReport,
  type StepRetryPolicy,
} from './protocol';
export {
  COORDINATOR_QUEUE,
  deadInboxShardKey,
  functionNameOfQueue,
  functionQueueName,
  inboxShardKey,
  inboxShardOf,
  redisKeys,
  type RedisKeys,
} from './keys';
export {
  commandTimeoutOf,
  createRedis,
  duplicateRedis,
  isCluster,
  keyServers,
  type QueueContext,
  type RedisConnection,
} from './redis';

// Observability
export { createLogger, type Logger } from './logger';
export {
  collectProcessMetrics,
  registry,
  startMetricsServer,
  stepMetrics,
  epochMs,
  STEP_DURATION_BUCKETS,
  STEP_HOP_BUCKETS,
  type StepHop,
  type RouteHandler,
} from './metrics';
export {
  extractTrace,
  injectTrace,
  inSpan,
  startTracing,
  traced,
  type TraceCarrier,
  type TracingHandle,
} from './tracing';
export { advertiseHost, HEARTBEAT_INTERVAL_MS, registerTarget, TARGET_TTL_MS, type ProcessTarget } from './discovery';

// Fault injection for chaos tests (inert unless BATON_FAILPOINT is set)
export { failpoint, parseFailpoints, seededRandom, type FailpointName } from './failpoints';
