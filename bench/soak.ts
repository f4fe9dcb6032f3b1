/**
 * Soak: `npm run bench:soak -- --rate R --duration S`. The commerce system (bench/soak-server.ts,
 * a child process: the embedded shape with a short retention everywhere; the simulated payment
 * gateway in another, `meridian payments`) under `meridian load`'s
 * generator (in this process) at a fixed rate for S seconds after a warm-up, sampling every
 * `--sample-s` seconds the server's resident memory and V8 heap, the database files' size on
 * disk, and the latency to terminal of the orders that ended in the window. Prints one line: the
 * slope of each (least squares, per hour) over the steady part of the run, and the issue's three
 * checks — memory within ±10 % of its value after warm-up (the median of the first minute), the
 * database flat once retention reached its steady state, p99 at the end within 1.5× of the start.
 *
 * Options: --rate N (default 500), --duration S (default 600, at most 3600), --warmup S (default
 * twice the retention period plus 20: retention's steady state), --retention-s S (default 60: sagas, journals, keys and topics), --sample-s S (default 10),
 * --skus N (default 100), --samples FILE (CSV of every sample), --plot FILE (SVG of the samples),
 * --gc (a full garbage collection in the server before each sample: the heap is then what it
 * retains, and a leak shows as its slope), --server-flags "FLAGS" (Node flags of the server;
 * default the fixed young generation below; '' for Node's defaults), --allocator glibc|jemalloc
 * (the server's malloc; default glibc). MALLOC_ARENA_MAX in the environment overrides the
 * server's (default 2; empty for glibc's default).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { build, type Histogram } from 'hdr-histogram-js';
import { LoadGenerator } from '../apps/commerce/cli/load-generator.ts';
import { parseLoadOptions } from '../apps/commerce/cli/load-options.ts';
import { integer, option } from './options.ts';
import { median } from './stats.ts';

const root = resolve(import.meta.dirname, '..');

const rate = integer('rate', 500, 1, 100_000);
const duration = integer('duration', 600, 10, 3600);

const retentionSeconds = integer('retention-s', 60, 1, 86_400);
/**
 * Until retention's steady state by default: until then the database grows, and with it what
 * SQLite's page caches hold and so the resident memory, by design; measured from there, a
 * drift of the memory is what the run itself adds.
 */
const warmup = integer('warmup', 2 * (retentionSeconds + 10), 0, 7200);
const sampleSeconds = integer('sample-s', 10, 1, 600);
const skus = integer('skus', 100, 1, 100_000);
const samplesFile = option('samples', '');
const plotFile = option('plot', '');
/**
 * How the server's memory is bounded (docs/deployment.md, "Memory"): V8's young generation at a
 * fixed size instead of one that grows under load and shrinks when idle, V8's old generation
 * capped at 1 GiB (which also caps how far it lets the heap grow past what it keeps between two
 * full collections: 1.6× instead of 4×), and glibc's malloc with 2 arenas instead of up to 8 per
 * core, each keeping its own freed memory. `--server-flags ''` and `MALLOC_ARENA_MAX=` (empty) in
 * the environment run Node's defaults.
 */
const serverFlags = option(
  'server-flags',
  '--min-semi-space-size=16 --max-semi-space-size=16 --max-old-space-size=1024',
)
  .split(' ')
  .filter((flag) => flag !== '');
const mallocArenaMax = process.env.MALLOC_ARENA_MAX ?? '2';
/**
 * `--allocator jemalloc` runs the server with jemalloc (Debian's libjemalloc2) preloaded in
 * place of glibc's malloc (docs/deployment.md, "Memory"); `glibc` (the default) with glibc's.
 */
const allocator = option('allocator', 'glibc');
if (allocator !== 'glibc' && allocator !== 'jemalloc')
  throw new RangeError(`--allocator must be glibc or jemalloc: current value is ${allocator.slice(0, 40)}`);
const jemallocPath = allocator === 'jemalloc' ? findJemalloc() : undefined;

/** Where the dynamic linker finds libjemalloc.so.2; an error naming the package when it is not installed. */
function findJemalloc(): string {
  const listing = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' }).stdout ?? '';
  const path = /libjemalloc\.so\.2 .*=> (\S+)/.exec(listing)?.[1];
  if (path === undefined)
    throw new Error('--allocator jemalloc needs libjemalloc.so.2: apt-get install -y libjemalloc2');
  return path;
}
/** `--gc`: the server runs a full garbage collection before each sample, so the heap sampled is what it retains. */
const collectBeforeSample = process.argv.includes('--gc');

interface ServerSample {
  atMs: number;
  rssBytes: number;
  heapUsedBytes: number;
  /** V8's heap as allocated from the system (used or not). */
  heapTotalBytes: number;
  /** Memory outside V8's heap that JavaScript objects hold (Buffers, ArrayBuffers). */
  externalBytes: number;
  /** Of that, ArrayBuffers and Buffers. */
  arrayBuffersBytes: number;
  /** Resident memory that is anonymous (V8's and malloc's heaps, stacks) and file-backed (code, mapped files). */
  anonymousBytes: number;
  fileBackedBytes: number;
  databaseBytes: number;
  walBytes: number;
  freeBytes: number;
  /** Bytes per kind of data at the server's last storage sample. */
  kinds: Record<string, number>;
  removedSagas: number;
  removedKeys: number;
  removedEntities: number;
  /** Since the previous sample: the server's longest event-loop delay, V8's longest pause and their sum. */
  loopDelayMaxMs: number;
  gcPauseMaxMs: number;
  gcPauseTotalMs: number;
  /** Of those pauses, full (mark-compact) collections. */
  majorGcs: number;
}

const kindColumns = ['journals', 'sagas', 'entities', 'log', 'idempotency_keys'] as const;

interface Sample extends ServerSample {
  /** Seconds since the measured run began (negative during the warm-up). */
  t: number;
  p50Ms: number;
  p99Ms: number;
  ended: number;
  /** The generator's (this process's) longest event-loop delay in the window, ms. */
  generatorLoopDelayMaxMs: number;
  /** Share of the window in which some task on the machine waited for a CPU, or for I/O (Linux's PSI), %. */
  cpuPressurePct: number;
  ioPressurePct: number;
}

/** How long the simulated payment gateway remembers a charge: far past an order's end, well short of the run. */
const paymentsForgetAfterS = 300;

/** The payment gateway's credential, shared by the gateway process and the server that charges through it. */
const paymentsKey = randomBytes(32).toString('base64url');

/** `meridian payments` in a process of its own (its in-memory ledger is the provider's, not Meridian's). */
async function startPayments(dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [
      join(root, 'apps/commerce/cli/main.ts'),
      'payments',
      '--port',
      '0',
      '--data-dir',
      join(dataDir, 'payments'),
      // The provider's memory bounded as a real one's is (idempotency keys expire): kept whole,
      // its ledger grew ~0.5 MB/s, and its full collections of a heap of most of a gigabyte
      // stalled the charges and so the orders (docs/benchmarks.md, "Soak", 2026-12-07 20:06).
      '--forget-after-s',
      String(paymentsForgetAfterS),
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, PORT: '', MERIDIAN_PAYMENTS_API_KEY: paymentsKey },
    },
  );
  let output = '';
  const url = await new Promise<string>((done, fail) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /Payment gateway listening on (http:\/\/\S+)/.exec(output);
      if (match !== null) done(match[1]!);
    });
    child.once('exit', (code) => fail(new Error(`meridian payments exited (${code}) before listening`)));
  });
  child.stdout!.resume();
  return { child, url };
}

async function startServer(dataDir: string, paymentUrl: string, onSample: (sample: ServerSample) => void) {
  const child = spawn(
    process.execPath,
    [
      ...serverFlags,
      ...(collectBeforeSample ? ['--expose-gc'] : []),
      join(root, 'bench/soak-server.ts'),
      '--payment-url',
      paymentUrl,
      '--data-dir',
      join(dataDir, 'server'),
      '--retention-s',
      String(retentionSeconds),
      '--sample-s',
      String(sampleSeconds),
    ],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: {
        ...process.env,
        MERIDIAN_PAYMENTS_API_KEY: paymentsKey,
        ...(mallocArenaMax === '' ? {} : { MALLOC_ARENA_MAX: mallocArenaMax }),
        ...(jemallocPath === undefined ? {} : { LD_PRELOAD: jemallocPath }),
      },
    },
  );
  let buffered = '';
  const url = await new Promise<string>((done, fail) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let newline = buffered.indexOf('\n');
      while (newline !== -1) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.startsWith('listening ')) done(line.slice('listening '.length));
        else if (line.startsWith('{')) onSample(JSON.parse(line) as ServerSample);
        newline = buffered.indexOf('\n');
      }
    });
    child.once('exit', (code) => fail(new Error(`the soak server exited (${code}) before listening`)));
  });
  return { child, url };
}

/** Least-squares slope of `ys` over `xs` (units of y per unit of x). */
function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

const mb = (bytes: number) => bytes / 1_048_576;

/**
 * The machine's stall totals from Linux's pressure stall information (/proc/pressure: µs in
 * which at least one task waited for a CPU, or for I/O); NaN where the kernel has none.
 */
function pressureTotals(): { cpuUs: number; ioUs: number } {
  const some = (resource: string) => {
    try {
      const text = readFileSync(`/proc/pressure/${resource}`, 'utf8');
      return Number(/^some .*total=(\d+)/m.exec(text)?.[1] ?? Number.NaN);
    } catch {
      return Number.NaN;
    }
  };
  return { cpuUs: some('cpu'), ioUs: some('io') };
}

/** Resident memory that is neither V8's heap nor JavaScript's buffers: SQLite's page caches, malloc. */
function nativeBytes(sample: ServerSample | undefined): number {
  return sample === undefined ? 0 : sample.rssBytes - sample.heapTotalBytes - sample.externalBytes;
}

function newHistogram(): Histogram {
  // Microseconds, 3 significant digits, as `meridian load` keeps them.
  return build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3, autoResize: true });
}

/** Pairs each latency window with the server sample nearest in time. */
function merge(
  server: readonly ServerSample[],
  windows: readonly Omit<Sample, keyof ServerSample>[],
  startMs: number,
) {
  return windows.flatMap((window) => {
    const atMs = startMs + window.t * 1000;
    let nearest: ServerSample | undefined;
    for (const sample of server) {
      if (nearest === undefined || Math.abs(sample.atMs - atMs) < Math.abs(nearest.atMs - atMs))
        nearest = sample;
    }
    return nearest === undefined ? [] : [{ ...nearest, ...window }];
  });
}

/** The first and last ten minutes of the measured run (on a shorter run its first and last thirds). */
const spanS = Math.min(600, duration / 3);

/** The largest of `percents` as "N %", or "n/a" where there are none (a kernel without PSI). */
function highest(percents: readonly number[]): string {
  const known = percents.filter(Number.isFinite);
  return known.length === 0 ? 'n/a' : `${Math.max(...known).toFixed(0)} %`;
}

function summarise(samples: readonly Sample[], spans: { first: Histogram; last: Histogram }): string {
  // Retention reaches its steady state once the first orders are past their period and the
  // log's next retention check (every 10 s at most) has run: the database's slope is measured
  // from twice that on.
  const steadyFromS = Math.max(0, 2 * (retentionSeconds + 10) - warmup);
  const measured = samples.filter((sample) => sample.t >= 0);
  const steady = measured.filter((sample) => sample.t >= steadyFromS);
  const hours = (list: readonly Sample[]) => list.map((sample) => sample.t / 3600);
  const rssSlope = slope(
    hours(measured),
    measured.map((s) => mb(s.rssBytes)),
  );
  const heapSlope = slope(
    hours(measured),
    measured.map((s) => mb(s.heapUsedBytes)),
  );
  const nativeSlope = slope(
    hours(measured),
    measured.map((s) => mb(nativeBytes(s))),
  );
  const fileMb = (sample: Sample) => mb(sample.databaseBytes);
  const dbSlope = slope(hours(steady), steady.map(fileMb));
  const dbAndWalSlope = slope(
    hours(steady),
    steady.map((s) => mb(s.databaseBytes + s.walBytes)),
  );
  const p99Slope = slope(
    hours(measured),
    measured.map((s) => s.p99Ms),
  );
  // Its value after warm-up: the median of the first minute's samples, not the first sample
  // alone, which lands anywhere in a garbage collector's cycle (±10 % of it was 30 MB either way).
  const rssStart = median(measured.filter((s) => s.t < 60).map((s) => s.rssBytes));
  const rssEnd = measured[measured.length - 1]?.rssBytes ?? 0;
  const rssDeviation = Math.max(...measured.map((s) => Math.abs(s.rssBytes - rssStart) / rssStart)) * 100;
  const firstP99 = spans.first.getValueAtPercentile(99) / 1000;
  const lastP99 = spans.last.getValueAtPercentile(99) / 1000;
  const last = measured[measured.length - 1];
  const range = (values: readonly number[]) =>
    values.length === 0 ? 'n/a' : `${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)} MB`;
  // Flat: the file grew over the steady part by less than 5 % of its size there (or 4 MB).
  const steadyHours = steady.length < 2 ? 0 : (steady[steady.length - 1]!.t - steady[0]!.t) / 3600;
  const dbFlat = steady.length >= 2 && dbSlope * steadyHours <= Math.max(0.05 * fileMb(steady[0]!), 4);
  return [
    `soak (embedded SQLite, retention ${retentionSeconds} s, ${allocator === 'jemalloc' ? 'jemalloc' : 'glibc malloc'}): ${rate} orders/s for ${duration} s after ${warmup} s warm-up, ${measured.length} samples every ${sampleSeconds} s`,
    `RSS slope ${rssSlope.toFixed(1)} MB/h (${mb(rssStart).toFixed(0)} MB after warm-up (the first minute's median), ${mb(rssEnd).toFixed(0)} MB at the end, drift ${(((rssEnd - rssStart) / Math.max(rssStart, 1)) * 100).toFixed(1)} %, max deviation ${rssDeviation.toFixed(1)} %)`,
    `heap slope ${heapSlope.toFixed(1)} MB/h, outside V8's heap ${nativeSlope.toFixed(1)} MB/h (${mb(nativeBytes(measured[0])).toFixed(0)} → ${mb(nativeBytes(last)).toFixed(0)} MB)`,
    `DB file slope ${dbSlope.toFixed(1)} MB/h from ${steadyFromS} s (file ${range(steady.map(fileMb))}; with the WAL ${dbAndWalSlope.toFixed(1)} MB/h, WAL ${range(steady.map((s) => mb(s.walBytes)))})`,
    `p99 to terminal slope ${p99Slope.toFixed(0)} ms/h (first ${spanS.toFixed(0)} s ${firstP99.toFixed(0)} ms, last ${spanS.toFixed(0)} s ${lastP99.toFixed(0)} ms, ratio ${(lastP99 / Math.max(firstP99, 1)).toFixed(2)})`,
    `checks: RSS ±10 % ${rssDeviation <= 10 ? 'met' : 'not met'}, DB flat ${dbFlat ? 'met' : 'not met'}, p99 ≤ 1.5× ${lastP99 <= 1.5 * firstP99 ? 'met' : 'not met'}`,
    `retention removed ${last?.removedSagas ?? 0} sagas, ${last?.removedEntities ?? 0} entities, ${last?.removedKeys ?? 0} keys`,
    `server's longest event-loop delay ${Math.max(0, ...measured.map((s) => s.loopDelayMaxMs)).toFixed(0)} ms, longest GC pause ${Math.max(0, ...measured.map((s) => s.gcPauseMaxMs)).toFixed(0)} ms, ${measured.reduce((sum, s) => sum + s.majorGcs, 0)} full collections`,
    `generator's longest event-loop delay ${Math.max(0, ...measured.map((s) => s.generatorLoopDelayMaxMs)).toFixed(0)} ms`,
    `machine's pressure at most CPU ${highest(measured.map((s) => s.cpuPressurePct))}, I/O ${highest(measured.map((s) => s.ioPressurePct))} of a window`,
    `load average ${loadavg()[0]!.toFixed(1)} at the end`,
  ].join('; ');
}

function writeSamples(samples: readonly Sample[]): void {
  if (samplesFile !== '') {
    const header = `t_s,rss_mb,heap_mb,heap_total_mb,native_mb,external_mb,array_buffers_mb,anonymous_mb,file_backed_mb,db_mb,wal_mb,free_mb,${kindColumns.map((kind) => `${kind}_mb`).join(',')},p50_ms,p99_ms,ended,loop_delay_max_ms,gc_pause_max_ms,gc_pause_total_ms,major_gcs,generator_loop_delay_max_ms,cpu_pressure_pct,io_pressure_pct`;
    const rows = samples.map((s) =>
      [
        ...[s.t, mb(s.rssBytes), mb(s.heapUsedBytes), mb(s.heapTotalBytes), mb(nativeBytes(s))],
        ...[mb(s.externalBytes), mb(s.arrayBuffersBytes), mb(s.anonymousBytes), mb(s.fileBackedBytes)],
        ...[mb(s.databaseBytes), mb(s.walBytes), mb(s.freeBytes)],
        ...kindColumns.map((kind) => mb(s.kinds[kind] ?? 0)),
        ...[s.p50Ms, s.p99Ms, s.ended, s.loopDelayMaxMs, s.gcPauseMaxMs, s.gcPauseTotalMs, s.majorGcs],
        ...[s.generatorLoopDelayMaxMs, s.cpuPressurePct, s.ioPressurePct],
      ]
        .map((value) => (Number.isInteger(value) ? String(value) : value.toFixed(2)))
        .join(','),
    );
    writeFileSync(samplesFile, `${header}\n${rows.join('\n')}\n`);
  }
  if (plotFile !== '') writeFileSync(plotFile, plot(samples));
}

/** An SVG of the four series over time, each scaled to its own panel with its range written. */
function plot(samples: readonly Sample[]): string {
  const series: Array<[string, (s: Sample) => number, string]> = [
    ['RSS (MB)', (s) => mb(s.rssBytes), '#1f77b4'],
    ['heap used (MB)', (s) => mb(s.heapUsedBytes), '#2ca02c'],
    ['database file + WAL (MB)', (s) => mb(s.databaseBytes + s.walBytes), '#d62728'],
    ['p99 to terminal (ms)', (s) => s.p99Ms, '#9467bd'],
  ];
  const width = 720;
  const panel = 110;
  const t0 = samples[0]?.t ?? 0;
  const t1 = samples[samples.length - 1]?.t ?? 1;
  const parts = series.map(([label, value, color], index) => {
    const ys = samples.map(value);
    const lo = 0;
    const hi = Math.max(...ys, 1) * 1.1;
    const top = index * (panel + 20) + 20;
    const points = samples
      .map(
        (s, i) =>
          `${(60 + ((s.t - t0) / Math.max(t1 - t0, 1)) * (width - 80)).toFixed(1)},${(top + panel - ((ys[i]! - lo) / (hi - lo)) * panel).toFixed(1)}`,
      )
      .join(' ');
    return `<text x="60" y="${top - 4}" font-size="12">${label}: ${Math.min(...ys).toFixed(0)}–${Math.max(...ys).toFixed(0)} (axis 0–${hi.toFixed(0)})</text><rect x="60" y="${top}" width="${width - 80}" height="${panel}" fill="none" stroke="#ccc"/><polyline fill="none" stroke="${color}" stroke-width="1.5" points="${points}"/>`;
  });
  const height = series.length * (panel + 20) + 30;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" role="img"><title>Soak samples: RSS, heap, database file and WAL, p99 to terminal</title><rect width="100%" height="100%" fill="white"/>${parts.join('')}<text x="60" y="${height - 6}" font-size="12">seconds ${t0.toFixed(0)} to ${t1.toFixed(0)} (0 = end of warm-up)</text></svg>\n`;
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'meridian-bench-soak-'));
  const serverSamples: ServerSample[] = [];
  const children: ChildProcess[] = [];
  try {
    const payments = await startPayments(dataDir);
    children.push(payments.child);
    const server = await startServer(dataDir, payments.url, (sample) => serverSamples.push(sample));
    children.push(server.child);
    let window = newHistogram();
    const windows: Omit<Sample, keyof ServerSample>[] = [];
    const options = parseLoadOptions([
      ...['--url', server.url, '--rate', String(rate), '--duration', String(duration)],
      ...['--warmup', String(warmup), '--skus', String(skus), '--stock', '1000000000'],
    ]);
    if (options === 'help') throw new Error('unreachable');
    const spans = { first: newHistogram(), last: newHistogram() };
    let startedMs = Number.POSITIVE_INFINITY;
    const generator = new LoadGenerator(options, {
      progress: () => {},
      ended: (latencyMs) => {
        const micros = Math.max(1, Math.round(latencyMs * 1000));
        window.recordValue(micros);
        const t = (Date.now() - startedMs) / 1000;
        if (t >= 0 && t < spanS) spans.first.recordValue(micros);
        if (t >= duration - spanS) spans.last.recordValue(micros);
      },
    });
    await generator.setup();
    startedMs = Date.now() + warmup * 1000;
    const generatorLoop = monitorEventLoopDelay({ resolution: 10 });
    generatorLoop.enable();
    let pressure = { ...pressureTotals(), atMs: Date.now() };
    const ticker = setInterval(() => {
      const now = { ...pressureTotals(), atMs: Date.now() };
      const share = (us: number, previousUs: number) => (us - previousUs) / 10 / (now.atMs - pressure.atMs);
      windows.push({
        t: Math.round((Date.now() - startedMs) / 1000),
        p50Ms: window.getValueAtPercentile(50) / 1000,
        p99Ms: window.getValueAtPercentile(99) / 1000,
        ended: window.totalCount,
        generatorLoopDelayMaxMs: generatorLoop.max / 1e6,
        cpuPressurePct: share(now.cpuUs, pressure.cpuUs),
        ioPressurePct: share(now.ioUs, pressure.ioUs),
      });
      window = newHistogram();
      generatorLoop.reset();
      pressure = now;
      // Progress on stderr, so a long run can be watched: the last window and server sample.
      const latest = windows[windows.length - 1]!;
      const server = serverSamples[serverSamples.length - 1];
      if (server !== undefined) {
        console.error(
          `[${latest.t} s] RSS ${mb(server.rssBytes).toFixed(0)} MB, heap ${mb(server.heapUsedBytes).toFixed(0)} of ${mb(server.heapTotalBytes).toFixed(0)} MB, outside the heap ${mb(nativeBytes(server)).toFixed(0)} MB, DB ${mb(server.databaseBytes + server.walBytes).toFixed(0)} MB, p99 ${latest.p99Ms.toFixed(0)} ms, ended ${latest.ended}, server loop delay ≤ ${server.loopDelayMaxMs.toFixed(0)} ms, GC pause ≤ ${server.gcPauseMaxMs.toFixed(0)} ms (${server.majorGcs} full), generator loop delay ≤ ${latest.generatorLoopDelayMaxMs.toFixed(0)} ms, machine CPU pressure ${latest.cpuPressurePct.toFixed(0)} %, I/O ${latest.ioPressurePct.toFixed(0)} %`,
        );
      }
    }, sampleSeconds * 1000);
    try {
      const summary = await generator.run();
      const samples = merge(serverSamples, windows, startedMs);
      writeSamples(samples);
      console.log(
        `${summarise(samples, spans)}; orders accepted ${summary.accepted}, confirmed ${summary.confirmed}, cancelled ${summary.cancelled}, unfinished ${summary.unfinished}`,
      );
    } finally {
      clearInterval(ticker);
      generator.close();
    }
  } finally {
    for (const child of children.reverse()) {
      if (child.exitCode !== null) continue;
      child.kill('SIGTERM');
      await new Promise((done) => child.once('exit', done));
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
