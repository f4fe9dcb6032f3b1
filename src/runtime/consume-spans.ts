import type { LogRecord } from '../log/types.ts';
import {
  endSpan,
  linkTo,
  messaging,
  type Span,
  SpanKind,
  startSpan,
  traceparentHeader,
  traceparentOf,
} from '../telemetry/index.ts';

/** Links one batch span carries at most (the SDK's default link count limit). */
const maxLinksPerBatch = 128;

/**
 * The spans of one consumed batch, by OpenTelemetry's messaging conventions: a `process` span
 * for the batch, linked to each record's producer span (a batch has many parents, so links, not
 * a parent), and a `process` span per record, a child of its producer, so the trace of the
 * request that wrote a record goes on into the handler that consumed it. Made before the
 * batch's transaction and ended after it: a transaction that runs its units again (one threw)
 * makes no second set.
 */
export class ConsumeSpans {
  readonly #batch: Span;
  readonly #records = new Map<LogRecord, Span>();

  constructor(subscription: string, group: string, records: readonly LogRecord[]) {
    const topic = records[0]?.topic ?? '';
    const common = {
      [messaging.system]: 'meridian',
      [messaging.operationType]: 'process',
      [messaging.operationName]: 'process',
      [messaging.destination]: topic,
      [messaging.consumerGroup]: group,
      'meridian.subscription': subscription,
    };
    this.#batch = startSpan(`process ${topic}`, {
      root: true,
      kind: SpanKind.CONSUMER,
      attributes: { ...common, [messaging.batchCount]: records.length },
      links: records.slice(0, maxLinksPerBatch).map((record) => linkTo(record.headers[traceparentHeader])),
    });
    if (!this.#batch.isRecording()) return;
    for (const record of records) {
      const span = startSpan(`process ${record.topic}`, {
        parent: record.headers[traceparentHeader] ?? null,
        root: true,
        kind: SpanKind.CONSUMER,
        attributes: {
          ...common,
          [messaging.partition]: String(record.partition),
          [messaging.offset]: record.offset,
        },
        links: [linkTo(traceparentOf(this.#batch, () => ''))],
      });
      this.#records.set(record, span);
    }
  }

  /** The traceparent a record's handler passes on: its process span's, or `fallback()` when tracing is off. */
  traceparentOf(record: LogRecord, fallback: () => string): string {
    const span = this.#records.get(record);
    return span === undefined ? fallback() : traceparentOf(span, fallback);
  }

  /** Ends every span; the records in `failed` (to retry) and the whole batch on `error` are marked failed. */
  end(failed: ReadonlySet<LogRecord>, error?: unknown): void {
    for (const [record, span] of this.#records) {
      endSpan(
        span,
        error ?? (failed.has(record) ? new Error('the handler failed; the record is retried') : undefined),
      );
    }
    endSpan(this.#batch, error);
  }
}
