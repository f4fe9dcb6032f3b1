// What the two shapes of the markets app share beyond the dataflow and the HTTP API: the cache of
// the latest window per symbol, the topics, and the seeded trade generator. markets.ts runs them
// on one SQLite file; cluster-node.ts on Kafka + PostgreSQL, as one of several nodes.

import { type Cache, createCache, type InvalidationBus, type RedisTier } from '../../src/cache/index.ts';
import { systemClock, systemTimers, type TimerHandle } from '../../src/index.ts';
import type { Log } from '../../src/log/index.ts';
import type { Store } from '../../src/store/index.ts';
import { seededRandom } from '../../src/testing/index.ts';
import { type MarketsTopics, readModels, type WindowView } from './analytics.ts';
import { TradeGenerator } from './generator.ts';
import { generatedReference } from './reference.ts';
import { encodeTrade } from './trade.ts';

/** Partitions of every markets topic. */
export const marketsPartitions = 4;

/** Redis behind the in-process copies: a shared tier, and the bus that tells every node of a write. */
export interface SharedCache {
  readonly l2: RedisTier;
  readonly invalidation: InvalidationBus;
}

/**
 * The latest closed window per symbol: set by the job after each commit (cacheSink), read through
 * from the read model on a miss. With `shared`, a node's write reaches Redis and drops the other
 * nodes' in-process copies, so any node answers with what any node's job committed.
 */
export function latestWindowCache(store: Store, shared?: SharedCache): Cache<WindowView | null> {
  return createCache<WindowView | null>({
    name: 'market-latest',
    ttlMs: 60_000,
    // Bounds how stale a node is after missing an invalidation (its Redis subscriber reconnecting).
    l1: { maxEntries: 10_000, ...(shared === undefined ? {} : { ttlMs: 5000 }) },
    ...(shared === undefined ? {} : { l2: shared.l2, invalidation: shared.invalidation }),
    loader: async (symbol) => {
      const row = await store.read((tx) => tx.entities.get(readModels.latest, symbol));
      return row === null ? null : (row.state as unknown as WindowView);
    },
    isNegative: (value) => value === null,
    negativeTtlMs: 1000,
    // A window's start orders its results: an older window never replaces a newer one.
    versionOf: (value) => value?.startMs,
  });
}

/** Creates the topics that do not exist yet (others, or another node, may have created some). */
export async function createMarketsTopics(
  log: Log,
  names: MarketsTopics,
  retentionMs: number | null,
): Promise<void> {
  const existing = new Set(await log.listTopics());
  for (const topic of Object.values(names)) {
    if (!existing.has(topic)) await log.createTopic(topic, { partitions: marketsPartitions, retentionMs });
  }
}

export interface GeneratorOptions {
  /** Generated trades per second. */
  readonly ratePerSecond: number;
  readonly seed: number;
  readonly symbols: number;
  readonly disorderMs: number;
}

export interface RunningGenerator {
  stop(): void;
}

const generatorTickMs = 100;

/**
 * Appends seeded trades to the trades topic at `ratePerSecond`, after a reference row per
 * generated symbol (valid from the start of time, once per topic) so every window finds its sector.
 */
export async function startGenerator(
  log: Log,
  names: MarketsTopics,
  options: GeneratorOptions,
): Promise<RunningGenerator> {
  let seeded = false;
  for (let partition = 0; partition < marketsPartitions; partition++) {
    if ((await log.offsets(names.reference, partition)).end > 0) seeded = true;
  }
  if (!seeded) {
    const symbols = Array.from({ length: options.symbols }, (_, index) => TradeGenerator.symbolName(index));
    await log.append(names.reference, generatedReference(symbols));
  }
  const generator = new TradeGenerator({
    symbols: options.symbols,
    random: seededRandom(options.seed),
    disorderMs: options.disorderMs,
  });
  let timer: TimerHandle | undefined;
  let stopped = false;
  let carry = 0;
  const tick = () => {
    carry += (options.ratePerSecond * generatorTickMs) / 1000;
    const count = Math.floor(carry);
    carry -= count;
    const trades = generator.next(count, systemClock.now());
    const appended =
      trades.length === 0
        ? Promise.resolve()
        : log.append(names.trades, trades.map(encodeTrade)).then(() => undefined);
    appended.then(
      () => {
        if (!stopped) timer = systemTimers.setTimeout(tick, generatorTickMs);
      },
      (error: unknown) => console.error(`markets generator: ${(error as Error).message}`),
    );
  };
  tick();
  return {
    stop() {
      stopped = true;
      timer?.cancel();
    },
  };
}
