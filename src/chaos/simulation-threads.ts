/**
 * Simulation seeds across worker threads. Each seed is a pure function of itself (a fresh
 * database, a virtual clock, seeded randomness), so seeds can run on any thread in any order and
 * give the histories they give in one thread: thread `i` of `n` runs the seeds at offsets `i`,
 * `i + n`, `i + 2n`… of the range. What is reported is what a run in one thread would report:
 * the lowest failing seed (a thread stops once its next seed is past the lowest failure any
 * thread found, and none stops before it), which the caller then runs again in its own thread
 * and shrinks.
 *
 * Each thread loads the spec module itself (a spec holds functions, which cannot be sent to a
 * thread), with this process's environment, so a planted bug or a spec's own switch is the same
 * in every thread.
 */

import { Worker } from 'node:worker_threads';
import { type SeedsResult, type SimulationSpec, shrink, simulate, simulateSeeds } from './simulation.ts';

/** What a thread is given. */
export interface SimulationThreadData {
  /** The spec module's absolute path. */
  readonly specPath: string;
  readonly firstSeed: number;
  readonly count: number;
  readonly threads: number;
  readonly index: number;
  /** One Int32: the lowest failing offset found so far, or `count`. */
  readonly lowestFailure: SharedArrayBuffer;
}

// The thread's file is beside this one: `.ts` in a checkout, `.js` once built (dist/).
const threadUrl = new URL(
  `./simulation-thread${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`,
  import.meta.url,
);

/**
 * Runs seeds `firstSeed .. firstSeed + count - 1` of the spec module at `specPath` on `threads`
 * worker threads; resolves to the lowest failing seed, or undefined when every seed passed.
 */
export async function lowestFailingSeed(
  specPath: string,
  firstSeed: number,
  count: number,
  threads: number,
): Promise<number | undefined> {
  const lowestFailure = new SharedArrayBuffer(4);
  new Int32Array(lowestFailure)[0] = count;
  const runs = Array.from({ length: threads }, (_, index) => {
    const workerData: SimulationThreadData = { specPath, firstSeed, count, threads, index, lowestFailure };
    const worker = new Worker(threadUrl, { workerData });
    return new Promise<void>((resolve, reject) => {
      worker.once('error', reject);
      worker.once('exit', (code) =>
        code === 0
          ? resolve()
          : reject(new Error(`simulation thread ${index} of ${threads} exited with code ${code}`)),
      );
    });
  });
  await Promise.all(runs);
  const offset = new Int32Array(lowestFailure)[0]!;
  return offset < count ? firstSeed + offset : undefined;
}

/** Seeds a thread is worth starting for: a thread loads the spec module again (about a second). */
const seedsPerThread = 100;

/**
 * `simulateSeeds` over up to `threads` worker threads (fewer for a short range; one runs in this
 * thread): the same runs and the same failure, shrunk here. `specPath` is the module `spec` was
 * loaded from, which each thread loads again.
 */
export async function simulateSeedsOnThreads<Final>(
  spec: SimulationSpec<Final>,
  specPath: string,
  firstSeed: number,
  count: number,
  threads: number,
): Promise<SeedsResult> {
  const used = Math.min(threads, Math.ceil(count / seedsPerThread));
  if (used <= 1) return simulateSeeds(spec, firstSeed, count);
  const seed = await lowestFailingSeed(specPath, firstSeed, count, used);
  if (seed === undefined) return { runs: count };
  const result = await simulate(spec, seed);
  if (result.passed) {
    throw new Error(
      `seed ${seed} failed on a simulation thread but passed in the main thread: the spec's simulation is not a pure function of its seed (does it read real time, real randomness, or state kept across runs?)`,
    );
  }
  return { runs: seed - firstSeed + 1, failure: { result, shrunk: await shrink(spec, result) } };
}
