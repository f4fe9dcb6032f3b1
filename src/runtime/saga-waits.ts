/**
 * A saga execution's waits — sleeps and signal waits, several at once when its code runs them
 * concurrently — and its slot: when every call in flight is a wait, the execution gives its slot
 * back (`idle`, the saga scheduler's sleep) until the earliest wait's time or a signal, so that
 * sagas waiting for days hold no memory slot. Waits resolve on `wake` (a durable timer of the
 * saga fired), on `signalled` (a signal was delivered: signal waits look again) and on `release`
 * (the execution parks, or its code ended).
 */
interface Wait {
  readonly wakeAt: number;
  readonly signal: boolean;
  readonly resolve: () => void;
}

export interface WaitsOptions {
  /** Calls the execution has in flight (waits included). */
  readonly pending: () => number;
  /** Gives the slot back until `wakeAt` (or a signal, or parking): the scheduler's sleep. */
  readonly idle: (wakeAt: number) => Promise<void>;
  readonly now: () => number;
}

export class Waits {
  readonly #options: WaitsOptions;
  readonly #waits = new Set<Wait>();
  #idling = false;
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

  /** Ends every wait (parking, or the code ended). */
  release(): void {
    for (const wait of [...this.#waits]) wait.resolve();
  }

  /** Gives the slot back if every call in flight is a wait (call it when a call ends). */
  reconsider(): void {
    if (this.#idling || this.#waits.size === 0 || this.#waits.size < this.#options.pending()) return;
    this.#idling = true;
    let wakeAt = Number.POSITIVE_INFINITY;
    for (const wait of this.#waits) wakeAt = Math.min(wakeAt, wait.wakeAt);
    void this.#options.idle(wakeAt).then(() => {
      this.#idling = false;
      // Woken by a timer, a signal or parking: let each wait look at why.
      const nowMs = this.#options.now();
      for (const wait of [...this.#waits]) if (wait.wakeAt <= nowMs || wait.signal) wait.resolve();
      if (this.#waits.size > 0) this.reconsider();
    });
  }
}
