// Starts the markets app on the embedded shape: one SQLite file holding the trade topics, the
// read models and the stream job's state; the live analytics job; the HTTP API; and optionally
// the seeded trade generator.

import type { AuthOptions } from '../../src/http/index.ts';
import { SqliteLog } from '../../src/log/index.ts';
import { SqliteDatabase, SqliteStore } from '../../src/store/index.ts';
import { openStreamJob, type StreamJob } from '../../src/stream/index.ts';
import { marketsDataflow, topics, type WindowView } from './analytics.ts';
import { createMarketsTopics, latestWindowCache, type RunningGenerator, startGenerator } from './app.ts';
import { createMarketsApi } from './http-api.ts';

export interface MarketsOptions {
  /** The SQLite file. */
  readonly path: string;
  /** 0 for any free port. */
  readonly port: number;
  /**
   * Who may call the HTTP API (docs/security.md); `false` turns authentication off (every caller
   * an operator), for local experiments only. Required: no default is safe.
   */
  readonly auth: AuthOptions | false;
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

export async function startMarkets(options: MarketsOptions): Promise<RunningMarkets> {
  const database = new SqliteDatabase({ path: options.path });
  const store = new SqliteStore({ database });
  const log = new SqliteLog(database, {});
  await createMarketsTopics(log, topics, 86_400_000);
  const latest = latestWindowCache(store);
  let job: StreamJob | undefined;
  const api = await createMarketsApi({
    auth: options.auth,
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
  let generator: RunningGenerator | undefined;
  if (options.ratePerSecond > 0) generator = await startGenerator(log, topics, options);
  const url = await api.listen(options.port);
  return {
    url,
    job: job as StreamJob,
    async stop() {
      generator?.stop();
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
