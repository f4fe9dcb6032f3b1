/**
 * The commerce system end to end through HTTP: `npm run bench:commerce`.
 *
 * Starts `commerce demo --traffic off` on a fresh data directory (a child process, as a user
 * would run it), sets up the stock and warms the server up with a short run of `commerce load`
 * at a fifth of the rate, then runs `commerce load` (another child process) at `--rate` orders/s:
 * `--warmup` seconds not counted (the generator's connections and JIT, and the server at full
 * rate, settle: a cold generator's first second alone puts a backlog of hundreds of orders in
 * the percentiles), then `--duration` seconds measured. Prints one line: offered, accepted and
 * completed orders/s, latency to 202 and to a terminal status (HdrHistogram percentiles from
 * `commerce load`, measured from each order's due time), the server's (and its main thread's)
 * and the load generator's CPU time per accepted order over the warm-up and the measured run
 * (Linux), and the machine's load average, since the server, the load generator and whatever
 * else runs share the cores.
 *
 * Options: --rate N (default 1000), --duration S (default 10), --warmup S (default 5; 0 measures
 * from a cold generator), --skus N (default 100), --wait S (default 10: long polls with Prefer:
 * wait; 0 polls), --poll-interval-ms N (default 25, when polling), --commit-linger-ms N (the
 * demo's, default 0), --runs N (default 1: measure N times on fresh servers, one line each,
 * then one line of their spread), --cpu-prof DIR (profile the server there), --observe MODES
 * (off, tracing, console, comma-separated: a measurement per mode, then a line comparing the
 * server's CPU per order with tracing off). --shape cluster --nodes N measures the cluster shape
 * instead (bench/commerce-cluster.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { developmentAuth } from '../src/http/index.ts';
import { median } from './stats.ts';

const root = resolve(import.meta.dirname, '..');
const main = join(root, 'apps/commerce/cli/main.ts');

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : (process.argv[index + 1] ?? fallback);
}

const shape = option('shape', 'embedded');
if (shape !== 'embedded' && shape !== 'cluster')
  throw new RangeError(`--shape must be 'embedded' or 'cluster'`);
if (shape === 'cluster') {
  // The same app on the local cluster, through HAProxy: bench/commerce-cluster.ts.
  await import('./commerce-cluster.ts');
  process.exit(0);
}

function positive(name: string, fallback: number): number {
  const value = Number(option(name, String(fallback)));
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`--${name} must be a positive number`);
  return value;
}

function integer(name: string, fallback: number, max: number, min = 0): number {
  const value = Number(option(name, String(fallback)));
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`--${name} must be an integer in [${min}, ${max}]`);
  }
  return value;
}

const rate = positive('rate', 1000);
const duration = positive('duration', 10);
const skus = positive('skus', 100);
const warmupSeconds = integer('warmup', 5, 600);
const pollIntervalMs = positive('poll-interval-ms', 25);
const waitSeconds = integer('wait', 10, 60);
const watch = option('watch', 'events');
if (watch !== 'events' && watch !== 'orders') throw new RangeError(`--watch must be 'events' or 'orders'`);
const connections = integer('connections', 256, 10_000);
const concurrency = integer('concurrency', 10_000, 100_000);
const maxOrdersInProgress = integer('max-orders-in-progress', 1000, 1_000_000);
const commitLingerMs = integer('commit-linger-ms', 0, 100);
const runs = integer('runs', 1, 100, 1);
const cpuProfile = option('cpu-prof', '');
/**
 * What observes the server, one measurement per mode in this order (issue 19's overhead check):
 * `off`; `tracing` (OTLP/HTTP export, sampled 100 %, to a sink in this process that discards);
 * `console` (tracing, and the live console's event stream open).
 */
const observeModes = option('observe', 'off').split(',');
for (const mode of observeModes) {
  if (mode !== 'off' && mode !== 'tracing' && mode !== 'console')
    throw new RangeError(
      `--observe takes off, tracing and console, comma-separated: current value is '${mode}'`,
    );
}
type ObserveMode = 'off' | 'tracing' | 'console';

/** An OTLP/HTTP receiver that answers and discards: the exporter's work is the server's cost. */
async function startTraceSink(): Promise<{ url: string; spans: () => number; close: () => void }> {
  const { createServer } = await import('node:http');
  let bytes = 0;
  const server = createServer((request, response) => {
    request.on('data', (chunk: Buffer) => (bytes += chunk.length));
    request.on('end', () => response.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, spans: () => bytes, close: () => server.close() };
}

interface LatencySummary {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

interface LoadSummary {
  offeredPerSecond: number;
  acceptedPerSecond: number;
  warmupAccepted: number;
  completedPerSecond: number;
  accepted: number;
  confirmed: number;
  cancelled: number;
  unfinished: number;
  notSentOnTime: number;
  latencyToAccepted: LatencySummary;
  latencyToTerminal: LatencySummary;
  watchedBy: string;
  errorsByKind: Record<string, number>;
}

/**
 * CPU time (ms) the process used so far, from /proc (Linux); undefined elsewhere. With `tid`,
 * that one thread's (the process's own id names its main thread).
 */
function cpuMs(pid: number, tid?: number): number | undefined {
  try {
    const path = tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`;
    const fields = readFileSync(path, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

async function startServer(
  dataDir: string,
  traceSinkUrl: string | undefined,
): Promise<{ child: ChildProcess; url: string }> {
  const tracing =
    traceSinkUrl === undefined
      ? {}
      : {
          OTEL_EXPORTER_OTLP_ENDPOINT: traceSinkUrl,
          OTEL_TRACES_SAMPLER: 'always_on',
          OTEL_SERVICE_NAME: 'bench',
        };
  const child = spawn(
    process.execPath,
    [
      ...(cpuProfile === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${cpuProfile}`]),
      main,
      'demo',
      '--traffic',
      'off',
      '--port',
      '0',
      '--data-dir',
      dataDir,
      '--max-orders-in-progress',
      String(maxOrdersInProgress),
      '--commit-linger-ms',
      String(commitLingerMs),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PORT: '', ...tracing } },
  );
  let output = '';
  const url = await new Promise<string>((done, fail) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /Commerce API listening on (http:\/\/\S+)/.exec(output);
      if (match !== null) done(match[1]!);
    });
    child.once('exit', (code) =>
      fail(new Error(`commerce demo exited (${code}) before listening:\n${output}`)),
    );
  });
  child.stdout!.resume();
  return { child, url };
}

interface LoadRun {
  summary: LoadSummary;
  /** CPU time the load generator used (ms), when known. */
  cpuMs: number | undefined;
}

function runLoad(
  token: string,
  url: string,
  loadRate: number,
  seconds: number,
  warmup: number,
  skipSetup: boolean,
): Promise<LoadRun> {
  const args = [
    main,
    'load',
    '--url',
    url,
    '--rate',
    String(loadRate),
    '--duration',
    String(seconds),
    '--warmup',
    String(warmup),
    '--skus',
    String(skus),
    '--wait',
    String(waitSeconds),
    '--poll-interval-ms',
    String(pollIntervalMs),
    '--watch',
    watch,
    '--connections',
    String(connections),
    '--concurrency',
    String(concurrency),
    '--json',
    ...(skipSetup ? ['--skip-setup'] : []),
  ];
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { ...process.env, MERIDIAN_TOKEN: token },
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  // Sampled while it runs: once it has exited, /proc no longer has it.
  let cpu: number | undefined;
  const sampler = setInterval(() => (cpu = cpuMs(child.pid!) ?? cpu), 100);
  return new Promise((done, fail) =>
    child.once('exit', (code) => {
      clearInterval(sampler);
      if (code !== 0) return fail(new Error(`commerce load exited with ${code}`));
      done({ summary: JSON.parse(output.trim().split('\n').pop()!) as LoadSummary, cpuMs: cpu });
    }),
  );
}

const ms = (value: number) => `${value.toFixed(value < 10 ? 1 : 0)} ms`;

interface Measured {
  readonly line: string;
  readonly completedPerSecond: number;
  readonly p99ToTerminalMs: number;
  readonly cpuPerOrderMs: number | undefined;
}

/** Keeps the console's live stream open (as a browser tab would) until aborted; counts its bytes. */
function watchConsole(url: string, token: string, signal: AbortSignal): Promise<number> {
  return (async () => {
    let bytes = 0;
    try {
      const response = await fetch(`${url}/console/api/events`, {
        headers: { authorization: `Bearer ${token}` },
        signal,
      });
      for await (const chunk of response.body!) bytes += (chunk as Uint8Array).length;
    } catch {
      // Aborted at the end of the measurement.
    }
    return bytes;
  })();
}

/** One measurement on a fresh server and data directory. */
async function measure(mode: ObserveMode): Promise<Measured> {
  const dataDir = mkdtempSync(join(tmpdir(), 'meridian-bench-commerce-'));
  const sink = mode === 'off' ? undefined : await startTraceSink();
  const { child, url } = await startServer(dataDir, sink?.url);
  const token = await developmentAuth(dataDir).issue('bench', 'operator');
  const watching = new AbortController();
  const consoleBytes = mode === 'console' ? watchConsole(url, token, watching.signal) : Promise.resolve(0);
  try {
    // Warm-up: JIT, keep-alive connections, SQLite pages. Not counted.
    await runLoad(token, url, Math.max(1, Math.round(rate / 5)), 3, 0, false);
    const load = loadavg()[0]!;
    const cpuBefore = cpuMs(child.pid!);
    const mainBefore = cpuMs(child.pid!, child.pid!);
    const startedAt = performance.now();
    const { summary, cpuMs: loadCpuMs } = await runLoad(token, url, rate, duration, warmupSeconds, true);
    const elapsedMs = performance.now() - startedAt;
    const cpuAfter = cpuMs(child.pid!);
    const mainAfter = cpuMs(child.pid!, child.pid!);
    const orders = summary.warmupAccepted + summary.accepted;
    const cpuPerOrderMs =
      cpuBefore === undefined || cpuAfter === undefined || orders === 0
        ? undefined
        : (cpuAfter - cpuBefore) / orders;
    const cpuPerOrder = cpuPerOrderMs === undefined ? 'n/a' : `${cpuPerOrderMs.toFixed(2)} ms`;
    watching.abort();
    const observed =
      mode === 'off'
        ? 'tracing off'
        : `tracing on (100 %, ${Math.round(sink!.spans() / 1024)} KiB OTLP exported)${mode === 'console' ? `, console open (${Math.round((await consoleBytes) / 1024)} KiB of events)` : ''}`;
    // The server's main thread is where it saturates first: its CPU per order, and its share of
    // the wall time of the whole load run (the generator's start and the last answers included).
    const mainBusy =
      mainBefore === undefined || mainAfter === undefined || orders === 0
        ? ''
        : ` (main thread ${((mainAfter - mainBefore) / orders).toFixed(2)} ms, ${Math.round((100 * (mainAfter - mainBefore)) / elapsedMs)} % busy)`;
    const errors = Object.entries(summary.errorsByKind);
    const line = [
      `commerce over HTTP (embedded SQLite, ${observed}): offered ${summary.offeredPerSecond}/s for ${duration} s after ${warmupSeconds} s of warm-up`,
      `accepted ${summary.acceptedPerSecond}/s, completed ${summary.completedPerSecond}/s (${summary.confirmed} confirmed, ${summary.cancelled} cancelled, ${summary.unfinished} unfinished, ${summary.notSentOnTime} not sent on time)`,
      `to 202 p50 ${ms(summary.latencyToAccepted.p50Ms)} p99 ${ms(summary.latencyToAccepted.p99Ms)}`,
      `to terminal (watched by ${summary.watchedBy}) p50 ${ms(summary.latencyToTerminal.p50Ms)} p90 ${ms(summary.latencyToTerminal.p90Ms)} p99 ${ms(summary.latencyToTerminal.p99Ms)} max ${ms(summary.latencyToTerminal.maxMs)}`,
      `server CPU ${cpuPerOrder}/order${mainBusy}, load generator CPU ${loadCpuMs === undefined || orders === 0 ? 'n/a' : `${(loadCpuMs / orders).toFixed(2)} ms`}/order`,
      `load average ${load.toFixed(1)} at start${errors.length === 0 ? '' : `; errors ${errors.map(([kind, count]) => `${kind} ${count}`).join(', ')}`}`,
    ].join('; ');
    return {
      line,
      completedPerSecond: summary.completedPerSecond,
      p99ToTerminalMs: summary.latencyToTerminal.p99Ms,
      cpuPerOrderMs,
    };
  } finally {
    watching.abort();
    child.kill('SIGTERM');
    await new Promise((done) => child.once('exit', done));
    // After the server drained: it flushes its last spans to the sink.
    sink?.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** min / median / max of `values`, formatted by `format`. */
function spread(values: readonly number[], format: (value: number) => string): string {
  return `${format(Math.min(...values))} / ${format(median(values))} / ${format(Math.max(...values))}`;
}

// This machine's speed drifts between minutes (docs/benchmarks.md): with --runs N the figures of
// N runs one after another, then their spread, so one lucky or unlucky run does not decide.
const results: Measured[] = [];
const cpuByMode = new Map<ObserveMode, number[]>();
for (let run = 0; run < runs; run++) {
  for (const mode of observeModes as ObserveMode[]) {
    const result = await measure(mode);
    if (mode === observeModes[0]) results.push(result);
    if (result.cpuPerOrderMs !== undefined)
      cpuByMode.set(mode, [...(cpuByMode.get(mode) ?? []), result.cpuPerOrderMs]);
    console.log(runs === 1 ? result.line : `run ${run + 1}/${runs}: ${result.line}`);
  }
}
if (observeModes.length > 1 && cpuByMode.has('off')) {
  const base = median(cpuByMode.get('off')!);
  const parts = [...cpuByMode].map(([mode, values]) => {
    const value = median(values);
    return `${mode} ${value.toFixed(2)} ms${mode === 'off' ? '' : ` (${value >= base ? '+' : ''}${((100 * (value - base)) / base).toFixed(1)} %)`}`;
  });
  console.log(
    `server CPU per order (median of ${runs}), observed: ${parts.join(', ')}; target: tracing ≤ +5 %; load average ${loadavg()[0]!.toFixed(1)}`,
  );
}
if (runs > 1) {
  const p99s = results.map((result) => result.p99ToTerminalMs);
  console.log(
    `${runs} runs at ${rate}/s: completed/s min / median / max ${spread(
      results.map((result) => result.completedPerSecond),
      (value) => value.toFixed(1),
    )}; p99 to terminal min / median / max ${spread(p99s, ms)}; p99 ≤ 250 ms in ${p99s.filter((value) => value <= 250).length} of ${runs}`,
  );
}
