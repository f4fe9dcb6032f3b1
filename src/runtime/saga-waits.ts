import type { Yield } from './group-commit.ts';

/**
 * A saga execution's waits — sleeps and signal waits, several at once when its code runs them
 * concurrently — and its slot: when every call in flight is a wait, the execution gives its slot
 * back (`idle`, the saga scheduler's sleep) until the earliest wait's time or a signal, so that
 * sagas waiting for days hold no memory slot. Waits resolve on `wake` (a durable timer of the
 * saga fired), on `signalled` (a signal was delivered: signal waits look again), on `cancelled`
 * and on `release` (the execution parks, or its code ended).
 *
 * The slot must be held again before anything else runs: a call that is not a wait first waits
 * for `active` (which ends the idling and takes a slot), and the execution `close`s its waits
 * before it compensates or ends, so it never ends while the scheduler counts it as sleeping.
 */
interface Wait {
  readonly wakeAt: number;
  readonly signal: boolean;
  readonly resolve: () => void;
}

export interface WaitsOptions {
  /** Calls the execution has in flight (waits included). */
  readonly pending: () => number;
  /** Gives the slot back until `wakeAt` (or a signal, or parking, or `wakeIdle`): the scheduler's sleep. */
  readonly idle: (wakeAt: number) => Promise<void>;
  /** Ends `idle` early (it resolves once the slot is back). */
  readonly wakeIdle: () => void;
  readonly now: () => number;
  /** A turn of the event loop: the code may make another call before the execution idles. */
  readonly yield: Yield;
}

export class Waits {
  readonly #options: WaitsOptions;
  readonly #waits = new Set<Wait>();
  #idle: Promise<void> | null = null;
  #checking = false;
  #closed = false;
  /** The saga is asked to cancel: every wait ends now, and so does every later one. */
  #cancelled = false;
  /** Counts signal deliveries, so a wait that looked before one arrived looks again. */
  signals = 0;

  constructor(options: WaitsOptions) {
    this.#options = options;
  }

  /**
   * Resolves at `wakeAt` (Infinity: no time), or for a signal wait also when a signal arrives,
   * or on `release`. The caller checks why.
   */
  until(wakeAt: number, signal = false): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.#closed || this.#cancelled) return resolve();
      const wait: Wait = {
        wakeAt,
        signal,
        resolve: () => {
          this.#waits.delete(wait);
          resolve();
        },
      };
      this.#waits.add(wait);
      this.reconsider();
    });
  }

  /** A durable timer of the saga fired at `nowMs`. */
  wake(nowMs: number): void {
    for (const wait of [...this.#waits]) if (wait.wakeAt <= nowMs) wait.resolve();
  }

  /** A signal was delivered to the saga. */
  signalled(): void {
    this.signals++;
    for (const wait of [...this.#waits]) if (wait.signal) wait.resolve();
  }

  /** The saga is asked to cancel: ends every wait, so each stops at its durable boundary. */
  cancelled(): void {
    this.#cancelled = true;
    this.release();
  }

  /** Ends every wait (parking). */
  release(): void {
    for (const wait of [...this.#waits]) wait.resolve();
  }

  /** The code ended: ends every wait and the idling, and idles no more. */
  async close(): Promise<void> {
    this.#closed = true;
    this.release();
    await this.active();
  }

  /** Before work that needs the slot: ends the idling, if any, once the slot is back. */
  async active(): Promise<void> {
    if (this.#idle === null) return;
    this.#options.wakeIdle();
    await this.#idle;
  }

  /** Gives the slot back, a turn from now, if every call in flight is then a wait. */
  reconsider(): void {
    if (this.#waits.size === 0 || this.#checking || this.#idle !== null || this.#closed) return;
    this.#checking = true;
    void this.#options.yield().then(() => {
      this.#checking = false;
      this.#maybeIdle();
    });
  }

  #maybeIdle(): void {
    if (this.#idle !== null || this.#closed) return;
    if (this.#waits.size === 0 || this.#waits.size < this.#options.pending()) return;
    let wakeAt = Number.POSITIVE_INFINITY;
    for (const wait of this.#waits) wakeAt = Math.min(wakeAt, wait.wakeAt);
    this.#idle = this.#options.idle(wakeAt).then(() => {
      this.#idle = null;
      // Woken by a timer, a signal, parking or work to do: let each wait look at why.
      const nowMs = this.#options.now();
      for (const wait of [...this.#waits]) if (wait.wakeAt <= nowMs || wait.signal) wait.resolve();
      if (this.#waits.size > 0) this.reconsider();
    });
  }
}
