import http from 'node:http';
import { AddressInfo } from 'node:net';
import client from 'prom-client';

/**
 * Prometheus metrics. Names are a public contract (dashboards and alerts query them): keep them.
 * Labels never carry run or step ids, so cardinality stays bounded by workflows × functions.
 */
export const registry = new client.Registry();

let defaultsCollected = false;

/** Process metrics (CPU, memory, event-loop lag) for this process, labelled with its component. */
export function collectProcessMetrics(component: string): void {
  if (defaultsCollected) return;
  defaultsCollected = true;
  registry.setDefaultLabels({ component });
  client.collectDefaultMetrics({ register: registry });
}

const STEP_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800];

export const metrics = {
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
  stepsTotal: new client.Counter({
    name: 'baton_steps_total',
    help: 'Step attempts by outcome (succeeded, failed, retrying)',
    labelNames: ['function', 'status'] as const,
    registers: [registry],
  }),
  stepDuration: new client.Histogram({
    name: 'baton_step_duration_seconds',
    help: 'Duration of one step attempt in the function runtime',
    labelNames: ['function', 'status'] as const,
    buckets: STEP_DURATION_BUCKETS,
    registers: [registry],
  }),
  stepWait: new client.Histogram({
    name: 'baton_step_wait_seconds',
    help: 'Time a step job waited in its queue before a worker started it (first attempt)',
    labelNames: ['function'] as const,
    buckets: STEP_DURATION_BUCKETS,
    registers: [registry],
  }),
  stepRetries: new client.Counter({
    name: 'baton_step_retries_total',
    help: 'Step attempts that failed and will be retried',
    labelNames: ['function'] as const,
    registers: [registry],
  }),
  reportRetries: new client.Counter({
    name: 'baton_report_retries_total',
    help: 'Deliveries of a step outcome report that Redis refused and that are tried again (the handler is not called again)',
    labelNames: ['function', 'type'] as const,
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

export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/**
 * Serves /metrics and /healthz (the pod's probes) on its own port, for processes without an HTTP
 * API. `routes` adds endpoints a component owns (the coordinator's backlog for KEDA).
 */
export async function startMetricsServer(
  port: number,
  host = '0.0.0.0',
  routes: Record<string, RouteHandler> = {},
): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (pathname === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
      return;
    }
    const route = routes[pathname];
    if (route) {
      route(req, res);
      return;
    }
    if (pathname !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry
      .metrics()
      .then((body) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(body))
      .catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
