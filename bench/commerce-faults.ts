/**
 * The commerce cluster under faults: `node bench/commerce-faults.ts [--faults a,b] [--rate N]
 * [--duration S] [--fault-at S] [--seed N]`. Starts the local cluster (scripts/cluster/cluster.sh,
 * a no-op for what already runs), then for each fault offers a seeded open-loop load of orders
 * through HAProxy, injects the fault on the real processes, heals it, and audits the commerce
 * invariants through the HTTP contract. Prints one line per fault (error window, time until
 * throughput recovered, failed requests, violations, what the fault watched of itself) and the
 * machine's load average. Exits 1 when an invariant was violated. A fault this machine cannot
 * make (node-partition needs root for its network namespace) is skipped with the reason. Faults:
 * see `faults` in test/cluster/faults.ts.
 */
import { loadavg } from 'node:os';
import {
  awaitAllNodesUp,
  type FaultReport,
  faults,
  formatReport,
  runFault,
  startCluster,
} from '../test/cluster/faults.ts';

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : (process.argv[index + 1] ?? fallback);
}

function positiveInteger(name: string, fallback: number, max: number): number {
  const value = Number(option(name, String(fallback)));
  if (!Number.isInteger(value) || value < 1 || value > max)
    throw new RangeError(`--${name} must be an integer in [1, ${max}]`);
  return value;
}

const names = option('faults', Object.keys(faults).join(',')).split(',');
const unknown = names.filter((name) => !(name in faults));
if (unknown.length > 0)
  throw new RangeError(`unknown fault(s) ${unknown.join(', ')}: one of ${Object.keys(faults).join(', ')}`);
const rate = positiveInteger('rate', 30, 2000);
const durationS = positiveInteger('duration', 30, 600);
const faultAtS = positiveInteger('fault-at', 8, durationS - 1);
const seed = positiveInteger('seed', 1, 4_294_967_295);

const cluster = await startCluster();
const reports: FaultReport[] = [];
for (const name of names) {
  const fault = faults[name];
  if (fault === undefined) continue;
  const unavailable = await fault.unavailable?.();
  if (unavailable !== undefined) {
    console.log(`${name.padEnd(18)}  skipped: ${unavailable}`);
    continue;
  }
  await awaitAllNodesUp(cluster);
  const report = await runFault(cluster, fault, { seed, rate, durationS, faultAtS });
  reports.push(report);
  console.log(formatReport(report));
}
console.log(
  `faults ${reports.length}, rate ${rate}/s for ${durationS} s, fault at ${faultAtS} s, seed ${seed}; load average ${loadavg()
    .map((value) => value.toFixed(1))
    .join(' ')} (2 cores)`,
);
process.exit(reports.some((report) => report.violations.length > 0) ? 1 : 0);
