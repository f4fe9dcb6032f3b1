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
  /**
   * SIGKILL the app's process (on a cluster, node `node`'s) and start it again on the same data;
   * `skewMs` shifts its clock.
   */
  | { readonly kind: 'kill'; readonly atMs: number; readonly skewMs: number; readonly node?: number }
  /**
   * A cluster node frozen (SIGSTOP) past its session timeout, then resumed (SIGCONT): the group
   * moves its work partitions meanwhile, and what it had in flight must meet the epoch fence
   * (a long GC pause, a VM stall, a node cut off the network and back).
   */
  | { readonly kind: 'pause'; readonly atMs: number; readonly untilMs: number; readonly node: number }
  /**
   * A cluster node cut off PostgreSQL and Kafka past its session timeout while its HTTP still
   * answers (its network namespace drops the packets), then joined again.
   */
  | { readonly kind: 'partition'; readonly atMs: number; readonly untilMs: number; readonly node: number }
  /** A Kafka broker (1-based) SIGKILLed, then restarted on its data. */
  | { readonly kind: 'broker'; readonly atMs: number; readonly untilMs: number; readonly broker: number }
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
  /** On a cluster spec: its nodes, its session timeout, and how many brokers broker faults may hit. */
  readonly cluster?: { readonly nodes: number; readonly sessionTimeoutMs: number; readonly brokers: number };
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
  const cluster = options.cluster;
  for (const kind of options.kinds) {
    if (kind === 'kill') {
      // One kill in each of `count` equal slots of the run's middle 80 %, so restarts do not pile
      // up; on a cluster one per 10 s, each of a node drawn from the seed.
      const count = Math.max(1, Math.round(duration / (cluster === undefined ? 4000 : 10_000)));
      const slotMs = (duration * 0.8) / count;
      for (let i = 0; i < count; i++) {
        const skewMs = random.next() < 0.5 ? 0 : between(-clockSkewMsMax, clockSkewMsMax);
        const startMs = duration * 0.1 + i * slotMs;
        const atMs = between(startMs, startMs + slotMs * 0.8);
        if (cluster === undefined) faults.push({ kind, atMs, skewMs });
        else faults.push({ kind, atMs, skewMs, node: between(0, cluster.nodes) });
      }
      continue;
    }
    if (kind === 'pause' || kind === 'partition' || kind === 'broker') {
      if (cluster !== undefined) faults.push(...clusterWindows(kind, cluster, duration, between));
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

/**
 * Pauses and partitions (each longer than the session timeout, so the work partitions move) and
 * broker losses (3 to 8 s), each in its own slot of the run's middle 80 %: as many as fit, at
 * most one of a kind per 20 s.
 */
function clusterWindows(
  kind: 'pause' | 'partition' | 'broker',
  cluster: NonNullable<ScheduleOptions['cluster']>,
  duration: number,
  between: (low: number, high: number) => number,
): Fault[] {
  if (kind === 'broker' && cluster.brokers === 0) return [];
  const longestMs = kind === 'broker' ? 8000 : cluster.sessionTimeoutMs + 4000;
  const count = Math.min(Math.round(duration / 20_000), Math.floor((duration * 0.8) / (longestMs * 1.5)));
  const slotMs = (duration * 0.8) / Math.max(count, 1);
  const faults: Fault[] = [];
  for (let i = 0; i < count; i++) {
    const lengthMs =
      kind === 'broker' ? between(3000, longestMs) : between(cluster.sessionTimeoutMs + 2000, longestMs);
    const startMs = duration * 0.1 + i * slotMs;
    const atMs = between(startMs, startMs + slotMs - lengthMs);
    const untilMs = atMs + lengthMs;
    if (kind === 'broker') faults.push({ kind, atMs, untilMs, broker: 1 + between(0, cluster.brokers) });
    else faults.push({ kind, atMs, untilMs, node: between(0, cluster.nodes) });
  }
  return faults;
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
      return `${at}  kill -9 and restart${fault.node === undefined ? '' : ` node ${fault.node}`}${fault.skewMs === 0 ? '' : `, clock skewed ${fault.skewMs > 0 ? '+' : ''}${(fault.skewMs / 1000).toFixed(1)} s`}`;
    case 'pause':
      return `${at}  node ${fault.node} paused (SIGSTOP) until +${(fault.untilMs / 1000).toFixed(1)} s`;
    case 'partition':
      return `${at}  node ${fault.node} cut off PostgreSQL and Kafka until +${(fault.untilMs / 1000).toFixed(1)} s`;
    case 'broker':
      return `${at}  Kafka broker ${fault.broker} killed (kill -9) until +${(fault.untilMs / 1000).toFixed(1)} s`;
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
