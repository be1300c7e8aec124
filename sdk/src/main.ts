import { z } from 'zod';
import {
  loadConfigOrExit,
  loadConfigOrExitAsync,
  outputLimitEnv,
  parseEnv,
  rateLimitSetting,
  redisEnv,
  toFunctionConfig,
  type FunctionConfig,
} from './config';
import { advertiseHost, registerTarget } from './discovery';
import { concurrencyEnvName, FUNCTION_RATE_LIMIT_ENV, rateLimitEnvName, type FunctionDefinition } from './function';
import { createLogger, type Logger } from './logger';
import { collectProcessMetrics, startMetricsServer } from './metrics';
import { createRedis } from './redis';
import { startTracing } from './tracing';
import { startFunctionWorker } from './worker';

export interface FunctionProcess {
  definition: FunctionDefinition<any, any>;
  /** Releases what the function opened (pools, transports) after the worker has stopped. */
  close?: () => Promise<void>;
}

/** Upper bound of a graceful stop; below Kubernetes' default 30 s termination grace period. */
export const SHUTDOWN_TIMEOUT_MS = 25_000;

/**
 * Entry point of a function process (a container's `node dist/main.js`): configuration, the worker,
 * /metrics and /healthz on METRICS_PORT, graceful shutdown on SIGTERM. `build` reads the function's
 * own environment (`parseEnv`, throwing ConfigError on a bad value: one line on stderr, exit 1) and
 * opens what it needs; it may return a definition alone.
 *
 * The runtime reads REDIS_URL (or REDIS_HOST/REDIS_PORT), BATON_QUEUE_PREFIX, LOG_LEVEL,
 * METRICS_PORT, BATON_STEP_LOCK_MS, BATON_MAX_OUTPUT_BYTES, `<NAME>_CONCURRENCY`, `<NAME>_RATE_LIMIT`
 * (else BATON_FUNCTION_RATE_LIMIT) and, when set, OTEL_EXPORTER_OTLP_ENDPOINT. Nothing else: a
 * function without a database needs no DATABASE_URL.
 */
export async function runFunctionMain(
  name: string,
  build: (ctx: {
    config: FunctionConfig;
    logger: Logger;
  }) => FunctionProcess | FunctionDefinition<any, any> | Promise<FunctionProcess | FunctionDefinition<any, any>>,
): Promise<void> {
  const envName = concurrencyEnvName(name);
  const env = loadConfigOrExit(() => parseEnv(redisEnv));
  const concurrency = loadConfigOrExit(
    () => parseEnv(z.object({ [envName]: z.coerce.number().int().min(1).max(1_000).optional() }))[envName],
  );
  // `<NAME>_RATE_LIMIT=100/1s` (or BATON_FUNCTION_RATE_LIMIT for any function): BullMQ's global limiter.
  const rateEnvName = rateLimitEnvName(name);
  const rateLimit = loadConfigOrExit(() => {
    const parsed = parseEnv(
      z.object({ [rateEnvName]: rateLimitSetting.optional(), [FUNCTION_RATE_LIMIT_ENV]: rateLimitSetting.optional() }),
    );
    return parsed[rateEnvName] ?? parsed[FUNCTION_RATE_LIMIT_ENV];
  });
  // How soon a step whose worker died (kill -9, node lost) is handed to another worker: BullMQ
  // re-runs a job whose lock was not renewed within this, checked as often.
  const lockMs = loadConfigOrExit(
    () =>
      parseEnv(z.object({ BATON_STEP_LOCK_MS: z.coerce.number().int().min(1_000).max(600_000).default(30_000) }))
        .BATON_STEP_LOCK_MS,
  );
  // The largest output a step may report (the coordinator applies the same limit when storing it).
  const maxOutputBytes = loadConfigOrExit(() => parseEnv(outputLimitEnv).BATON_MAX_OUTPUT_BYTES);
  const config = toFunctionConfig(env);
  const logger = createLogger(`fn.${name}`, config.logLevel, { function: name });
  const built = await loadConfigOrExitAsync(async () => build({ config, logger }));
  const fn: FunctionProcess = 'definition' in built ? built : { definition: built };
  collectProcessMetrics(`fn.${name}`);
  const tracing = await startTracing(`baton-fn-${name}`);
  const metricsServer = config.metricsPort === undefined ? undefined : await startMetricsServer(config.metricsPort);

  const connection = createRedis(config.redis, `baton:fn.${name}`);
  const worker = startFunctionWorker(fn.definition, {
    queues: { connection, prefix: config.queuePrefix },
    logger,
    lockDurationMs: lockMs,
    stalledIntervalMs: lockMs,
    maxOutputBytes,
    ...(concurrency ? { concurrency } : {}),
    ...(rateLimit ? { rateLimit } : {}),
  });
  const target = metricsServer
    ? registerTarget(connection, config.queuePrefix, {
        component: 'function',
        function: name,
        instance: worker.workerId,
        metricsUrl: `http://${advertiseHost()}:${metricsServer.port}/metrics`,
      })
    : undefined;
  logger.info(
    { concurrency: worker.worker.opts.concurrency, rateLimit, metricsPort: metricsServer?.port },
    'function worker started',
  );

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping: no new jobs, finishing running attempts');
    const forced = setTimeout(() => {
      // Running attempts did not finish in time: exit and let BullMQ's stalled check hand their
      // jobs to another worker (maxStalledCount allows it without counting a failure).
      logger.warn('shutdown timeout; exiting with attempts still running');
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    forced.unref();
    await worker.close();
    await target?.stop();
    await fn.close?.();
    await tracing?.shutdown().catch(() => undefined);
    await connection.quit().catch(() => undefined);
    await metricsServer?.close();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
