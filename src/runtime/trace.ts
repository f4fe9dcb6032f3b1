// The W3C trace context lives in the telemetry layer (the spans need it too); the runtime's
// public names for it stay here.
export {
  childSpan,
  childTraceparent,
  formatTraceparent,
  newTrace,
  parseTraceparent,
  type TraceContext,
  traceparentHeader,
} from '../telemetry/traceparent.ts';
