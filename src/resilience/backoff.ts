/**
 * Backoff strategies: how long a retry waits before each new attempt. Every delay lies in
 * [0, maxDelayMs]; jitter spreads the retries of many callers apart so that they do not come
 * back in lockstep and knock the recovering dependency over again.
 */
import type { Random } from '../time.ts';
import { durationOption, integerOption, MAX_DURATION_MS, numberOption, oneOfOption } from './options.ts';

export interface Backoff {
  /** The largest delay this backoff ever returns. */
  readonly maxDelayMs: number;
  /**
   * The delay before retry number `retry` (1 for the first retry), given the delay chosen
   * before the previous retry (0 before the first).
   */
  delayMs(retry: number, previousDelayMs: number, random: Random): number;
}

export interface ConstantBackoffOptions {
  /** The delay before every retry, in [0, 86_400_000]. @default 0 */
  delayMs?: number;
}

/** The same delay before every retry. */
export function constantBackoff(options: ConstantBackoffOptions = {}): Backoff {
  const delayMs = durationOption('delayMs', options.delayMs, 0);
  return { maxDelayMs: delayMs, delayMs: () => delayMs };
}

/**
 * - `none`: initialDelayMs × multiplier^(retry-1), capped at maxDelayMs.
 * - `full`: a uniform random delay in [0, that]: the "full jitter" that AWS found to finish
 *   contended work soonest while spreading load best.
 * - `equal`: a uniform random delay in [that/2, that]: spread like `full`, but never much
 *   shorter than the exponential delay, so a retry always gives the dependency a real pause.
 * - `decorrelated`: a uniform random delay in [initialDelayMs, multiplier × the previous delay],
 *   capped: each delay grows from the last one actually chosen rather than from the attempt count.
 */
export type Jitter = 'none' | 'full' | 'equal' | 'decorrelated';

export interface ExponentialBackoffOptions {
  /** The base delay, in [0, 86_400_000]. @default 100 */
  initialDelayMs?: number;
  /** The cap on any delay, in [initialDelayMs, 86_400_000]. @default 10_000 */
  maxDelayMs?: number;
  /** How much the delay grows per retry, in [1, 10]. @default 2 */
  multiplier?: number;
  /** @default 'full' */
  jitter?: Jitter;
}

/** Delays that grow geometrically up to a cap, with optional jitter. */
export function exponentialBackoff(options: ExponentialBackoffOptions = {}): Backoff {
  const initialDelayMs = durationOption('initialDelayMs', options.initialDelayMs, 100);
  const maxDelayMs = integerOption(
    'maxDelayMs',
    options.maxDelayMs,
    Math.max(10_000, initialDelayMs),
    initialDelayMs,
    MAX_DURATION_MS,
  );
  const multiplier = numberOption('multiplier', options.multiplier, 2, 1, 10);
  const jitter = oneOfOption('jitter', options.jitter, 'full', ['none', 'full', 'equal', 'decorrelated']);

  // Cap before multiplying by a random factor: 0 × Infinity would be NaN on a late retry. The
  // power itself overflows to Infinity after ~1,000 retries (the runtime retries compensations
  // without bound), which the cap absorbs, except times a zero base: that stays zero.
  const ceiling = (retry: number) =>
    initialDelayMs === 0 ? 0 : Math.min(maxDelayMs, initialDelayMs * multiplier ** (retry - 1));

  switch (jitter) {
    case 'none':
      return { maxDelayMs, delayMs: (retry) => Math.floor(ceiling(retry)) };
    case 'full':
      return {
        maxDelayMs,
        delayMs: (retry, _previous, random) => Math.floor(random.next() * ceiling(retry)),
      };
    case 'equal':
      return {
        maxDelayMs,
        delayMs(retry, _previous, random) {
          const delayMs = ceiling(retry);
          return Math.floor(delayMs / 2 + (random.next() * delayMs) / 2);
        },
      };
    case 'decorrelated':
      return {
        maxDelayMs,
        delayMs(_retry, previousDelayMs, random) {
          const upper = Math.min(maxDelayMs, Math.max(initialDelayMs, previousDelayMs) * multiplier);
          return Math.floor(initialDelayMs + random.next() * (upper - initialDelayMs));
        },
      };
  }
}
