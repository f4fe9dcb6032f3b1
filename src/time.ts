/**
 * Ports for time, timers and randomness. Core code never calls Date.now, setTimeout or
 * Math.random directly (a lint rule enforces it): it takes these ports, so a whole app can run
 * under a virtual clock and a seeded random source and a failing run replays exactly.
 */

export interface Clock {
  /** Wall-clock time in milliseconds since the Unix epoch. */
  now(): number;
  /** A monotonic reading in milliseconds, for measuring durations. */
  monotonicNow(): number;
}

export interface TimerHandle {
  cancel(): void;
  /**
   * Lets the process exit while this timer is pending (background housekeeping such as
   * retention). A no-op for timers that never hold a process open, like ManualClock's.
   */
  unref?(): void;
}

export interface Timers {
  /** Calls `callback` once after `delayMs` milliseconds, unless cancelled first. */
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
}

export interface Random {
  /** A float in [0, 1). */
  next(): number;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonicNow: () => performance.now(),
};

export const systemTimers: Timers = {
  setTimeout(callback, delayMs) {
    const handle = setTimeout(callback, delayMs);
    return {
      cancel: () => clearTimeout(handle),
      unref: () => {
        handle.unref();
      },
    };
  },
};

export const systemRandom: Random = { next: () => Math.random() };

/** Mulberry32: small, fast, and good enough for jitter and simulation. Same seed, same sequence. */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  return {
    next() {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
  };
}

/**
 * Resolves after every microtask queued so far (and every one those queue) has run. Tests
 * driving code under a ManualClock use it so promise continuations settle before they assert.
 */
export function flushMicrotasks(): Promise<void> {
  // setImmediate runs in the check phase, after the microtask queue has drained completely.
  return new Promise((resolve) => setImmediate(resolve));
}

interface PendingTimer {
  dueMs: number;
  sequence: number;
  callback: () => void;
  cancelled: boolean;
}

/**
 * A manual clock and timer scheduler for tests and simulation. Time moves only when
 * `advance` or `runNext` is called; timers fire in due order (ties in creation order).
 */
export class ManualClock implements Clock, Timers {
  #nowMs: number;
  #sequence = 0;
  #pending: PendingTimer[] = [];

  constructor(startMs = 0) {
    this.#nowMs = startMs;
  }

  now(): number {
    return this.#nowMs;
  }

  monotonicNow(): number {
    return this.#nowMs;
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const timer: PendingTimer = {
      dueMs: this.#nowMs + Math.max(0, delayMs),
      sequence: this.#sequence++,
      callback,
      cancelled: false,
    };
    this.#pending.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** How many timers are waiting to fire. */
  get pendingTimers(): number {
    return this.#pending.filter((timer) => !timer.cancelled).length;
  }

  /** Moves time forward by `deltaMs`, firing every timer that falls due on the way. */
  advance(deltaMs: number): void {
    const targetMs = this.#nowMs + deltaMs;
    for (;;) {
      const next = this.#takeNext(targetMs);
      if (next === undefined) break;
      this.#nowMs = next.dueMs;
      next.callback();
    }
    this.#nowMs = targetMs;
  }

  /**
   * Like `advance`, but lets promise continuations run after each timer fires, so a timer that
   * a continuation schedules (a retry's next delay, a re-armed deadline) fires within the same
   * step when it falls due before `deltaMs` has passed.
   */
  async advanceAsync(deltaMs: number): Promise<void> {
    const targetMs = this.#nowMs + deltaMs;
    await flushMicrotasks();
    for (;;) {
      const next = this.#takeNext(targetMs);
      if (next === undefined) break;
      this.#nowMs = next.dueMs;
      next.callback();
      await flushMicrotasks();
    }
    this.#nowMs = targetMs;
    await flushMicrotasks();
  }

  /** Jumps to the next due timer and fires it. Returns false when none is pending. */
  runNext(): boolean {
    const next = this.#takeNext(Number.POSITIVE_INFINITY);
    if (next === undefined) return false;
    this.#nowMs = Math.max(this.#nowMs, next.dueMs);
    next.callback();
    return true;
  }

  #takeNext(limitMs: number): PendingTimer | undefined {
    this.#pending = this.#pending.filter((timer) => !timer.cancelled);
    let best: PendingTimer | undefined;
    for (const timer of this.#pending) {
      if (timer.dueMs > limitMs) continue;
      if (
        best === undefined ||
        timer.dueMs < best.dueMs ||
        (timer.dueMs === best.dueMs && timer.sequence < best.sequence)
      ) {
        best = timer;
      }
    }
    if (best !== undefined) this.#pending.splice(this.#pending.indexOf(best), 1);
    return best;
  }
}
