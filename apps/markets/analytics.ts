// The markets dataflow of the live app: per symbol, 5 s windows (count, volume, VWAP, OHLC) into
// a read model and the cache; a 1-minute moving VWAP sliding every 5 s, whose last slice is
// scored against the slices before it (z-score) to raise price anomaly alerts onto a topic.
// Windows and alerts are enriched with the symbol's reference data (sector, tick size) by a join
// with the reference table, as of the window's end. The same dataflow runs on both shapes: one
// SQLite job (markets.ts) or a partitioned job over Kafka + PostgreSQL (cluster-node.ts).

import type { Cache } from '../../src/cache/index.ts';
import { jsonValue } from '../../src/log/index.ts';
import type { Json } from '../../src/store/index.ts';
import {
  aggregator,
  cacheSink,
  callbackSink,
  fromTopic,
  readModelSink,
  sliding,
  type TopicSource,
  topicSink,
  tumbling,
  type WindowResult,
} from '../../src/stream/index.ts';
import { referenceTable, type SymbolInfo } from './reference.ts';
import { decodeTrade, encodeTrade, ohlc, type Trade, type WindowStats } from './trade.ts';

export interface MarketsTopics {
  readonly trades: string;
  readonly late: string;
  readonly alerts: string;
  readonly reference: string;
  readonly invalidReference: string;
  /** Every closed window, as JSON keyed by symbol: what a cluster node's live feed reads. */
  readonly windows: string;
}

export const topics: MarketsTopics = {
  trades: 'market-trades',
  late: 'market-late-trades',
  alerts: 'market-alerts',
  reference: 'market-reference',
  invalidReference: 'market-reference-invalid',
  windows: 'market-closed-windows',
};

/** The topics with `prefix` before each name (several deployments sharing one Kafka cluster). */
export function prefixedTopics(prefix: string): MarketsTopics {
  const entries = Object.entries(topics).map(([role, name]) => [role, `${prefix}${name}`]);
  return Object.fromEntries(entries) as unknown as MarketsTopics;
}

export const readModels = {
  windows: 'market-windows',
  latest: 'market-latest',
  moving: 'market-moving',
  alerts: 'market-alerts',
} as const;
export const windowMs = 5000;
export const movingMs = 60_000;
const slices = movingMs / windowMs;
/** A slice whose VWAP is this many standard deviations from the window's other slices is an anomaly. */
export const anomalyZ = 4;
/** Slices with trades needed before a z-score means anything. */
const minSlices = 6;

/** What the read model, the cache and the live feed hold for one closed 5 s window. */
export interface WindowView extends WindowStats {
  readonly symbol: string;
  readonly startMs: number;
  readonly endMs: number;
  /** From the reference table as of the window's end; null when the symbol had no row then. */
  readonly sector: string | null;
  readonly tickSizeCents: number | null;
}

export interface MovingView {
  readonly symbol: string;
  readonly startMs: number;
  readonly endMs: number;
  /** VWAP over the minute, in dollars, 4 decimals. */
  readonly movingVwap: number;
  /** The last 5 s slice's VWAP against the others' (null until enough slices had trades). */
  readonly z: number | null;
  readonly lastVwap: number | null;
  /** From the reference table as of the window's end; null when the symbol had no row then. */
  readonly sector: string | null;
}

/** Row ids that sort by time within a symbol, so a range of windows is one ordered scan. */
export function windowRowId(symbol: string, startMs: number): string {
  return `${symbol}/${String(startMs).padStart(15, '0')}`;
}

/** Alert row ids that sort by time, then symbol: a time range of alerts is one ordered scan. */
export function alertRowId(endMs: number, symbol: string): string {
  return `${String(endMs).padStart(15, '0')}/${symbol}`;
}

function view(result: WindowResult<WindowStats>, info: SymbolInfo | null): WindowView {
  return {
    symbol: result.key,
    startMs: result.window.startMs,
    endMs: result.window.endMs,
    ...result.value,
    sector: info?.sector ?? null,
    tickSizeCents: info?.tickSizeCents ?? null,
  };
}

/** Per 5 s slice of the minute: [Σ cents × qty, Σ qty]. */
type SliceAcc = number[];

/** The moving minute: per-slice sums, so the result can score the last slice against the rest. */
const movingMinute = aggregator<Trade, SliceAcc, Omit<MovingView, 'symbol' | 'startMs' | 'endMs' | 'sector'>>(
  {
    create: () => new Array<number>(slices * 2).fill(0),
    add(acc, trade, timestampMs) {
      // Slices are aligned to the epoch, so a trade's slice index is the same in every window holding it.
      const slice = Math.floor(timestampMs / windowMs) % slices;
      acc[slice * 2]! += trade.priceCents * trade.qty;
      acc[slice * 2 + 1]! += trade.qty;
      return acc;
    },
    result(acc, window) {
      let notional = 0;
      let volume = 0;
      const lastSlice = Math.floor((window.endMs - 1) / windowMs) % slices;
      const others: number[] = [];
      for (let slice = 0; slice < slices; slice++) {
        notional += acc[slice * 2]!;
        volume += acc[slice * 2 + 1]!;
        if (slice !== lastSlice && acc[slice * 2 + 1]! > 0)
          others.push(acc[slice * 2]! / acc[slice * 2 + 1]! / 100);
      }
      const lastVolume = acc[lastSlice * 2 + 1]!;
      const lastVwap = lastVolume > 0 ? acc[lastSlice * 2]! / lastVolume / 100 : null;
      return {
        movingVwap: volume > 0 ? Math.round((notional / volume) * 100) / 10_000 : 0,
        lastVwap,
        z: zScore(lastVwap, others),
      };
    },
  },
);

function zScore(value: number | null, others: readonly number[]): number | null {
  if (value === null || others.length < minSlices) return null;
  const mean = others.reduce((total, x) => total + x, 0) / others.length;
  const variance = others.reduce((total, x) => total + (x - mean) ** 2, 0) / others.length;
  // A floor on the deviation (a tenth of a cent) keeps a flat price from making every tick an anomaly.
  const deviation = Math.max(Math.sqrt(variance), 0.001);
  return Math.round(((value - mean) / deviation) * 100) / 100;
}

export interface AnalyticsOptions {
  /** @default topics */
  readonly topics?: MarketsTopics;
  readonly latestCache: Cache<WindowView | null>;
  /** Called with each commit's closed windows, after it committed (the embedded live feed). */
  readonly onWindows?: (windows: readonly WindowView[]) => void;
  readonly outOfOrdernessMs: number;
  /** null when each job reads one partition (the cluster shape): nothing to wait for. */
  readonly idleTimeoutMs: number | null;
}

export function marketsDataflow(options: AnalyticsOptions): TopicSource<Trade> {
  const names = options.topics ?? topics;
  const source = fromTopic<Trade>({
    topic: names.trades,
    decode: decodeTrade,
    outOfOrdernessMs: options.outOfOrdernessMs,
    idleTimeoutMs: options.idleTimeoutMs,
  });
  const late = topicSink<Trade>(names.late, encodeTrade);
  const reference = referenceTable(
    names.reference,
    topicSink(names.invalidReference, (record) => ({
      key: record.key,
      value: record.value,
      timestamp: record.timestamp,
    })),
  );
  const bySymbol = source.keyBy((trade) => trade.symbol);
  const windows = bySymbol
    .window(tumbling({ sizeMs: windowMs }), { late })
    .aggregate(ohlc)
    .keyBy((result) => result.key)
    .leftJoin(reference, view);
  windows.to(
    readModelSink({
      type: readModels.windows,
      id: (w) => windowRowId(w.symbol, w.startMs),
      state: (w) => ({ ...w }) as Json,
    }),
  );
  windows.to(
    readModelSink({ type: readModels.latest, id: (w) => w.symbol, state: (w) => ({ ...w }) as Json }),
  );
  windows.to(cacheSink({ cache: options.latestCache, key: (w) => w.symbol, value: (w) => w }));
  windows.to(
    topicSink(names.windows, (w) => ({ key: w.symbol, value: jsonValue(w), timestamp: w.endMs - 1 })),
  );
  if (options.onWindows !== undefined) windows.to(callbackSink('live-feed', options.onWindows));
  const moving = bySymbol
    .window(sliding({ sizeMs: movingMs, slideMs: windowMs }), { late })
    .aggregate(movingMinute)
    .keyBy((r) => r.key)
    .leftJoin(
      reference,
      (r, info): MovingView => ({
        symbol: r.key,
        startMs: r.window.startMs,
        endMs: r.window.endMs,
        ...r.value,
        sector: info?.sector ?? null,
      }),
    );
  moving.to(
    readModelSink({ type: readModels.moving, id: (m) => m.symbol, state: (m) => ({ ...m }) as Json }),
  );
  const alerts = moving.filter((m) => m.z !== null && Math.abs(m.z) >= anomalyZ);
  alerts.to(topicSink(names.alerts, (m) => ({ key: m.symbol, value: jsonValue(m), timestamp: m.endMs - 1 })));
  alerts.to(
    readModelSink({
      type: readModels.alerts,
      id: (m) => alertRowId(m.endMs, m.symbol),
      state: (m) => ({ ...m }) as Json,
    }),
  );
  return source;
}
