/** The options every rate limiter shares, validated in one place. */
import { integerOption, invalidOption, numberOption, requiredOption } from './options.ts';

export interface LimitOptions {
  /** The sustained rate per key, in (0, 1_000_000_000]. Required: it is the limit itself. */
  ratePerSecond: number;
  /**
   * Requests a key may make at once after being idle, in [1, 1_000_000_000].
   * @default ratePerSecond rounded up: one second's worth
   */
  burst?: number;
}

export function checkLimitOptions(options: LimitOptions): { ratePerSecond: number; burst: number } {
  const ratePerSecond = numberOption(
    'ratePerSecond',
    requiredOption('ratePerSecond', options.ratePerSecond),
    0,
    0,
    1e9,
  );
  if (ratePerSecond === 0) invalidOption('ratePerSecond', '> 0', ratePerSecond);
  const burst = integerOption('burst', options.burst, Math.max(1, Math.ceil(ratePerSecond)), 1, 1e9);
  return { ratePerSecond, burst };
}
