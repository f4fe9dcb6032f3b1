/**
 * Simulation throughput: `npm run bench:simulation -- --seeds N` runs N seeds of the ledger's
 * simulation (test/verify/ledger-simulation.ts: 12 operations — deposits, reads and transfer
 * sagas — duplicated and reordered deliveries, lost answers, restarts and crashes, 10 s of
 * virtual time to settle) twice: one after another in this thread, as `meridian verify
 * --simulate --threads 1` does, for the milliseconds per seed (wall p50 and p99, and CPU), then
 * spread over worker threads as `meridian verify --simulate` does by default, for seeds per
 * minute. It prints one line for each. Issue 20 asks for thousands of seeds a minute. There is no
 * peer to run beside it: no JavaScript framework has a deterministic simulator.
 *
 * Options: --seeds N (default 300), --threads T (default: the cores this process may use).
 */
import { availableParallelism, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { simulate } from '../src/chaos/index.ts';
import { lowestFailingSeed } from '../src/chaos/simulation-threads.ts';
import { ledgerSimulation } from '../test/verify/ledger-simulation.ts';

function option(name: string, fallback: number, max: number): number {
  const index = process.argv.indexOf(name);
  const value = Number(index === -1 ? fallback : process.argv[index + 1]);
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new RangeError(`${name} must be an integer in [1, ${max}]: current value is ${value}`);
  }
  return value;
}
const seeds = option('--seeds', 300, 1_000_000);
const threads = option('--threads', availableParallelism(), 64);
const load = () => loadavg()[0]!.toFixed(1);

const spec = ledgerSimulation();
await simulate(spec, 0); // warm up: the template database, the JIT
const timesMs: number[] = [];
let failed = 0;
const startedMs = performance.now();
const startedCpu = process.cpuUsage();
for (let seed = 1; seed <= seeds; seed++) {
  const seedStartedMs = performance.now();
  if (!(await simulate(spec, seed)).passed) failed += 1;
  timesMs.push(performance.now() - seedStartedMs);
}
const elapsedMs = performance.now() - startedMs;
const cpu = process.cpuUsage(startedCpu);
timesMs.sort((a, b) => a - b);
const at = (q: number) => timesMs[Math.min(timesMs.length - 1, Math.floor(q * timesMs.length))]!.toFixed(1);
const perMinute = (ms: number) => Math.round((seeds * 60_000) / ms);
console.log(
  `simulation, 1 thread: ${seeds} seeds in ${(elapsedMs / 1000).toFixed(1)} s = ${perMinute(elapsedMs)} seeds/min, ms/seed p50 ${at(0.5)} p99 ${at(0.99)}, CPU ${((cpu.user + cpu.system) / 1000 / seeds).toFixed(1)} ms/seed, failed ${failed}, load average ${load()}`,
);

const threadsStartedMs = performance.now();
const failing = await lowestFailingSeed(
  resolve(import.meta.dirname, '../test/verify/ledger.spec.ts'),
  1,
  seeds,
  threads,
);
const threadsMs = performance.now() - threadsStartedMs;
console.log(
  `simulation, ${threads} threads: ${seeds} seeds in ${(threadsMs / 1000).toFixed(1)} s = ${perMinute(threadsMs)} seeds/min (threads started and spec loaded included), ${failing === undefined ? 'none failed' : `seed ${failing} failed`}, load average ${load()}`,
);
