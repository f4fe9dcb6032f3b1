/**
 * Shrinking a failed real-process run: the seed's schedule is cut down (delta debugging over
 * its faults: none at all first, then halves, quarters, … single faults dropped) and each
 * smaller schedule is run again, as real processes, with the same seed and duration; a schedule
 * is kept when its run still breaks an invariant of the same name. Real processes are not a
 * pure function of the seed, so "still breaks" is what one run showed, not a proof, and the
 * replay command of the result may need a few tries for a timing-dependent bug.
 *
 * Bounded in time: no run starts once the budget cannot hold it (a run takes its duration and
 * the app's starts and the final checks, so twice the duration is what one is allowed).
 */

import { type Clock, systemClock } from '../time.ts';
import type { VerifyReport } from './report.ts';
import { runVerify, type VerifyOptions } from './runner.ts';

export interface ShrinkRunOptions {
  /** The options of the run that failed. */
  readonly run: VerifyOptions;
  /** Its report. */
  readonly failed: VerifyReport;
  /** How long shrinking may take in all, in ms. */
  readonly budgetMs: number;
  /** Progress lines (each run tried). */
  readonly log?: ((line: string) => void) | undefined;
  /** Measures the budget. @default the system clock */
  readonly clock?: Clock;
}

export interface ShrunkRun {
  /** The smallest failing run found: its report (the replay command names its faults). */
  readonly report: VerifyReport;
  /** The indexes of the seed's schedule it kept. */
  readonly faults: readonly number[];
  /** Runs tried while shrinking, and the time they took. */
  readonly runs: number;
  readonly elapsedMs: number;
  /** True when the budget ended the search before every chunk size was tried. */
  readonly budgetSpent: boolean;
}

/** Shrinks a failed run's fault schedule; see the module comment. */
export async function shrinkRun(options: ShrinkRunOptions): Promise<ShrunkRun> {
  const clock = options.clock ?? systemClock;
  const startedMs = clock.monotonicNow();
  const names = new Set(options.failed.violations.map((violation) => violation.invariant));
  const perRunMs = options.run.durationMs * 2;
  const affordable = () => clock.monotonicNow() - startedMs + perRunMs <= options.budgetMs;
  let best = {
    report: options.failed,
    faults: options.run.faults ?? options.failed.faults.filter((f) => f.heal === undefined).map((_, i) => i),
  };
  let runs = 0;
  const tryFaults = async (faults: readonly number[]): Promise<boolean> => {
    runs += 1;
    const { report } = await runVerify({ ...options.run, faults, log: undefined, runDirectory: undefined });
    const fails = report.violations.some((violation) => names.has(violation.invariant));
    options.log?.(`shrink: faults [${faults.join(', ')}] ${fails ? 'still fail' : 'pass'}`);
    if (fails) best = { report, faults };
    return fails;
  };
  let budgetSpent = false;
  if (best.faults.length > 0) {
    if (!affordable()) budgetSpent = true;
    else if (await tryFaults([])) return done();
  }
  for (
    let chunk = Math.ceil(best.faults.length / 2);
    chunk >= 1 && !budgetSpent;
    chunk = Math.floor(chunk / 2)
  ) {
    for (let start = 0; start < best.faults.length; ) {
      if (!affordable()) {
        budgetSpent = true;
        break;
      }
      const candidate = [...best.faults.slice(0, start), ...best.faults.slice(start + chunk)];
      if (candidate.length === 0 || !(await tryFaults(candidate))) start += chunk;
    }
  }
  return done();

  function done(): ShrunkRun {
    return { ...best, runs, elapsedMs: Math.round(clock.monotonicNow() - startedMs), budgetSpent };
  }
}

/** What a shrunk run adds to the report: the faults it kept, what still broke, its replay command. */
export function formatShrunk(failed: VerifyReport, shrunk: ShrunkRun): string {
  const scheduled = failed.faults.filter((fault) => fault.heal === undefined).length;
  const kept = shrunk.report.faults.filter((fault) => fault.heal === undefined);
  const broken = [...new Set(shrunk.report.violations.map((violation) => violation.invariant))];
  return [
    `Shrunk to ${kept.length} of ${scheduled} faults (${shrunk.runs} runs in ${(shrunk.elapsedMs / 1000).toFixed(0)} s${shrunk.budgetSpent ? ', the --shrink budget ended the search' : ''}), still breaking ${broken.join(', ')}:`,
    ...(kept.length === 0 ? ['  no fault at all'] : kept.map((fault) => `  ${fault.description}`)),
    `Replay: ${shrunk.report.replay}`,
  ].join('\n');
}
