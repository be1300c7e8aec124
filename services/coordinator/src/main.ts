import os from 'node:os';
import { closeExpressionPool } from '@baton/workflow';
import {
  advertiseHost,
  collectProcessMetrics,
  registerTarget,
  startTracing,
  createLogger,
  createPool,
  createRedis,
  loadConfigOrExit,
  loadDefinitionsFromDir,
  queueContext,
  startMetricsServer,
  syncSchedules,
} from '@baton/engine';
import { BacklogReader, backlogRoute } from './backlog';
import { BulkOperations } from './bulk-operations';
import { exportQueueDepths } from './queue-metrics';
import { loadCoordinatorConfig } from './config';
import { Coordinator } from './coordinator';
import { Reconciler } from './reconciler';
import { RetentionSweeper } from './retention';

async function main(): Promise<void> {
  const config = loadConfigOrExit(() => loadCoordinatorConfig());
  const logger = createLogger('coordinator', config.logLevel);
  collectProcessMetrics('coordinator');
  const tracing = await startTracing('baton-coordinator');
  const pool = createPool(config.databaseUrl, {
    // One connection per inbox reading loop: at least one per shard read.
    max: config.concurrency + Math.max(config.inboxLoops, config.inboxReadShards) + 4,
    applicationName: 'baton-coordinator',
    database: config.database,
  });
  const redis = createRedis(config.redis, 'baton:coordinator');
  const queues = queueContext(config, redis);

  if (config.workflowsDir) {
    for (const saved of await loadDefinitionsFromDir(pool, config.workflowsDir)) {
      logger.info(saved, saved.created ? 'workflow version saved' : 'workflow unchanged');
    }
  }

  const coordinator = new Coordinator({
    pool,
    queues,
    logger,
    concurrency: config.concurrency,
    inbox: {
      loops: config.inboxLoops,
      batchSize: config.inboxBatch,
      claimIdleMs: config.inboxClaimMs,
      shards: config.inboxReadShards,
    },
    maxOutputBytes: config.maxOutputBytes,
    maxForEachItems: config.maxForEachItems,
    maxChildDepth: config.maxChildDepth,
  });
  // Schedules follow the definitions just loaded; the reconciler keeps them in step after that.
  const schedules = await syncSchedules(pool, coordinator.queue);
  if (schedules.upserted.length || schedules.removed.length) logger.info(schedules, 'schedules synced');
  // Function pauses are stored in PostgreSQL: a fresh or wiped Redis gets them back before any work.
  const pauses = await coordinator.syncFunctionPauses();
  if (pauses.paused.length || pauses.resumed.length) logger.info(pauses, 'function pauses applied');
  coordinator.start();
  const reconciler = new Reconciler({
    pool,
    coordinator,
    logger,
    intervalMs: config.reconcileIntervalMs,
    graceMs: config.reconcileGraceMs,
  });
  reconciler.start();
  // Deletes finished runs past their retention (nothing unless a workflow or BATON_RETENTION gives one)
  // and delivered events past BATON_EVENT_RETENTION (7 days unless set).
  const retention = new RetentionSweeper({
    pool,
    logger,
    global: config.retention,
    intervalMs: config.retentionSweepMs,
    ...(config.eventRetentionSecs === undefined ? {} : { eventRetentionSecs: config.eventRetentionSecs }),
  });
  retention.start();
  // Bulk retries and cancels (POST /v1/runs/bulk/*): paced slices, each run once across replicas.
  const bulk = new BulkOperations({ pool, coordinator: coordinator.client, logger, intervalMs: config.bulkIntervalMs });
  bulk.start();
  // /backlog on the metrics port is what KEDA scales each function on (docs/SCALING.md).
  const backlog = new BacklogReader(queues, redis);
  const metricsServer =
    config.metricsPort === undefined
      ? undefined
      : await startMetricsServer(config.metricsPort, undefined, { '/backlog': backlogRoute(backlog, logger) });
  const target = metricsServer
    ? registerTarget(redis, config.queuePrefix, {
        component: 'coordinator',
        instance: `${os.hostname()}:${process.pid}`,
        metricsUrl: `http://${advertiseHost()}:${metricsServer.port}/metrics`,
      })
    : undefined;
  // Queue depths are exported here only, so each job is counted once however many processes scrape.
  const queueGauge = exportQueueDepths(pool, queues);
  logger.info({ concurrency: config.concurrency, metricsPort: metricsServer?.port }, 'coordinator started');

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping: finishing in-flight messages');
    // worker.close() waits for the message being applied, so its transaction commits (or rolls back) first.
    await reconciler.stop();
    await retention.stop();
    await bulk.stop();
    await target?.stop();
    await queueGauge.close();
    await coordinator.close();
    // The expression sandbox processes (workflow/src/expressions.ts).
    await closeExpressionPool();
    await metricsServer?.close();
    await backlog.close();
    await pool.end();
    await tracing?.shutdown().catch(() => undefined);
    await redis.quit().catch(() => undefined);
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`coordinator failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
