import client from 'prom-client';
import { registry, stepMetrics, STEP_DURATION_BUCKETS } from '@baton/sdk';

/** The registry, process metrics and the /metrics server are the SDK's (sdk/src/metrics.ts). */
export { registry, collectProcessMetrics, epochMs, startMetricsServer, type RouteHandler } from '@baton/sdk';

/**
 * Prometheus metrics. Names are a public contract (dashboards and alerts query them): keep them.
 * Labels never carry run or step ids, so cardinality stays bounded by workflows × functions.
 */
export const metrics = {
  ...stepMetrics,
  runsTotal: new client.Counter({
    name: 'baton_runs_total',
    help: 'Runs that reached a terminal status',
    labelNames: ['workflow', 'status'] as const,
    registers: [registry],
  }),
  runDuration: new client.Histogram({
    name: 'baton_run_duration_seconds',
    help: 'Run duration from creation to terminal status',
    labelNames: ['workflow', 'status'] as const,
    buckets: STEP_DURATION_BUCKETS,
    registers: [registry],
  }),
  compensationsTotal: new client.Counter({
    name: 'baton_compensations_total',
    help: 'Runs whose compensation finished, by outcome (compensated, compensation_failed)',
    labelNames: ['workflow', 'status'] as const,
    registers: [registry],
  }),
  coordinatorBatchMessages: new client.Histogram({
    name: 'baton_coordinator_batch_messages',
    help: 'Inbox messages (run starts, step reports) the coordinator applied in one transaction',
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
    registers: [registry],
  }),
  coordinatorBatchDuration: new client.Histogram({
    name: 'baton_coordinator_batch_duration_seconds',
    help: 'Time to apply one inbox batch: transaction, commit and enqueueing the steps it started',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  }),
  reconciledTotal: new client.Counter({
    name: 'baton_reconciled_total',
    help: 'Work the reconciler restored from PostgreSQL because Redis had lost it',
    labelNames: ['kind'] as const,
    registers: [registry],
  }),
  reconcileFailuresTotal: new client.Counter({
    name: 'baton_reconcile_failures_total',
    help: 'Reconciler repairs that threw; the pass went on with the next row (kind: step, run_advance, run_timeout, schedules, page)',
    labelNames: ['kind'] as const,
    registers: [registry],
  }),
  retentionDeletedTotal: new client.Counter({
    name: 'baton_retention_deleted_total',
    help: 'Finished runs the retention sweep deleted with everything they own, by workflow and status',
    labelNames: ['workflow', 'status'] as const,
    registers: [registry],
  }),
  httpDuration: new client.Histogram({
    name: 'baton_http_request_duration_seconds',
    help: 'Gateway HTTP request duration',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  }),
  reportsQuarantined: new client.Counter({
    name: 'baton_reports_quarantined_total',
    help: 'Step reports PostgreSQL refused even after sanitising, applied again without their logs (dropped=logs) or without their payload, their step failed with UNSTORABLE_OUTPUT (dropped=payload)',
    labelNames: ['type', 'dropped'] as const,
    registers: [registry],
  }),
};
