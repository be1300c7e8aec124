import { z } from 'zod';
import {
  baseEnv,
  outputLimitEnv,
  loadConfigOrExit,
  loadConfigOrExitAsync,
  parseEnv,
  toBaseConfig,
  type BaseConfig,
} from '../config';
import { advertiseHost, registerTarget } from '../discovery';
import { createLogger, type Logger } from '../logger';
import { startTracing } from '../tracing';
import { collectProcessMetrics, startMetricsServer } from '../metrics';
import { createRedis, queueContext } from '../queues';
import { concurrencyEnvName, type FunctionDefinition } from './function';
import { startFunctionWorker } from './worker';

export interface FunctionProcess {
  definition: FunctionDefinition<any, any>;
  /** Releases what the function opened (pools, transports) after the worker has stopped. */
  close?: () => Promise<void>;
}

/** Upper bound of a graceful stop; below Kubernetes' default 30 s termination grace period. */
export const SHUTDOWN_TIMEOUT_MS = 25_000;

/**
 * Entry point of a function container: config, worker, metrics, graceful shutdown. `build` reads the
 * function's own environment (throwing ConfigError on a bad value) and opens what it needs.
 */
export async function runFunctionMain(
  name: string,
  build: (ctx: { config: BaseConfig; logger: Logger }) => FunctionProcess | Promise<FunctionProcess>,
): Promise<void> {
  const envName = concurrencyEnvName(name);
  const env = loadConfigOrExit(() => parseEnv(baseEnv));
  const concurrency = loadConfigOrExit(
    () => parseEnv(z.object({ [envName]: z.coerce.number().int().min(1).max(1_000).optional() }))[envName],
  );
  // How soon a step whose worker died (kill -9, node lost) is handed to another worker: BullMQ
  // re-runs a job whose lock was not renewed within this, checked as often.
  const lockMs = loadConfigOrExit(
    () =>
      parseEnv(z.object({ BATON_STEP_LOCK_MS: z.coerce.number().int().min(1_000).max(600_000).default(30_000) }))
        .BATON_STEP_LOCK_MS,
  );
  // The largest output a step may report (the coordinator applies the same limit when storing it).
  const maxOutputBytes = loadConfigOrExit(() => parseEnv(outputLimitEnv).BATON_MAX_OUTPUT_BYTES);
  const config = toBaseConfig(env);
  const logger = createLogger(`fn.${name}`, config.logLevel, { function: name });
  const fn = await loadConfigOrExitAsync(async () => build({ config, logger }));
  collectProcessMetrics(`fn.${name}`);
  const tracing = await startTracing(`baton-fn-${name}`);
  const metricsServer = config.metricsPort === undefined ? undefined : await startMetricsServer(config.metricsPort);

  const connection = createRedis(config.redis, `baton:fn.${name}`);
  const worker = startFunctionWorker(fn.definition, {
    queues: queueContext(config, connection),
    logger,
    lockDurationMs: lockMs,
    stalledIntervalMs: lockMs,
    maxOutputBytes,
    ...(concurrency ? { concurrency } : {}),
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
    { concurrency: worker.worker.opts.concurrency, metricsPort: metricsServer?.port },
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
