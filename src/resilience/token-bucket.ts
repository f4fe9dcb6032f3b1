/**
 * Token bucket, in process: each key has a bucket of `burst` tokens refilled continuously at
 * `ratePerSecond`; a request takes `cost` tokens or waits until there are enough. Over any
 * interval of t seconds a key gets at most ratePerSecond × t + burst units.
 */
import type { Clock } from '../time.ts';
import { BoundedKeyMap } from './key-map.ts';
import { checkLimitOptions, type LimitOptions } from './limiter-options.ts';
import { integerOption, portsOf, type TimePorts } from './options.ts';
import { checkCost, type RateLimitDecision, type RateLimiter } from './rate-limit.ts';

export interface InProcessLimitOptions extends LimitOptions, Pick<TimePorts, 'clock'> {
  /**
   * Keys tracked at once, in [1, 10_000_000]; the least recently used key is forgotten beyond
   * that, which gives it a full burst again.
   * @default 100_000
   */
  maxKeys?: number;
}

interface Bucket {
  tokens: number;
  updatedMs: number;
}

export class TokenBucketLimiter implements RateLimiter {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly #clock: Clock;
  readonly #buckets: BoundedKeyMap<Bucket>;

  constructor(options: InProcessLimitOptions) {
    ({ ratePerSecond: this.ratePerSecond, burst: this.burst } = checkLimitOptions(options));
    this.#buckets = new BoundedKeyMap(integerOption('maxKeys', options.maxKeys, 100_000, 1, 10_000_000));
    this.#clock = portsOf(options).clock;
  }

  consume(key: string, cost = 1): RateLimitDecision {
    if (cost !== 1) checkCost(cost, this.burst);
    const nowMs = this.#clock.monotonicNow();
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: this.burst, updatedMs: nowMs };
      this.#buckets.add(key, bucket);
    } else if (nowMs > bucket.updatedMs) {
      bucket.tokens = Math.min(
        this.burst,
        bucket.tokens + ((nowMs - bucket.updatedMs) * this.ratePerSecond) / 1000,
      );
      bucket.updatedMs = nowMs;
    }
    if (bucket.tokens >= cost) {
      bucket.tokens -= cost;
      return { allowed: true, retryAfterMs: 0, remaining: Math.floor(bucket.tokens) };
    }
    const retryAfterMs = Math.ceil(((cost - bucket.tokens) * 1000) / this.ratePerSecond);
    return { allowed: false, retryAfterMs, remaining: Math.floor(bucket.tokens) };
  }
}

/** An in-process token-bucket limiter. */
export function tokenBucket(options: InProcessLimitOptions): TokenBucketLimiter {
  return new TokenBucketLimiter(options);
}
