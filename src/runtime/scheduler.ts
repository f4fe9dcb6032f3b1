import type { TimerRecord } from '../store/types.ts';
import type { Clock, TimerHandle, Timers } from '../time.ts';
import type { GroupCommitter } from './group-commit.ts';

export interface TimerSchedulerOptions {
  committer: GroupCommitter;
  clock: Clock;
  timers: Timers;
  /** Receives the timers that fell due (already deleted from the store). */
  onDue: (timers: readonly TimerRecord[]) => void;
  onError: (error: unknown) => void;
  /**
   * The work partitions whose timers this scheduler fires (cluster shape: those this node owns).
   * @default every timer
   */
  partitions?: () => readonly number[];
}

/** Timers one firing takes from the store per transaction. */
const timersPerFiring = 500;
/** The longest single wait armed on the Timers port; longer waits re-arm (Node caps at 2^31-1 ms). */
const maxArmDelayMs = 3_600_000;
/** After a failed firing, the next try. */
const retryAfterErrorMs = 1000;

/**
 * Fires durable timers (the store's timer table) through the Timers port: one port timer armed
 * for the earliest due time, re-armed when an earlier timer is scheduled. A firing takes the
 * due timers and deletes them in one transaction, then hands them to `onDue`.
 *
 * A timer is delivered at most once per firing; a crash after the delete loses only the
 * in-memory wake-up, which the saga's journal re-creates when the saga resumes on start.
 */
export class TimerScheduler {
  readonly #options: TimerSchedulerOptions;
  #armedAt: number | undefined;
  #handle: TimerHandle | undefined;
  #firing = false;
  /** The earliest due time scheduled while a firing ran. */
  #scheduledDuringFiring: number | undefined;
  #stopped = true;
  #current: Promise<void> = Promise.resolve();

  constructor(options: TimerSchedulerOptions) {
    this.#options = options;
  }

  async start(): Promise<void> {
    this.#stopped = false;
    await this.refresh();
  }

  /** Looks for the earliest timer again (after this node took over partitions). */
  async refresh(): Promise<void> {
    const filter = this.#filter();
    const next = await this.#options.committer.submit((scope) => scope.tx.timers.nextDueAt(filter));
    if (next !== null) this.notify(next);
  }

  #filter(): { partitions?: readonly number[] } {
    const partitions = this.#options.partitions?.();
    return partitions === undefined ? {} : { partitions };
  }

  /** A timer now exists at `dueAt`: fire no later than then. */
  notify(dueAt: number): void {
    if (this.#stopped) return;
    if (this.#firing) {
      this.#scheduledDuringFiring = Math.min(this.#scheduledDuringFiring ?? dueAt, dueAt);
      return;
    }
    if (this.#armedAt !== undefined && this.#armedAt <= dueAt) return;
    this.#arm(dueAt);
  }

  /** Stops firing; resolves when a firing in progress has finished. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#handle?.cancel();
    this.#handle = undefined;
    this.#armedAt = undefined;
    await this.#current;
  }

  #arm(dueAt: number): void {
    this.#handle?.cancel();
    this.#armedAt = dueAt;
    const delayMs = Math.min(maxArmDelayMs, Math.max(0, dueAt - this.#options.clock.now()));
    this.#handle = this.#options.timers.setTimeout(() => {
      this.#current = this.#fire();
    }, delayMs);
  }

  async #fire(): Promise<void> {
    this.#handle = undefined;
    this.#armedAt = undefined;
    if (this.#stopped) return;
    this.#firing = true;
    let next: number | null = null;
    try {
      for (;;) {
        const nowMs = this.#options.clock.now();
        const filter = this.#filter();
        const fired = await this.#options.committer.submit(async (scope) => {
          const due = await scope.tx.timers.due(nowMs, timersPerFiring, filter);
          for (const timer of due) await scope.tx.timers.delete(timer.id);
          return { due, next: await scope.tx.timers.nextDueAt(filter) };
        });
        next = fired.next;
        if (fired.due.length > 0) this.#options.onDue(fired.due);
        if (fired.due.length < timersPerFiring || this.#stopped) break;
      }
    } catch (error) {
      if (!this.#stopped) this.#options.onError(error);
      next = this.#options.clock.now() + retryAfterErrorMs;
    } finally {
      this.#firing = false;
    }
    const during = this.#scheduledDuringFiring;
    this.#scheduledDuringFiring = undefined;
    const at = next === null ? during : Math.min(next, during ?? next);
    if (at !== undefined && !this.#stopped) this.#arm(at);
  }
}
