import { context, propagation, SpanStatusCode, trace, type Attributes, type Context } from '@opentelemetry/api';

/**
 * Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; then the process starts the
 * OpenTelemetry Node SDK (OTLP over HTTP) and one trace per run spans gateway → coordinator → every
 * function attempt. The trace context travels as W3C `traceparent` in step job data and reports.
 * Without the SDK the API calls below are no-ops, so the code paths stay the same.
 *
 * The Node SDK (`@opentelemetry/sdk-node` and `@opentelemetry/exporter-trace-otlp-http`, about
 * 120 MB installed) is not a dependency of @baton/sdk, not even an optional one (npm installs those
 * by default, and `npm ci` of a workspace installs optional peers the lockfile holds): a project
 * that wants traces installs both next to the SDK, which imports them only when an endpoint is set.
 * Set the endpoint without them and the process says so once and runs untraced.
 */

/** A W3C trace-context carrier (`traceparent`, `tracestate`): plain JSON, fit for job data. */
export type TraceCarrier = Record<string, string>;

const tracer = () => trace.getTracer('baton');

export interface TracingHandle {
  shutdown(): Promise<void>;
}

/** Starts the SDK when an OTLP endpoint is configured. Loaded lazily: no cost when tracing is off. */
export async function startTracing(
  serviceName: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<TracingHandle | undefined> {
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT) return undefined;
  let modules: [typeof import('@opentelemetry/sdk-node'), typeof import('@opentelemetry/exporter-trace-otlp-http')];
  try {
    modules = await Promise.all([import('@opentelemetry/sdk-node'), import('@opentelemetry/exporter-trace-otlp-http')]);
  } catch (err) {
    process.stderr.write(
      `OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed (${(err as Error).message}); ` +
        'install @opentelemetry/sdk-node and @opentelemetry/exporter-trace-otlp-http to export traces. Running untraced.\n',
    );
    return undefined;
  }
  const [{ NodeSDK }, { OTLPTraceExporter }] = modules;
  const sdk = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME ?? serviceName,
    // From the given environment (not only process.env), per the OTLP exporter spec's precedence.
    traceExporter: new OTLPTraceExporter({
      url: env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/$/, '')}/v1/traces`,
    }),
    // Only Baton's own spans: automatic instrumentation of every library would drown the run's trace.
    instrumentations: [],
  });
  sdk.start();
  return { shutdown: () => sdk.shutdown() };
}

/** The current context as a carrier, for a message or a row. Empty when tracing is off. */
export function injectTrace(ctx: Context = context.active()): TraceCarrier {
  const carrier: TraceCarrier = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

export function extractTrace(carrier: TraceCarrier | undefined | null): Context {
  return carrier ? propagation.extract(context.active(), carrier) : context.active();
}

/** `{trace}` when tracing is on, nothing otherwise (keeps messages and rows small). */
export function traced(carrier: TraceCarrier): { trace?: TraceCarrier } {
  return Object.keys(carrier).length ? { trace: carrier } : {};
}

/**
 * Runs `fn` in a span that is a child of `parent` (a carrier from a message or a row), recording an
 * error and ending the span however `fn` ends.
 */
export async function inSpan<T>(
  name: string,
  parent: TraceCarrier | undefined | null,
  attributes: Attributes,
  fn: () => Promise<T>,
): Promise<T> {
  return tracer().startActiveSpan(name, { attributes }, extractTrace(parent), async (span) => {
    try {
      return await fn();
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      throw err;
    } finally {
      span.end();
    }
  });
}
