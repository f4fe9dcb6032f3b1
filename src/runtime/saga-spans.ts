import type { Attributes } from '@opentelemetry/api';
import { endSpan, type Span, startSpan } from '../telemetry/index.ts';

/**
 * The spans of one saga. A saga can last for days, so it holds no span open: its start is one
 * short span (whose traceparent the journal's start entry keeps), and each step, send,
 * compensation and its end are spans of their own, children of that start span, so a trace
 * backend shows them in one trace. A call replayed from the journal makes no span: it ran, and
 * was traced, before the crash.
 */
export class SagaSpans {
  readonly #traceparent: string;
  readonly #attributes: Attributes;

  constructor(traceparent: string, sagaId: string, sagaType: string) {
    this.#traceparent = traceparent;
    this.#attributes = { 'meridian.saga.id': sagaId, 'meridian.saga.type': sagaType };
  }

  /** A span for one call of the saga (`saga.step reserve`), a child of the saga's start. */
  start(name: string, attributes: Attributes = {}): Span {
    return startSpan(name, { parent: this.#traceparent, attributes: { ...this.#attributes, ...attributes } });
  }

  /** One failed attempt of a step or compensation: an event on its span, not a span of its own. */
  attemptFailed(span: Span, attempt: number, error: Error, retryInMs: number | undefined): void {
    if (!span.isRecording()) return;
    span.addEvent(retryInMs === undefined ? 'attempt failed' : 'retry', {
      'meridian.attempt': attempt,
      'exception.message': error.message.slice(0, 500),
      ...(retryInMs === undefined ? {} : { 'meridian.retry.delay_ms': retryInMs }),
    });
  }

  /** The saga reached its end here: a short span with its outcome. */
  ended(outcome: string, reason: string | null, createdAtMs: number | undefined, nowMs: number): void {
    const span = this.start(`saga.end ${String(this.#attributes['meridian.saga.type'])}`, {
      'meridian.saga.outcome': outcome,
      ...(createdAtMs === undefined ? {} : { 'meridian.saga.duration_ms': Math.max(0, nowMs - createdAtMs) }),
      ...(reason === null ? {} : { 'meridian.saga.reason': reason.slice(0, 500) }),
    });
    endSpan(span, outcome === 'failed' ? new Error(reason ?? 'the saga failed') : undefined);
  }
}
