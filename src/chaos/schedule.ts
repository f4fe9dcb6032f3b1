/**
 * The fault schedule of a run, drawn from its seed before the run starts: the same seed and
 * duration give the same schedule, which is what makes a run replayable. Each fault has a start
 * (milliseconds into the run) and, for the windowed ones, an end; everything is healed when the
 * workload stops, so the invariants are checked on a system given the chance to recover.
 */

import { ValidationError } from '../errors.ts';
import { seededRandom } from '../time.ts';
import type { DependencyMode } from './spec.ts';

export type Fault =
  /** SIGKILL the app's process and start it again on the same data; `skewMs` shifts its clock. */
  | { readonly kind: 'kill'; readonly atMs: number; readonly skewMs: number }
  /** The app's dependency turns slow or failing (its resilience seam), then healthy again. */
  | {
      readonly kind: 'dependency';
      readonly atMs: number;
      readonly untilMs: number;
      readonly mode: Exclude<DependencyMode, 'healthy'>;
    }
  /** Requests that may be repeated are delivered twice (the same request, its key included). */
  | { readonly kind: 'duplicate'; readonly atMs: number; readonly untilMs: number }
  /** Requests are held back a random while, so they reach the app in another order than issued. */
  | { readonly kind: 'reorder'; readonly atMs: number; readonly untilMs: number }
  /** The app's data directory fills up (a small filesystem of the run's own), then is freed. */
  | { readonly kind: 'disk-full'; readonly atMs: number; readonly untilMs: number };

export interface ScheduleOptions {
  readonly seed: number;
  readonly durationMs: number;
  /** Which kinds the app and the machine allow (dependency faults need a hook, disk faults a mount). */
  readonly kinds: readonly Fault['kind'][];
}

/** The longest a reorder delay holds a request. */
export const reorderDelayMsMax = 60;
/** The clock skew a restart may apply, either way. */
export const clockSkewMsMax = 5 * 60_000;

/**
 * About one kill per 4 s of run (at least one), and one window of each other fault kind per
 * 6 s, placed at seeded moments. Kills stay out of the first and last 10 % of the run, so
 * the app has started and its last acknowledgements have a chance to land.
 */
export function drawSchedule(options: ScheduleOptions): Fault[] {
  const random = seededRandom(options.seed ^ 0x5eed);
  const duration = options.durationMs;
  const between = (low: number, high: number) => Math.floor(low + random.next() * (high - low));
  const faults: Fault[] = [];
  // A window of `count` lies in its own slot of the run's first 90 %, so windows of one kind
  // never overlap (the heal of one would cut the next short).
  const window = (index: number, count: number) => {
    const slotMs = (duration * 0.85) / count;
    const atMs = between(duration * 0.05 + index * slotMs, duration * 0.05 + index * slotMs + slotMs * 0.5);
    return { atMs, untilMs: Math.min(duration, atMs + between(slotMs * 0.3, slotMs * 0.5)) };
  };
  for (const kind of options.kinds) {
    if (kind === 'kill') {
      // One kill in each of `count` equal slots of the run's middle 80 %, so restarts do not pile up.
      const count = Math.max(1, Math.round(duration / 4000));
      const slotMs = (duration * 0.8) / count;
      for (let i = 0; i < count; i++) {
        const skewMs = random.next() < 0.5 ? 0 : between(-clockSkewMsMax, clockSkewMsMax);
        const startMs = duration * 0.1 + i * slotMs;
        faults.push({ kind, atMs: between(startMs, startMs + slotMs * 0.8), skewMs });
      }
      continue;
    }
    const count = Math.max(1, Math.round(duration / 6000));
    for (let i = 0; i < count; i++) {
      if (kind === 'dependency')
        faults.push({ kind, ...window(i, count), mode: random.next() < 0.5 ? 'slow' : 'failing' });
      else faults.push({ kind, ...window(i, count) });
    }
  }
  return faults.sort((a, b) => a.atMs - b.atMs || a.kind.localeCompare(b.kind));
}

/** The faults of `schedule` at `indexes` (all of them when undefined); an index past its end is refused. */
export function selectFaults(schedule: readonly Fault[], indexes: readonly number[] | undefined): Fault[] {
  if (indexes === undefined) return [...schedule];
  for (const index of indexes) {
    if (!Number.isInteger(index) || index < 0 || index >= schedule.length) {
      throw new ValidationError(
        `'--faults' names fault ${index}, but this seed and duration schedule ${schedule.length} faults (0..${schedule.length - 1})`,
      );
    }
  }
  return schedule.filter((_, index) => indexes.includes(index));
}

/** One line per fault, as the report prints it. */
export function describeFault(fault: Fault): string {
  const at = `+${(fault.atMs / 1000).toFixed(1)} s`;
  switch (fault.kind) {
    case 'kill':
      return `${at}  kill -9 and restart${fault.skewMs === 0 ? '' : `, clock skewed ${fault.skewMs > 0 ? '+' : ''}${(fault.skewMs / 1000).toFixed(1)} s`}`;
    case 'dependency':
      return `${at}  dependency ${fault.mode} until +${(fault.untilMs / 1000).toFixed(1)} s`;
    case 'duplicate':
      return `${at}  duplicated deliveries until +${(fault.untilMs / 1000).toFixed(1)} s`;
    case 'reorder':
      return `${at}  reordered deliveries (up to ${reorderDelayMsMax} ms) until +${(fault.untilMs / 1000).toFixed(1)} s`;
    case 'disk-full':
      return `${at}  disk full until +${(fault.untilMs / 1000).toFixed(1)} s`;
  }
}
