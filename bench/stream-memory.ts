/**
 * The stream benchmark's memory run (`npm run bench:stream -- --memory-minutes 10`): the markets
 * windows job live on the embedded shape for that long, fed by the seeded generator at a steady
 * rate in real time (500 symbols, 2 s disorder), the topics under a 60 s age retention and the
 * read model keeping the latest window per symbol, so everything the run keeps is bounded and
 * RSS should be flat. Samples RSS (and its anonymous and file-backed parts, from
 * /proc/self/status), V8's heap, Buffers outside it, open windows and state size every 10 s;
 * prints one line per sample and a summary line with the RSS slope after a 60 s warm-up and over
 * the run's last half, and whether memory is flat: the last half's RSS trend, over that half, moves
 * it by at most 5 % of its mean.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapSpaceStatistics } from 'node:v8';
import { TradeGenerator } from '../apps/markets/generator.ts';
import { encodeTrade } from '../apps/markets/trade.ts';
import { windowsDataflow } from '../apps/markets/windows-job.ts';
import { SqliteLog } from '../src/log/index.ts';
import { SqliteDatabase, SqliteStore } from '../src/store/index.ts';
import { openStreamJob, readModelSink, topicSink } from '../src/stream/index.ts';
import { seededRandom } from '../src/testing/index.ts';

const sampleEveryMs = 10_000;
const warmUpMs = 60_000;
const feedTickMs = 100;

interface Sample {
  readonly atMs: number;
  readonly rssMb: number;
  /** RssAnon: malloc's and V8's memory (SQLite's page caches among it). */
  readonly anonMb: number;
  /** RssFile + RssShmem: mapped files (the WAL index, shared libraries). */
  readonly fileMb: number;
  readonly heapMb: number;
  readonly heapTotalMb: number;
  /** Memory of Buffers and other objects outside V8's heap that V8 knows of. */
  readonly externalMb: number;
  readonly openWindows: number;
  readonly stateKb: number;
  readonly recordsIn: number;
}

/** Least-squares slope of y over x, per hour of x in ms. */
function slopePerHour(points: ReadonlyArray<[number, number]>): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((t, [x]) => t + x, 0) / n;
  const my = points.reduce((t, [, y]) => t + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 3_600_000;
}

/** V8's spaces (reserved MB) by short name: where heapTotal goes. */
function spaces(): string {
  return getHeapSpaceStatistics()
    .map((space) => `${space.space_name.replace(/_space$/, '')}=${(space.space_size / 1_048_576).toFixed(0)}`)
    .join(' ');
}

/** RssAnon and RssFile + RssShmem in MB (0 where /proc is not there). */
function residentParts(): { anonMb: number; fileMb: number } {
  let status = '';
  try {
    status = readFileSync('/proc/self/status', 'utf8');
  } catch {
    return { anonMb: 0, fileMb: 0 };
  }
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { anonMb: kb('RssAnon') / 1024, fileMb: (kb('RssFile') + kb('RssShmem')) / 1024 };
}

/** The flatness verdict: RSS's trend over the last half of the samples, and how far it moves RSS across that half. */
export function lastHalfTrend(samples: ReadonlyArray<{ atMs: number; rssMb: number }>): {
  slopeMbPerHour: number;
  driftPercent: number;
  flat: boolean;
} {
  const half = samples.slice(Math.floor(samples.length / 2));
  if (half.length < 2) return { slopeMbPerHour: 0, driftPercent: 0, flat: true };
  const slope = slopePerHour(half.map((s) => [s.atMs, s.rssMb]));
  const spanHours = (half[half.length - 1]!.atMs - half[0]!.atMs) / 3_600_000;
  const mean = half.reduce((t, s) => t + s.rssMb, 0) / half.length;
  const driftPercent = ((slope * spanHours) / mean) * 100;
  return { slopeMbPerHour: slope, driftPercent, flat: Math.abs(driftPercent) <= 5 };
}

async function feed(log: SqliteLog, generator: TradeGenerator, ratePerSecond: number, untilMs: number) {
  let carry = 0;
  while (Date.now() < untilMs) {
    carry += (ratePerSecond * feedTickMs) / 1000;
    const count = Math.floor(carry);
    carry -= count;
    if (count > 0) await log.append('trades', generator.next(count, Date.now()).map(encodeTrade));
    await new Promise((resolve) => setTimeout(resolve, feedTickMs));
  }
}

/** `pageCacheMiB`: SQLite's page cache per connection (SqliteDatabase's option; its default when undefined). */
export async function memoryRun(
  minutes: number,
  ratePerSecond: number,
  pageCacheMiB?: number,
): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'meridian-bench-stream-memory-'));
  const database = new SqliteDatabase({
    path: join(scratch, 'memory.db'),
    integrityCheck: 'off',
    ...(pageCacheMiB === undefined ? {} : { pageCacheMiB }),
  });
  const store = new SqliteStore({ database });
  const log = new SqliteLog(database, { retentionCheckIntervalMs: 10_000 });
  try {
    for (const topic of ['trades', 'windows', 'late-trades'])
      await log.createTopic(topic, { partitions: 4, retentionMs: 60_000 });
    const source = windowsDataflow({
      topic: 'trades',
      outOfOrdernessMs: 2000,
      allowedLatenessMs: 0,
      idleTimeoutMs: 5000,
      windows: [
        readModelSink({ type: 'bench-latest', id: (r) => r.key, state: (r) => ({ ...r.value }) }),
        topicSink('windows', (r) => ({ key: r.key, value: null, timestamp: r.window.endMs - 1 })),
      ],
      late: topicSink('late-trades', encodeTrade),
    });
    const job = await openStreamJob({ name: 'memory', source, store, log, maxRecordsPerTransaction: 20_000 });
    const running = job.start();
    const startMs = Date.now();
    const endMs = startMs + minutes * 60_000;
    const generator = new TradeGenerator({ symbols: 500, random: seededRandom(42), disorderMs: 2000 });
    const feeding = feed(log, generator, ratePerSecond, endMs);
    const samples: Sample[] = [];
    while (Date.now() < endMs) {
      await new Promise((resolve) => setTimeout(resolve, sampleEveryMs));
      const memory = process.memoryUsage();
      const metrics = job.metrics;
      const sample: Sample = {
        atMs: Date.now() - startMs,
        rssMb: memory.rss / 1_048_576,
        ...residentParts(),
        heapMb: memory.heapUsed / 1_048_576,
        heapTotalMb: memory.heapTotal / 1_048_576,
        externalMb: memory.external / 1_048_576,
        openWindows: metrics.openWindows,
        stateKb: metrics.stateBytes / 1024,
        recordsIn: metrics.recordsIn,
      };
      samples.push(sample);
      console.log(
        `t=${Math.round(sample.atMs / 1000)}s rss=${sample.rssMb.toFixed(0)}MB (anon ${sample.anonMb.toFixed(0)} file ${sample.fileMb.toFixed(0)}) heap=${sample.heapMb.toFixed(0)}/${sample.heapTotalMb.toFixed(0)}MB external=${sample.externalMb.toFixed(0)}MB open=${sample.openWindows} state=${sample.stateKb.toFixed(0)}KB trades=${sample.recordsIn} lag=${(await job.lag()).reduce((t, n) => t + n, 0)} | ${spaces()}`,
      );
    }
    await feeding;
    await job.stop();
    await running;
    const steady = samples.filter((s) => s.atMs >= warmUpMs);
    const rss = steady.map((s) => s.rssMb);
    const trend = lastHalfTrend(samples);
    console.log(
      [
        `stream memory run: ${minutes} min at ${ratePerSecond} trades/s offered, ${job.metrics.recordsIn} trades processed, 500 symbols, disorder 2000 ms`,
        `RSS after ${warmUpMs / 1000} s warm-up ${rss[0]?.toFixed(0)} MB, at the end ${rss[rss.length - 1]?.toFixed(0)} MB, min ${Math.min(...rss).toFixed(0)} max ${Math.max(...rss).toFixed(0)} MB, slope ${slopePerHour(steady.map((s) => [s.atMs, s.rssMb])).toFixed(1)} MB/h`,
        `last half: RSS slope ${trend.slopeMbPerHour.toFixed(1)} MB/h, ${trend.driftPercent.toFixed(1)} % over the half: ${trend.flat ? 'flat' : 'NOT flat'} (±5 %)`,
        `anon ${steady[0]?.anonMb.toFixed(0)} → ${steady[steady.length - 1]?.anonMb.toFixed(0)} MB, file ${steady[0]?.fileMb.toFixed(0)} → ${steady[steady.length - 1]?.fileMb.toFixed(0)} MB, external ${steady[0]?.externalMb.toFixed(0)} → ${steady[steady.length - 1]?.externalMb.toFixed(0)} MB`,
        `heap slope ${slopePerHour(steady.map((s) => [s.atMs, s.heapMb])).toFixed(1)} MB/h, open windows ${Math.min(...steady.map((s) => s.openWindows))}-${Math.max(...steady.map((s) => s.openWindows))}`,
        `page cache ${pageCacheMiB ?? 'default'} MiB, node flags '${process.execArgv.join(' ')}', MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX ?? '(glibc default)'}`,
        `load ${loadavg()
          .map((l) => l.toFixed(1))
          .join('/')}`,
      ].join(' | '),
    );
  } finally {
    await log.close();
    await store.close();
    database.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}
