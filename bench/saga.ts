/**
 * Saga throughput and latency on the embedded shape (one SQLite file): `npm run bench:saga`.
 *
 * The saga has four steps: an entity command (reserve stock on one of 1,000 Inventory entities),
 * an external call through an in-process fake with 0 ms latency (charge, with the step's
 * idempotency key), a second entity command (confirm the Order entity, one per saga) and an
 * event (emit `orders.completed`). Every step is journaled; the entity commands commit with
 * their journal entries.
 *
 * Two phases, each on a fresh database:
 * 1. max load: a closed loop keeps `--concurrency` sagas in flight for `--seconds`; the figure
 *    is sagas completed per second (after a warm-up second that is not counted);
 * 2. fixed load: an open loop offers `--rate` sagas per second for 2 s (warm-up, not counted) plus
 *    `--seconds`, on a schedule
 *    that does not wait for completions; the figures are p50/p99 of start-to-finish latency
 *    (from the startSaga call to the saga's result), measured with an HDR histogram.
 *
 * Options: --seconds N (default 10), --concurrency N (default 1000), --rate N (default 1000).
 *
 * `--shape cluster --nodes N` runs the same saga on N node processes of the cluster shape over
 * PostgreSQL and Kafka instead (bench/saga-cluster.ts: its own line, CPU over every process, the
 * takeover time after kill -9 of a node; --rate defaults to 500 there; --local-starts makes each
 * node start only sagas whose ids it owns, as a partition-aware client would). The embedded line is
 * unchanged.
 */
import { build } from 'hdr-histogram-js';
import { openEmbedded } from '../src/runtime/harness.ts';
import { Inventory, Order, OrderSaga, skus } from './saga-app.ts';

function option(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  if (index === -1) return fallback;
  const value = Number(process.argv[index + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`--${name} must be a positive number`);
  return value;
}

function textOption(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : (process.argv[index + 1] ?? fallback);
}

const shape = textOption('shape', 'embedded');
if (shape !== 'embedded' && shape !== 'cluster') throw new RangeError(`--shape must be embedded or cluster`);
const seconds = option('seconds', 10);
const concurrency = option('concurrency', 1000);
const rate = option('rate', 1000);
const warmupSeconds = 2;

async function withRuntime<T>(
  fn: (runtime: ReturnType<ReturnType<typeof openEmbedded>['runtime']>) => Promise<T>,
): Promise<{ value: T; units: number; transactions: number }> {
  const fixture = openEmbedded();
  const runtime = fixture
    .runtime({ topics: { 'orders.completed': { partitions: 8 } } })
    .register(Inventory, Order, OrderSaga);
  await runtime.start();
  try {
    const value = await fn(runtime);
    const { units, transactions } = runtime.stats.commits;
    return { value, units, transactions };
  } finally {
    await fixture.destroy();
  }
}

let sequence = 0;
function nextInput(): [string, { sku: string; qty: number; amount: number }] {
  sequence++;
  return [`order-${sequence}`, { sku: `sku-${sequence % skus}`, qty: 1, amount: 100 + (sequence % 50) }];
}

/** Phase 1: keeps `concurrency` sagas in flight; returns sagas completed per second (wall and CPU). */
async function maxLoad(
  runtime: Parameters<Parameters<typeof withRuntime>[0]>[0],
): Promise<{ perSecond: number; perCpuSecond: number }> {
  const warmupMs = 1000;
  const started = performance.now();
  const endAt = started + warmupMs + seconds * 1000;
  let counted = 0;
  let countFrom = 0;
  let cpuFrom: NodeJS.CpuUsage | undefined;
  const worker = async () => {
    while (performance.now() < endAt) {
      const [id, input] = nextInput();
      const handle = await runtime.startSaga(OrderSaga, id, input);
      await handle.result();
      const now = performance.now();
      if (now >= started + warmupMs) {
        if (countFrom === 0) {
          countFrom = now;
          cpuFrom = process.cpuUsage();
        }
        counted++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsedMs = performance.now() - countFrom;
  const cpu = process.cpuUsage(cpuFrom);
  // Sagas per second of CPU the process used: what a saga costs, whatever else the machine runs.
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  return { perSecond: (counted / elapsedMs) * 1000, perCpuSecond: counted / cpuSeconds };
}

/** Phase 2: offers `rate` sagas per second on a fixed schedule; returns the latency histogram. */
async function fixedLoad(runtime: Parameters<Parameters<typeof withRuntime>[0]>[0]) {
  const histogram = build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });
  // The first seconds warm the JIT and the database up; only sagas scheduled after them count.
  const warmupCount = Math.round(rate * warmupSeconds);
  const total = warmupCount + Math.round(rate * seconds);
  const intervalMs = 1000 / rate;
  const start = performance.now();
  const pending: Promise<void>[] = [];
  let issued = 0;
  let failures = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      // Issue every saga whose scheduled time has come; latency counts from its scheduled time,
      // so a stalled event loop shows up as latency (no coordinated omission).
      const now = performance.now();
      while (issued < total && start + issued * intervalMs <= now) {
        const index = issued;
        const scheduledAt = start + index * intervalMs;
        issued++;
        const [id, input] = nextInput();
        pending.push(
          runtime
            .startSaga(OrderSaga, id, input)
            .then((handle) => handle.result())
            .then(
              () => {
                if (index >= warmupCount) {
                  histogram.recordValue(Math.max(1, Math.round((performance.now() - scheduledAt) * 1000)));
                }
              },
              () => {
                failures++;
              },
            ),
        );
      }
      if (issued >= total) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all(pending);
  return { histogram, failures, measured: total - warmupCount };
}

/** The embedded line: both phases, each on a fresh database. */
async function embedded(): Promise<void> {
  const max = await withRuntime(maxLoad);
  const fixed = await withRuntime(fixedLoad);
  const p50Ms = fixed.value.histogram.getValueAtPercentile(50) / 1000;
  const p99Ms = fixed.value.histogram.getValueAtPercentile(99) / 1000;
  const line = [
    `sagas (4-step, embedded SQLite): ${Math.round(max.value.perSecond).toLocaleString('en-US')}/s sustained at ${concurrency} in flight (${Math.round(max.value.perCpuSecond).toLocaleString('en-US')} per CPU-second)`,
    `at ${rate.toLocaleString('en-US')}/s offered: p50 ${p50Ms.toFixed(1)} ms, p99 ${p99Ms.toFixed(1)} ms (n=${fixed.value.measured}${fixed.value.failures > 0 ? `, ${fixed.value.failures} failed` : ''})`,
    `${(max.units / max.transactions).toFixed(0)} units/transaction at max load`,
  ].join('; ');
  console.log(line);
}

if (shape === 'cluster') {
  const { clusterBench } = await import('./saga-cluster.ts');
  await clusterBench({
    nodes: option('nodes', 3),
    seconds,
    concurrency,
    rate: option('rate', 500),
    takeover: !process.argv.includes('--no-takeover'),
    takeoverRate: option('takeover-rate', 50),
    localStarts: process.argv.includes('--local-starts'),
  });
} else await embedded();
