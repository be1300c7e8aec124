import http from 'node:http';
import { AddressInfo } from 'node:net';
import client from 'prom-client';

/**
 * Prometheus metrics. Names are a public contract (dashboards and alerts query them): keep them.
 * Labels never carry run or step ids, so cardinality stays bounded by workflows × functions.
 *
 * One registry per process: the function runtime's step metrics are defined here, the engine's
 * (runs, coordinator batches, HTTP) on the same registry in engine/src/metrics.ts.
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

/** Buckets of step and run durations: 5 ms to 30 min. */
export const STEP_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800];

/**
 * Buckets of one hop of a step's path (0.1 ms to 60 s): fine below 20 ms, where an idle engine's
 * hops are, so that a breakdown can be read off them.
 */
export const STEP_HOP_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
  0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** The hops of a step report's way to the next step's handler (`baton_step_hop_seconds{hop}`). */
export type StepHop = 'inbox_wait' | 'transaction' | 'enqueue' | 'queue_wait' | 'handler_start';

/**
 * Wall-clock time in epoch milliseconds with sub-millisecond resolution, for the hops measured
 * across processes (a report's `sentAt` against the coordinator's read). `Date.now()` has whole
 * milliseconds only, as large as a hop of an idle engine.
 */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** What the function runtime measures, labelled by function. */
export const stepMetrics = {
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
  /**
   * One hop of a step's path, from its report to the next step's handler; each process observes its
   * own (the coordinator: inbox_wait, transaction, enqueue; a function: queue_wait, handler_start).
   * Labelled by hop only: these measure the engine, not a function.
   */
  stepHop: new client.Histogram<'hop'>({
    name: 'baton_step_hop_seconds',
    help: 'One hop of a step report to the next step: inbox_wait (report sent to read by the coordinator), transaction (read to commit), enqueue (the next job added), queue_wait (job created to picked up), handler_start (picked up to handler called)',
    labelNames: ['hop'] as const,
    buckets: STEP_HOP_BUCKETS,
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
