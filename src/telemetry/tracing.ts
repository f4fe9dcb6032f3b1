import {
  type Attributes,
  type Context,
  context,
  type Link,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
} from '@opentelemetry/api';
import { formatTraceparent, parseTraceparent } from './traceparent.ts';

/**
 * Meridian's spans, on the OpenTelemetry API only. Until a tracer provider is registered (by
 * `startTracingFromEnv`, or by the application's own OpenTelemetry SDK) every span here is the
 * API's no-op: nothing is recorded or exported, and the traceparent a record carries is the one
 * the runtime derives from its Random port, as before tracing existed. Once a provider records,
 * each record, journal start entry and routed request carries the traceparent of a real span, so
 * a trace follows a request through every record and saga step, across nodes.
 */
export const tracerName = 'meridian';

export type { Span };
export { SpanKind };

/** The tracer spans come from: the global provider's, looked up each time so a later registration counts. */
export function tracer() {
  return trace.getTracer(tracerName);
}

/** The remote span context `traceparent` names, or null when it is absent or malformed. */
function remoteContext(traceparent: string | undefined | null): Context | null {
  const parsed = parseTraceparent(traceparent);
  if (parsed === null) return null;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: parsed.traceId,
    spanId: parsed.spanId,
    traceFlags: parsed.sampled ? TraceFlags.SAMPLED : TraceFlags.NONE,
    isRemote: true,
  });
}

/** A link to the span `traceparent` names (a batch consume links to its records' producers). */
export function linkTo(traceparent: string | undefined | null, attributes?: Attributes): Link | null {
  const remote = remoteContext(traceparent);
  if (remote === null) return null;
  const spanContext = trace.getSpanContext(remote);
  return spanContext === undefined ? null : { context: spanContext, ...(attributes ? { attributes } : {}) };
}

export interface StartSpanOptions {
  /**
   * The traceparent of the parent span. Absent or malformed: the span's parent is the active
   * span (the HTTP request being served, the step running), if any; `root: true` ignores it.
   */
  readonly parent?: string | null;
  readonly root?: boolean;
  /** @default SpanKind.INTERNAL */
  readonly kind?: SpanKind;
  readonly attributes?: Attributes;
  readonly links?: ReadonlyArray<Link | null>;
  /** Epoch milliseconds; @default now */
  readonly startTimeMs?: number;
}

/** Starts a span; the caller ends it (`endSpan`). */
export function startSpan(name: string, options: StartSpanOptions = {}): Span {
  const parent = remoteContext(options.parent) ?? (options.root === true ? ROOT_CONTEXT : context.active());
  const links = options.links?.filter((link): link is Link => link !== null);
  return tracer().startSpan(
    name,
    {
      kind: options.kind ?? SpanKind.INTERNAL,
      ...(options.attributes === undefined ? {} : { attributes: options.attributes }),
      ...(links === undefined || links.length === 0 ? {} : { links }),
      ...(options.startTimeMs === undefined ? {} : { startTime: options.startTimeMs }),
    },
    parent,
  );
}

/**
 * The traceparent to pass on from `span`: its own when it records, else `fallback()` (tracing
 * is off or the trace is not sampled, so the runtime's own derived ids carry the trace on).
 */
export function traceparentOf(span: Span, fallback: () => string): string {
  if (!span.isRecording()) return fallback();
  const spanContext = span.spanContext();
  return formatTraceparent({
    traceId: spanContext.traceId,
    spanId: spanContext.spanId,
    sampled: (spanContext.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED,
  });
}

/** The traceparent of the active span, when one records; undefined otherwise. */
export function activeTraceparent(): string | undefined {
  const span = trace.getActiveSpan();
  if (span === undefined || !span.isRecording()) return undefined;
  return traceparentOf(span, () => '');
}

/** Ends `span`, marking it failed with `error` when one is given. */
export function endSpan(span: Span, error?: unknown, endTimeMs?: number): void {
  if (error !== undefined) failSpan(span, error);
  span.end(endTimeMs);
}

/** Marks `span` failed: its status and an exception event, with the error's code when it has one. */
export function failSpan(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  const exception = error instanceof Error ? error : new Error(String(error));
  span.recordException(exception);
  span.setStatus({ code: SpanStatusCode.ERROR, message: exception.message.slice(0, 500) });
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string') span.setAttribute('error.type', code);
}

/**
 * Runs `fn` inside a new span, active for everything `fn` awaits; the span ends when `fn`
 * settles, failed when it throws.
 */
export async function inSpan<T>(
  name: string,
  options: StartSpanOptions,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const span = startSpan(name, options);
  try {
    const value = await context.with(trace.setSpan(context.active(), span), () => fn(span));
    span.end();
    return value;
  } catch (error) {
    endSpan(span, error);
    throw error;
  }
}

/** Runs `fn` with `span` active (its children, and the runtime calls it makes, hang under it). */
export function withSpan<T>(span: Span, fn: () => T): T {
  return context.with(trace.setSpan(context.active(), span), fn);
}

/**
 * OpenTelemetry's messaging semantic conventions (v1.27+), as attribute names: the log's
 * produce and consume spans carry them, so a backend shows Meridian's topics like Kafka's.
 */
export const messaging = {
  system: 'messaging.system',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  destination: 'messaging.destination.name',
  partition: 'messaging.destination.partition.id',
  consumerGroup: 'messaging.consumer.group.name',
  batchCount: 'messaging.batch.message_count',
  offset: 'messaging.kafka.offset',
  key: 'messaging.kafka.message.key',
} as const;

/**
 * The span of producing `count` records to `topic` (messaging `send`), a child of `parent`:
 * the records carry its traceparent, so their consumers link back to it. Ended by the caller.
 */
export function producerSpan(topic: string, parent: string | undefined | null, count: number): Span {
  return startSpan(`send ${topic}`, {
    parent,
    kind: SpanKind.PRODUCER,
    attributes: {
      [messaging.system]: 'meridian',
      [messaging.operationType]: 'send',
      [messaging.operationName]: 'send',
      [messaging.destination]: topic,
      ...(count > 1 ? { [messaging.batchCount]: count } : {}),
    },
  });
}
