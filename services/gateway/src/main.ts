import os from 'node:os';
import {
  advertiseHost,
  collectProcessMetrics,
  commandTimeoutOf,
  isCluster,
  registerTarget,
  startTracing,
  coordinatorQueue,
  createLogger,
  createPool,
  loadConfigOrExit,
  queueContext,
  startMetricsServer,
} from '@baton/engine';
import { createApp } from './app';
import { loadGatewayConfig } from './config';
import { createApiServer } from './http/security';
import { inClusterDeploymentReader } from './kubernetes';
import { createGatewayRedis } from './redis';

/** In-flight requests get this long after SIGTERM; below Kubernetes' default 30 s grace period. */
const DRAIN_TIMEOUT_MS = 10_000;
/** Upper bound of the whole stop, closing connections included. */
const SHUTDOWN_TIMEOUT_MS = 25_000;

async function main(): Promise<void> {
  const config = loadConfigOrExit(() => loadGatewayConfig());
  const logger = createLogger('gateway', config.logLevel);
  collectProcessMetrics('gateway');
  const tracing = await startTracing('baton-gateway');

  const pool = createPool(config.databaseUrl, { applicationName: 'baton-gateway', database: config.database });
  // Every command bounded by BATON_REDIS_COMMAND_TIMEOUT_MS (see redis.ts).
  const redis = createGatewayRedis(config);
  // Without a listener ioredis prints every failed reconnect; it reconnects by itself, /readyz reports it.
  redis.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
  const coordinator = coordinatorQueue(queueContext(config, redis));
  coordinator.on('error', (err) => logger.warn({ err: err.message }, 'coordinator queue error'));

  let draining = false;
  let target: { stop(): Promise<void> } | undefined;
  const deployments = await inClusterDeploymentReader();
  const app = createApp({
    pool,
    redis,
    coordinator,
    config,
    logger,
    isDraining: () => draining,
    ...(deployments ? { deployments } : {}),
  });
  // /metrics on a port of its own (BATON_METRICS_PORT) when set, else on the API port.
  const metricsServer =
    config.gatewayMetricsPort === undefined ? undefined : await startMetricsServer(config.gatewayMetricsPort);
  // Slow clients (slowloris) cannot hold a connection: the whole request within
  // BATON_REQUEST_TIMEOUT_MS, its headers within 10 s; Node answers 408 and closes.
  const server = createApiServer(
    app,
    config.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: config.requestTimeoutMs },
  );
  server.listen(config.port);
  server.on('listening', () => {
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    logger.info(
      {
        port,
        metricsPort: metricsServer?.port ?? port,
        auth: config.apiKeys.length + (config.readOnlyApiKeys?.length ?? 0) > 0,
        readOnlyKeys: config.readOnlyApiKeys?.length ?? 0,
        bodyLimit: config.bodyLimit,
        rateLimitPerMinute: config.rateLimit || 'off',
        trustProxy: config.trustProxy ?? false,
        requestTimeoutMs: server.requestTimeout,
        redisCommandTimeoutMs: commandTimeoutOf(redis),
        redisCluster: isCluster(redis),
        inboxShards: config.inboxShards ?? 1,
      },
      'gateway listening',
    );
    if (config.apiKeys.length + (config.readOnlyApiKeys?.length ?? 0) === 0) {
      // Loud on purpose: an open API lets anyone who reaches the port start, cancel and retry runs,
      // read their data and replace definitions (the chart refuses this unless auth.allowAnonymous).
      logger.warn(
        'API IS OPEN: BATON_API_KEYS is empty, so every /v1 route and /invoice/start answers without a key. ' +
          'Set BATON_API_KEYS (e.g. `openssl rand -hex 24`) unless this is a local development machine.',
      );
    }
    target = registerTarget(redis, config.queuePrefix, {
      component: 'gateway',
      instance: `${os.hostname()}:${process.pid}`,
      metricsUrl: `http://${advertiseHost()}:${metricsServer?.port ?? port}/metrics`,
    });
  });
  server.on('error', (err) => {
    logger.fatal({ err }, 'gateway cannot listen');
    process.exit(1);
  });

  const stop = async (signal: string): Promise<void> => {
    if (draining) return;
    draining = true;
    logger.info({ signal }, 'stopping: no new connections, draining requests');
    const forced = setTimeout(() => {
      logger.warn('shutdown timeout; exiting');
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    forced.unref();

    await new Promise<void>((resolve) => {
      // Stops accepting; resolves once every connection is gone.
      server.close(() => resolve());
      // Keep-alive connections with no request in flight would hold close() open until they time out.
      server.closeIdleConnections();
      setTimeout(() => {
        logger.warn('requests still running after the drain timeout; closing their connections');
        server.closeAllConnections();
      }, DRAIN_TIMEOUT_MS).unref();
    });
    await target?.stop();
    await metricsServer?.close().catch(() => undefined);
    await coordinator.close().catch((err) => logger.warn({ err }, 'closing the coordinator queue failed'));
    await tracing?.shutdown().catch(() => undefined);
    await pool.end().catch((err) => logger.warn({ err }, 'closing the database pool failed'));
    await redis.quit().catch(() => undefined);
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`gateway failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
