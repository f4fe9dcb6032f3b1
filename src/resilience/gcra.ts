/**
 * GCRA (generic cell rate algorithm), in process: the token bucket's behaviour kept as a single
 * number per key, the theoretical arrival time (TAT) of the next request at the sustained rate.
 * A request is allowed when it does not come more than `burst` emission intervals before its
 * TAT. Over any interval of t seconds a key gets at most ratePerSecond × t + burst units.
 */
import type { Clock } from '../time.ts';
import { BoundedKeyMap } from './key-map.ts';
import { checkLimitOptions } from './limiter-options.ts';
import { integerOption, portsOf } from './options.ts';
import { checkCost, type RateLimitDecision, type RateLimiter } from './rate-limit.ts';
import type { InProcessLimitOptions } from './token-bucket.ts';

interface Cell {
  theoreticalArrivalMs: number;
}

/** Float rounding must not turn "exactly 3 left" into 2. */
const EPSILON = 1e-9;

export class GcraLimiter implements RateLimiter {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly #emissionIntervalMs: number;
  readonly #clock: Clock;
  readonly #cells: BoundedKeyMap<Cell>;

  constructor(options: InProcessLimitOptions) {
    ({ ratePerSecond: this.ratePerSecond, burst: this.burst } = checkLimitOptions(options));
    this.#emissionIntervalMs = 1000 / this.ratePerSecond;
    this.#cells = new BoundedKeyMap(integerOption('maxKeys', options.maxKeys, 100_000, 1, 10_000_000));
    this.#clock = portsOf(options).clock;
  }

  consume(key: string, cost = 1): RateLimitDecision {
    if (cost !== 1) checkCost(cost, this.burst);
    const nowMs = this.#clock.monotonicNow();
    const interval = this.#emissionIntervalMs;
    let cell = this.#cells.get(key);
    if (cell === undefined) {
      cell = { theoreticalArrivalMs: nowMs };
      this.#cells.add(key, cell);
    }
    const arrivalMs = Math.max(cell.theoreticalArrivalMs, nowMs);
    const nextArrivalMs = arrivalMs + cost * interval;
    const allowAtMs = nextArrivalMs - this.burst * interval;
    if (nowMs < allowAtMs - EPSILON * interval) {
      const remaining = Math.floor((nowMs + this.burst * interval - arrivalMs) / interval + EPSILON);
      return {
        allowed: false,
        retryAfterMs: Math.ceil(allowAtMs - nowMs),
        remaining: Math.max(0, remaining),
      };
    }
    cell.theoreticalArrivalMs = nextArrivalMs;
    const remaining = Math.floor((nowMs + this.burst * interval - nextArrivalMs) / interval + EPSILON);
    return { allowed: true, retryAfterMs: 0, remaining: Math.max(0, remaining) };
  }
}

/** An in-process GCRA limiter. */
export function gcra(options: InProcessLimitOptions): GcraLimiter {
  return new GcraLimiter(options);
}
