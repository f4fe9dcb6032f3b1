/**
 * AIMD (additive increase, multiplicative decrease), as TCP congestion control does it: each
 * call that completes without a drop while the limit is at least half used raises the limit by
 * one; each drop multiplies it by `backoffRatio`. Simple and stable; it reacts to drops only, or
 * also to latency when `slowCallDurationMs` marks slow calls as drops.
 */
import {
  type ConcurrencyLimit,
  checkBounds,
  type LimitBounds,
  type LimitSample,
} from './concurrency-limit.ts';
import { durationOption, numberOption } from './options.ts';

export interface AimdLimitOptions extends LimitBounds {
  /** What a drop multiplies the limit by, in [0.5, 0.99]. @default 0.9 */
  backoffRatio?: number;
  /**
   * A call taking at least this long counts as a drop, in [1, 86_400_000].
   * @default undefined — only failures signalling overload are drops
   */
  slowCallDurationMs?: number;
}

export class AimdLimit implements ConcurrencyLimit {
  readonly minLimit: number;
  readonly maxLimit: number;
  readonly backoffRatio: number;
  readonly slowCallDurationMs: number | undefined;
  #limit: number;

  constructor(options: AimdLimitOptions = {}) {
    ({ initialLimit: this.#limit, minLimit: this.minLimit, maxLimit: this.maxLimit } = checkBounds(options));
    this.backoffRatio = numberOption('backoffRatio', options.backoffRatio, 0.9, 0.5, 0.99);
    this.slowCallDurationMs =
      options.slowCallDurationMs === undefined
        ? undefined
        : durationOption('slowCallDurationMs', options.slowCallDurationMs, 0, 1);
  }

  get limit(): number {
    return this.#limit;
  }

  update({ rttMs, inFlight, dropped }: LimitSample): void {
    const slow = this.slowCallDurationMs !== undefined && rttMs >= this.slowCallDurationMs;
    if (dropped || slow) {
      this.#limit = Math.max(this.minLimit, Math.floor(this.#limit * this.backoffRatio));
    } else if (inFlight * 2 >= this.#limit) {
      // Only grow while the limit is in use: an idle service must not talk itself into a limit
      // it never tested.
      this.#limit = Math.min(this.maxLimit, this.#limit + 1);
    }
  }
}

/** An AIMD concurrency limit. */
export function aimdLimit(options: AimdLimitOptions = {}): AimdLimit {
  return new AimdLimit(options);
}
