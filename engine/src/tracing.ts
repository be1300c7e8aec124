import { context, SpanStatusCode, trace, type Attributes } from '@opentelemetry/api';
import { extractTrace, injectTrace, type TraceCarrier } from '@baton/sdk';

/**
 * Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; then each process starts the
 * OpenTelemetry Node SDK (OTLP over HTTP) and one trace per run spans gateway → coordinator → every
 * function attempt. The trace context travels as W3C `traceparent` in the run row's metadata and in
 * step job data. Without the SDK the API calls below are no-ops, so the code paths stay the same.
 */

export { extractTrace, injectTrace, inSpan, startTracing, type TraceCarrier, type TracingHandle } from '@baton/sdk';

const tracer = () => trace.getTracer('baton');

/** A span not made current: one per message of a coordinator batch, ended when the batch is done. */
export interface OpenSpan {
  /** The span's context as a carrier, for the messages it sends (its children). */
  carrier: TraceCarrier;
  end(err?: unknown): void;
}

export function openSpan(name: string, parent: TraceCarrier | undefined | null, attributes: Attributes): OpenSpan {
  const span = tracer().startSpan(name, { attributes }, extractTrace(parent));
  return {
    carrier: injectTrace(trace.setSpan(context.active(), span)),
    end: (err?: unknown) => {
      if (err) {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
      }
      span.end();
    },
  };
}
