/**
 * Adaptive concurrency limits: algorithms that estimate how many calls a service can have in
 * flight before queueing sets in, from the latency and drops of the calls it completes. A load
 * shedder refuses calls beyond the estimate, so an overloaded service answers some requests fast
 * instead of all of them slowly.
 */
import { integerOption } from './options.ts';

export interface LimitSample {
  /** How long the call took. */
  rttMs: number;
  /** Calls in flight when it completed, itself included. */
  inFlight: number;
  /** Whether it failed in a way that signals overload (a timeout, a refusal downstream). */
  dropped: boolean;
}

export interface ConcurrencyLimit {
  /** The current limit: an integer in [minLimit, maxLimit]. */
  readonly limit: number;
  /** Feeds one completed call into the estimate. */
  update(sample: LimitSample): void;
}

export interface LimitBounds {
  /** The limit before any sample, in [minLimit, maxLimit]. @default 20 */
  initialLimit?: number;
  /** The limit never falls below this, in [1, maxLimit]. @default 1 */
  minLimit?: number;
  /** The limit never rises above this, in [1, 1_000_000]. @default 1000 */
  maxLimit?: number;
}

export function checkBounds(options: LimitBounds): {
  initialLimit: number;
  minLimit: number;
  maxLimit: number;
} {
  const maxLimit = integerOption('maxLimit', options.maxLimit, 1000, 1, 1_000_000);
  const minLimit = integerOption('minLimit', options.minLimit, 1, 1, maxLimit);
  const initialLimit = integerOption(
    'initialLimit',
    options.initialLimit,
    Math.min(Math.max(20, minLimit), maxLimit),
    minLimit,
    maxLimit,
  );
  return { initialLimit, minLimit, maxLimit };
}
