import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

export type { ReadableSpan };

/** Spans recorded in memory, for tests: what an exporter would have sent. */
export interface RecordedSpans {
  /** Every span ended since the start (or the last `reset`). */
  spans(): ReadableSpan[];
  /** The ended spans whose name starts with `prefix`. */
  named(prefix: string): ReadableSpan[];
  reset(): void;
  /** Unregisters the provider: spans are no-ops again. */
  shutdown(): Promise<void>;
}

/**
 * Registers an OpenTelemetry tracer provider that keeps every span in memory (OpenTelemetry's
 * own InMemorySpanExporter, exported synchronously as each span ends). One at a time per process.
 */
export function recordSpansInMemory(): RecordedSpans {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  return {
    spans: () => exporter.getFinishedSpans(),
    named: (prefix) => exporter.getFinishedSpans().filter((span) => span.name.startsWith(prefix)),
    reset: () => exporter.reset(),
    async shutdown() {
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}
