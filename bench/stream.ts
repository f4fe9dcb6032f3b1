/**
 * Stream benchmark: the markets windows (trades keyed by symbol, 5 s event-time tumbling windows,
 * count, volume, VWAP, OHLC, late trades to a side output) measured beside the Flink 2.3 job that
 * does the same work, in the same run, on the same trade file.
 *
 *   npm run bench:stream [-- --trades 2000000 --rounds 3 --flink on|off]
 *   npm run bench:stream -- --memory-minutes 10 [--rate 20000] [--node-flags "FLAGS"] [--page-cache-mib N]
 *     (RSS over a live run, in a child process with docs/deployment.md's memory settings: V8's
 *     young generation fixed at 16 MiB per semi-space, MALLOC_ARENA_MAX=2; `--node-flags ''` and
 *     MALLOC_ARENA_MAX= (empty) run Node's and glibc's defaults. See stream-memory.ts.)
 *
 * Meridian: the trades are appended to a 1-partition topic of the embedded SQLite log first (not
 * timed: the figure is "from the log"), then one stream job reads them through the windows and
 * commits, exactly-once, window state + input offsets + results (a read-model row per window and
 * a record on a results topic) + late trades (a topic) in SQLite transactions, until the input is
 * done. trades/s = trades / that wall time. Latency: from the moment a window's end passed the
 * watermark (it fired) to the commit that made its result queryable, p50 and p99.
 *
 * Flink: `java -jar flink-trades-bench.jar --checkpointing 1s` (exactly-once checkpoints), whole
 * process wall time (as its README measures it) and its execute time without JVM start-up.
 * The jar is built from ../shared/bench/flink (MERIDIAN_FLINK_DIR) in a scratch copy with Maven,
 * or taken from MERIDIAN_FLINK_JAR. Rounds interleave the two engines; medians are printed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import hdr from 'hdr-histogram-js';
import { parseTradeLine } from '../apps/markets/csv.ts';
import { encodeTrade } from '../apps/markets/trade.ts';
import { windowsDataflow } from '../apps/markets/windows-job.ts';
import { jsonValue, SqliteLog } from '../src/log/index.ts';
import { SqliteDatabase, SqliteStore } from '../src/store/index.ts';
import { openStreamJob, readModelSink, topicSink } from '../src/stream/index.ts';
import { median } from './stats.ts';
import { memoryRun } from './stream-memory.ts';

const { values: args } = parseArgs({
  options: {
    trades: { type: 'string', default: '2000000' },
    rounds: { type: 'string', default: '3' },
    flink: { type: 'string', default: 'on' },
    'memory-minutes': { type: 'string' },
    rate: { type: 'string', default: '20000' },
    'node-flags': { type: 'string', default: '--min-semi-space-size=16 --max-semi-space-size=16' },
    'page-cache-mib': { type: 'string' },
  },
});
if (args['memory-minutes'] !== undefined) {
  if (process.env.MERIDIAN_BENCH_STREAM_MEMORY_CHILD === undefined) {
    // Node flags and malloc's arenas are set when a process starts: the run is a child with them.
    const mallocArenaMax = process.env.MALLOC_ARENA_MAX ?? '2';
    const child = spawnSync(
      process.execPath,
      [
        ...args['node-flags'].split(' ').filter((flag) => flag !== ''),
        import.meta.filename,
        ...process.argv.slice(2),
      ],
      {
        stdio: 'inherit',
        env: {
          ...process.env,
          MERIDIAN_BENCH_STREAM_MEMORY_CHILD: '1',
          ...(mallocArenaMax === '' ? {} : { MALLOC_ARENA_MAX: mallocArenaMax }),
        },
      },
    );
    process.exit(child.status ?? 1);
  }
  const pageCacheMiB = args['page-cache-mib'] === undefined ? undefined : Number(args['page-cache-mib']);
  await memoryRun(Number(args['memory-minutes']), Number(args.rate), pageCacheMiB);
  process.exit(0);
}
const trades = Number(args.trades);
const rounds = Number(args.rounds);
const root = resolve(import.meta.dirname, '..');
const flinkDir = process.env.MERIDIAN_FLINK_DIR ?? resolve(root, '../shared/bench/flink');
const scratch = mkdtempSync(join(tmpdir(), 'meridian-bench-stream-'));
const input = join(scratch, 'trades.csv');

function buildFlinkJar(): string {
  if (process.env.MERIDIAN_FLINK_JAR !== undefined) return process.env.MERIDIAN_FLINK_JAR;
  const build = join(scratch, 'flink');
  cpSync(flinkDir, build, { recursive: true });
  execFileSync('chmod', ['-R', 'u+w', build]);
  const result = spawnSync('mvn', ['-q', '-B', 'package', '-DskipTests'], { cwd: build, encoding: 'utf8' });
  if (result.status !== 0)
    throw new Error(`mvn package failed (${result.status}): ${(result.stdout + result.stderr).slice(-2000)}`);
  return join(build, 'target', 'flink-trades-bench.jar');
}

interface Run {
  readonly tradesPerSecond: number;
  /** Trades per second of CPU time (user + system, all threads): less sensitive to a loaded machine. */
  readonly tradesPerCpuSecond: number;
  readonly rows: number;
  readonly late: number;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
  readonly executeTradesPerSecond?: number;
  readonly rssMb?: number;
}

async function loadTrades(log: SqliteLog): Promise<number> {
  const lines = readFileSync(input, 'utf8').split('\n');
  let batch = [];
  let loaded = 0;
  for (let index = 1; index < lines.length; index++) {
    if (lines[index]!.length === 0) continue;
    batch.push(encodeTrade(parseTradeLine(lines[index]!, index + 1)));
    if (batch.length === 5000) {
      await log.append('trades', batch);
      loaded += batch.length;
      batch = [];
    }
  }
  if (batch.length > 0) await log.append('trades', batch);
  return loaded + batch.length;
}

async function meridianRound(round: number): Promise<Run> {
  const database = new SqliteDatabase({ path: join(scratch, `meridian-${round}.db`), integrityCheck: 'off' });
  const store = new SqliteStore({ database });
  const log = new SqliteLog(database, { retentionCheckIntervalMs: null });
  try {
    for (const topic of ['trades', 'windows', 'late-trades'])
      await log.createTopic(topic, { partitions: 1, retentionMs: null });
    const loaded = await loadTrades(log);
    const latency = hdr.build({
      lowestDiscernibleValue: 1,
      highestTrackableValue: 600_000,
      numberOfSignificantValueDigits: 3,
    });
    let rows = 0;
    const source = windowsDataflow({
      topic: 'trades',
      outOfOrdernessMs: 2000,
      allowedLatenessMs: 0,
      idleTimeoutMs: null,
      windows: [
        readModelSink({
          type: 'bench-windows',
          id: (r) => `${r.key}/${r.window.startMs}`,
          state: (r) => ({ ...r.value }),
        }),
        topicSink('windows', (r) => {
          rows++;
          return { key: r.key, value: jsonValue(r.value), timestamp: r.window.endMs - 1 };
        }),
      ],
      late: topicSink('late-trades', encodeTrade),
    });
    const job = await openStreamJob({
      name: 'bench',
      source,
      store,
      log,
      maxRecordsPerRead: 2000,
      maxRecordsPerTransaction: 50_000,
      onCommit: (event) => {
        for (const firedAtMs of event.firedAtMs)
          latency.recordValue(Math.max(1, Math.round(event.committedAtMs - firedAtMs)));
      },
    });
    const startMs = performance.now();
    const cpuBefore = process.cpuUsage();
    await job.runToEnd({ finish: true });
    const seconds = (performance.now() - startMs) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    return {
      tradesPerSecond: loaded / seconds,
      tradesPerCpuSecond: loaded / cpuSeconds,
      rows,
      late: job.metrics.lateRecords,
      p50Ms: latency.getValueAtPercentile(50),
      p99Ms: latency.getValueAtPercentile(99),
      rssMb: process.memoryUsage().rss / 1_048_576,
    };
  } finally {
    await log.close();
    await store.close();
    database.close();
    rmSync(join(scratch, `meridian-${round}.db`), { force: true });
  }
}

function flinkRound(jar: string, round: number): Run {
  const startMs = performance.now();
  const result = spawnSync(
    'java',
    [
      '-Xms2g',
      '-Xmx2g',
      '-jar',
      jar,
      '--input',
      input,
      '--out-dir',
      join(scratch, `flink-${round}`),
      '--parallelism',
      '1',
      '--checkpointing',
      '1s',
      '--disorder-ms',
      '2000',
    ],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  const wallSeconds = (performance.now() - startMs) / 1000;
  const line = result.stdout.split('\n').find((l) => l.startsWith('RESULT'));
  if (result.status !== 0 || line === undefined)
    throw new Error(`Flink job failed (${result.status}): ${(result.stderr || result.stdout).slice(-2000)}`);
  const field = (name: string) => Number(new RegExp(`\\b${name}=(\\d+)`).exec(line)?.[1]);
  return {
    tradesPerSecond: trades / wallSeconds,
    tradesPerCpuSecond: trades / (field('jvm_cpu_ms') / 1000),
    executeTradesPerSecond: trades / (field('execute_ms') / 1000),
    rows: field('rows'),
    late: field('late'),
  };
}

const k = (n: number) => `${(n / 1000).toFixed(0)}k`;

try {
  execFileSync(
    process.execPath,
    [
      join(flinkDir, 'gen-trades.mjs'),
      '--seed',
      '42',
      '--trades',
      String(trades),
      '--symbols',
      '500',
      '--rate',
      '50000',
      '--disorder-ms',
      '2000',
      '--out',
      input,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  let jar: string | undefined;
  let flinkProblem = '';
  if (args.flink === 'on') {
    try {
      jar = buildFlinkJar();
      if (!existsSync(jar)) throw new Error(`no jar at ${jar}`);
    } catch (error) {
      flinkProblem = (error as Error).message;
    }
  }
  const meridian: Run[] = [];
  const flink: Run[] = [];
  for (let round = 0; round < rounds; round++) {
    meridian.push(await meridianRound(round));
    if (jar !== undefined) flink.push(flinkRound(jar, round));
  }
  const m = meridian;
  const parts = [
    `stream markets-windows trades=${trades} symbols=500 disorder=2000ms rounds=${rounds}`,
    `meridian ${k(median(m.map((r) => r.tradesPerSecond)))}/s (${m.map((r) => k(r.tradesPerSecond)).join(' ')}), ${k(median(m.map((r) => r.tradesPerCpuSecond)))}/cpu-s`,
    `latency p50 ${median(m.map((r) => r.p50Ms!))}ms p99 ${median(m.map((r) => r.p99Ms!))}ms`,
    `rows ${m[0]!.rows} late ${m[0]!.late} rss ${Math.round(Math.max(...m.map((r) => r.rssMb!)))}MB`,
    flink.length > 0
      ? `flink ${k(median(flink.map((r) => r.tradesPerSecond)))}/s wall (${flink.map((r) => k(r.tradesPerSecond)).join(' ')}), ${k(median(flink.map((r) => r.executeTradesPerSecond!)))}/s execute, ${k(median(flink.map((r) => r.tradesPerCpuSecond)))}/cpu-s, rows ${flink[0]!.rows} late ${flink[0]!.late}`
      : `flink not run${flinkProblem === '' ? '' : `: ${flinkProblem.slice(0, 300)}`}`,
    `load ${loadavg()
      .map((l) => l.toFixed(1))
      .join('/')}`,
  ];
  console.log(parts.join(' | '));
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
