/**
 * One worker thread of `lowestFailingSeed` (simulation-threads.ts): loads the spec module, runs
 * its share of the seeds, and lowers the shared lowest failure when a seed fails.
 */

import { pathToFileURL } from 'node:url';
import { workerData } from 'node:worker_threads';
import { simulate } from './simulation.ts';
import { isSimulationSpec } from './simulation-report.ts';
import type { SimulationThreadData } from './simulation-threads.ts';

const { specPath, firstSeed, count, threads, index, lowestFailure } = workerData as SimulationThreadData;
const module = (await import(pathToFileURL(specPath).href)) as Record<string, unknown>;
const spec = module.simulation;
if (!isSimulationSpec(spec)) throw new Error(`verify spec '${specPath}' has no simulation export`);
const lowest = new Int32Array(lowestFailure);
for (let offset = index; offset < count && offset < Atomics.load(lowest, 0); offset += threads) {
  if ((await simulate(spec, firstSeed + offset)).passed) continue;
  // Lowers the shared value to this offset unless another thread found a lower one.
  for (let seen = Atomics.load(lowest, 0); offset < seen; ) {
    const was = Atomics.compareExchange(lowest, 0, seen, offset);
    if (was === seen) break;
    seen = was;
  }
  break;
}
