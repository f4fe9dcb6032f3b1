// Starts the markets app on the embedded shape: one SQLite file holding the trade topics, the
// read models and the stream job's state; the live analytics job; the HTTP API; and optionally
// the seeded trade generator.

import type { AddressInfo } from 'node:net';
import { createCache } from '../../src/cache/index.ts';
import { systemClock, systemTimers, type TimerHandle } from '../../src/index.ts';
import { SqliteLog } from '../../src/log/index.ts';
import { SqliteDatabase, SqliteStore } from '../../src/store/index.ts';
import { openStreamJob, type StreamJob } from '../../src/stream/index.ts';
import { seededRandom } from '../../src/testing/index.ts';
import { marketsDataflow, readModels, topics, type WindowView } from './analytics.ts';
import { TradeGenerator } from './generator.ts';
import { createMarketsApi } from './http-api.ts';
import { generatedReference } from './reference.ts';
import { encodeTrade } from './trade.ts';

export interface MarketsOptions {
  /** The SQLite file. */
  readonly path: string;
  /** 0 for any free port. */
  readonly port: number;
  /** Generated trades per second; 0 turns the generator off (trades come over HTTP only). */
  readonly ratePerSecond: number;
  readonly seed: number;
  readonly symbols: number;
  readonly disorderMs: number;
  /** A trade partition quiet this long stops holding event time back (ms). @default 5000 */
  readonly idleTimeoutMs?: number;
  readonly onWindows?: (windows: readonly WindowView[]) => void;
}

export interface RunningMarkets {
  readonly url: string;
  readonly job: StreamJob;
  stop(): Promise<void>;
}

const partitions = 4;
const generatorTickMs = 100;

export async function startMarkets(options: MarketsOptions): Promise<RunningMarkets> {
  const database = new SqliteDatabase({ path: options.path });
  const store = new SqliteStore({ database });
  const log = new SqliteLog(database, {});
  for (const topic of Object.values(topics)) {
    await log.createTopic(topic, { partitions, retentionMs: 86_400_000 });
  }
  const latest = createCache<WindowView | null>({
    name: 'market-latest',
    ttlMs: 60_000,
    l1: { maxEntries: 10_000 },
    // Read-through: a symbol not cached yet is read from the read model the job writes.
    loader: async (symbol) => {
      const row = await store.read((tx) => tx.entities.get(readModels.latest, symbol));
      return row === null ? null : (row.state as unknown as WindowView);
    },
    isNegative: (value) => value === null,
    negativeTtlMs: 1000,
    // A window's start orders its results: an older window never replaces a newer one.
    versionOf: (value) => value?.startMs,
  });
  let job: StreamJob | undefined;
  const api = createMarketsApi({
    store,
    log,
    latest,
    jobStatus: async () =>
      job === undefined ? { starting: true } : { ...job.metrics, lag: await job.lag() },
  });
  const source = marketsDataflow({
    latestCache: latest,
    outOfOrdernessMs: options.disorderMs,
    idleTimeoutMs: options.idleTimeoutMs ?? 5000,
    onWindows: (windows) => {
      api.broadcast(windows);
      options.onWindows?.(windows);
    },
  });
  // The job's name changed when it began to join the reference table: a job's committed state
  // belongs to one dataflow, and the earlier one's had no table.
  job = await openStreamJob({
    name: 'markets-enriched',
    source,
    store,
    log,
    maxRecordsPerTransaction: 20_000,
  });
  // A job that fails (a commit refused, a record it cannot decode) stops; the API keeps serving what committed.
  const running = job.start().catch((error: unknown) => {
    console.error(`markets: the analytics job stopped: ${(error as Error).message}`);
  });
  const generator = new TradeGenerator({
    symbols: options.symbols,
    random: seededRandom(options.seed),
    disorderMs: options.disorderMs,
  });
  let timer: TimerHandle | undefined;
  let carry = 0;
  const tick = () => {
    carry += (options.ratePerSecond * generatorTickMs) / 1000;
    const count = Math.floor(carry);
    carry -= count;
    const trades = generator.next(count, systemClock.now());
    const appended =
      trades.length === 0
        ? Promise.resolve()
        : log.append(topics.trades, trades.map(encodeTrade)).then(() => undefined);
    appended.then(
      () => {
        timer = systemTimers.setTimeout(tick, generatorTickMs);
      },
      (error: unknown) => console.error(`markets generator: ${(error as Error).message}`),
    );
  };
  if (options.ratePerSecond > 0) {
    // Reference rows for the generated symbols, once: valid from the start of time, so every
    // window and alert finds its sector.
    const reference = await log.offsets(topics.reference, 0);
    if (reference.end === 0) {
      const symbols = Array.from({ length: options.symbols }, (_, index) => TradeGenerator.symbolName(index));
      await log.append(topics.reference, generatedReference(symbols));
    }
    tick();
  }
  await new Promise<void>((resolve) => api.server.listen(options.port, '127.0.0.1', resolve));
  const port = (api.server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    job: job as StreamJob,
    async stop() {
      timer?.cancel();
      await api.close();
      await job.stop();
      await running;
      latest.close();
      await log.close();
      await store.close();
      database.close();
    },
  };
}
