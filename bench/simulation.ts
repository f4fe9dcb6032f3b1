/**
 * Simulation throughput: `npm run bench:simulation -- --seeds N` runs N seeds of the ledger's
 * simulation (test/verify/ledger-simulation.ts: 12 operations, duplicated and reordered
 * deliveries, lost answers, restarts, 10 s of virtual time to settle) one after another in this
 * process, as `meridian verify --simulate` does, and prints one line: seeds per minute and the
 * milliseconds per seed (p50, p99). Issue 20 asks for thousands of seeds a minute. There is no
 * peer to run beside it: no JavaScript framework has a deterministic simulator.
 *
 * Options: --seeds N (default 300).
 */
import { loadavg } from 'node:os';
import { simulate } from '../src/chaos/index.ts';
import { ledgerSimulation } from '../test/verify/ledger-simulation.ts';

const index = process.argv.indexOf('--seeds');
const seeds = Number(index === -1 ? 300 : process.argv[index + 1]);
if (!Number.isInteger(seeds) || seeds < 1 || seeds > 1_000_000) {
  throw new RangeError(`--seeds must be an integer in [1, 1000000]: current value is ${seeds}`);
}

const spec = ledgerSimulation();
await simulate(spec, 0); // warm up: the template database, the JIT
const timesMs: number[] = [];
let failed = 0;
const startedMs = performance.now();
for (let seed = 1; seed <= seeds; seed++) {
  const seedStartedMs = performance.now();
  if (!(await simulate(spec, seed)).passed) failed += 1;
  timesMs.push(performance.now() - seedStartedMs);
}
const elapsedMs = performance.now() - startedMs;
timesMs.sort((a, b) => a - b);
const at = (q: number) => timesMs[Math.min(timesMs.length - 1, Math.floor(q * timesMs.length))]!.toFixed(1);
console.log(
  `simulation: ${seeds} seeds in ${(elapsedMs / 1000).toFixed(1)} s = ${Math.round((seeds * 60_000) / elapsedMs)} seeds/min, ms/seed p50 ${at(0.5)} p99 ${at(0.99)}, failed ${failed}, load average ${loadavg()[0]!.toFixed(1)}`,
);
