// The markets dataflow: trades keyed by symbol into 5-second event-time tumbling windows.

import type { Sink, TopicSource, WindowResult } from '../../src/stream/index.ts';
import { fromTopic, tumbling } from '../../src/stream/index.ts';
import { decodeTrade, ohlc, type Trade, type WindowStats } from './trade.ts';

export const windowMs = 5000;

export interface WindowsJobOptions {
  readonly topic: string;
  readonly outOfOrdernessMs: number;
  readonly allowedLatenessMs: number;
  /** null for replays and tests: the result then depends on the input alone. */
  readonly idleTimeoutMs: number | null;
  readonly windows: readonly Sink<WindowResult<WindowStats>>[];
  readonly late: Sink<Trade>;
}

/** The 5 s OHLC/VWAP windows per symbol, as a source to open a StreamJob on. */
export function windowsDataflow(options: WindowsJobOptions): TopicSource<Trade> {
  const source = fromTopic<Trade>({
    topic: options.topic,
    decode: decodeTrade,
    outOfOrdernessMs: options.outOfOrdernessMs,
    idleTimeoutMs: options.idleTimeoutMs,
  });
  const results = source
    .keyBy((trade) => trade.symbol)
    .window(tumbling({ sizeMs: windowMs }), {
      allowedLatenessMs: options.allowedLatenessMs,
      late: options.late,
    })
    .aggregate(ohlc);
  for (const sink of options.windows) results.to(sink);
  return source;
}
