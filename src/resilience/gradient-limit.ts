/**
 * Gradient limit (after Netflix's Gradient2): compares a short-term latency (the latest call)
 * with a long-term baseline (an exponential average over `longWindowSamples` calls). While the
 * two agree the limit grows by `queueSize`; when latency rises above the baseline by more than
 * `rttTolerance` the limit shrinks in proportion, because rising latency means calls are
 * queueing somewhere. Each step is smoothed, and the limit is held while less than half used.
 */
import {
  type ConcurrencyLimit,
  checkBounds,
  type LimitBounds,
  type LimitSample,
} from './concurrency-limit.ts';
import { integerOption, numberOption, ratioOption } from './options.ts';

export interface GradientLimitOptions extends LimitBounds {
  /** How much latency may exceed its baseline before the limit shrinks, in [1, 10]. @default 1.5 */
  rttTolerance?: number;
  /** Calls the baseline averages over, in [10, 100_000]. @default 600 */
  longWindowSamples?: number;
  /** How much of each new estimate is taken, in (0, 1]. @default 0.2 */
  smoothing?: number;
  /** Headroom added to the estimate so the limit can grow, in [0, 1000]. @default 4 */
  queueSize?: number;
}

export class GradientLimit implements ConcurrencyLimit {
  readonly minLimit: number;
  readonly maxLimit: number;
  readonly rttTolerance: number;
  readonly longWindowSamples: number;
  readonly smoothing: number;
  readonly queueSize: number;
  #estimate: number;
  #longRttMs = 0;
  #samples = 0;

  constructor(options: GradientLimitOptions = {}) {
    ({
      initialLimit: this.#estimate,
      minLimit: this.minLimit,
      maxLimit: this.maxLimit,
    } = checkBounds(options));
    this.rttTolerance = numberOption('rttTolerance', options.rttTolerance, 1.5, 1, 10);
    this.longWindowSamples = integerOption('longWindowSamples', options.longWindowSamples, 600, 10, 100_000);
    this.smoothing = ratioOption('smoothing', options.smoothing, 0.2);
    this.queueSize = integerOption('queueSize', options.queueSize, 4, 0, 1000);
  }

  get limit(): number {
    return Math.floor(this.#estimate);
  }

  /** The long-term latency baseline, in ms. */
  get baselineRttMs(): number {
    return this.#longRttMs;
  }

  update({ rttMs, inFlight }: LimitSample): void {
    const shortRttMs = Math.max(rttMs, 0.001);
    this.#samples++;
    if (this.#samples === 1) this.#longRttMs = shortRttMs;
    else {
      // A warm-up average over the first samples, then a fixed window.
      const weight = 1 / Math.min(this.#samples, this.longWindowSamples);
      this.#longRttMs += (shortRttMs - this.#longRttMs) * weight;
    }
    // After a long overload the baseline is inflated; pull it down faster than the average would,
    // so the limit recovers once latency is back to normal.
    if (this.#longRttMs / shortRttMs > 2) this.#longRttMs *= 0.95;
    if (inFlight * 2 < this.#estimate) return;
    const gradient = Math.max(0.5, Math.min(1, (this.rttTolerance * this.#longRttMs) / shortRttMs));
    const target = this.#estimate * gradient + this.queueSize;
    const next = this.#estimate * (1 - this.smoothing) + target * this.smoothing;
    this.#estimate = Math.max(this.minLimit, Math.min(this.maxLimit, next));
  }
}

/** A gradient concurrency limit. */
export function gradientLimit(options: GradientLimitOptions = {}): GradientLimit {
  return new GradientLimit(options);
}
