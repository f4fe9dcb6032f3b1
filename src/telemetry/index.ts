/**
 * Telemetry: OpenTelemetry spans on the API alone (no-ops until a provider is registered), the
 * W3C trace context records carry, tracing switched on from the standard `OTEL_*` variables, and
 * structured logs carrying trace ids. See docs/observability.md.
 */
export { startTracingFromEnv, type TraceExporterName, type Tracing, tracesExportersFromEnv } from './sdk.ts';
export {
  childSpan,
  childTraceparent,
  formatTraceparent,
  newTrace,
  parseTraceparent,
  type TraceContext,
  traceparentHeader,
} from './traceparent.ts';
export {
  activeTraceparent,
  endSpan,
  failSpan,
  inSpan,
  linkTo,
  messaging,
  producerSpan,
  type Span,
  SpanKind,
  type StartSpanOptions,
  startSpan,
  traceparentOf,
  tracer,
  tracerName,
  withSpan,
} from './tracing.ts';
