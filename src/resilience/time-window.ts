/**
 * The outcomes of the calls made in the last `windowMs`, for a time-based circuit breaker. Time
 * is cut into `bucketCount` buckets; recording adds to the current bucket, and buckets that fall
 * out of the window are subtracted from running totals as time moves on. A call made just inside
 * the window may be forgotten up to one bucket early: the window's resolution is one bucket.
 */
import { assert } from '../assert.ts';

export class TimeWindow {
  readonly windowMs: number;
  readonly bucketMs: number;
  readonly #calls: Float64Array;
  readonly #failures: Float64Array;
  readonly #slowCalls: Float64Array;
  /** The index (time / bucketMs) of the newest bucket, or -Infinity before the first record. */
  #newestBucket = Number.NEGATIVE_INFINITY;
  #totalCalls = 0;
  #totalFailures = 0;
  #totalSlowCalls = 0;

  constructor(windowMs: number, bucketCount: number) {
    assert(Number.isInteger(bucketCount) && bucketCount >= 1, 'a time window has at least one bucket');
    assert(windowMs >= bucketCount, 'every bucket spans at least 1 ms');
    this.windowMs = windowMs;
    this.bucketMs = windowMs / bucketCount;
    this.#calls = new Float64Array(bucketCount);
    this.#failures = new Float64Array(bucketCount);
    this.#slowCalls = new Float64Array(bucketCount);
  }

  /** Calls in the window as of `nowMs`. */
  calls(nowMs: number): number {
    this.#advance(nowMs);
    return this.#totalCalls;
  }

  failures(nowMs: number): number {
    this.#advance(nowMs);
    return this.#totalFailures;
  }

  slowCalls(nowMs: number): number {
    this.#advance(nowMs);
    return this.#totalSlowCalls;
  }

  record(failed: boolean, slow: boolean, nowMs: number): void {
    this.#advance(nowMs);
    const index = this.#indexOf(this.#newestBucket);
    this.#calls[index]! += 1;
    this.#totalCalls++;
    if (failed) {
      this.#failures[index]! += 1;
      this.#totalFailures++;
    }
    if (slow) {
      this.#slowCalls[index]! += 1;
      this.#totalSlowCalls++;
    }
  }

  reset(): void {
    this.#calls.fill(0);
    this.#failures.fill(0);
    this.#slowCalls.fill(0);
    this.#newestBucket = Number.NEGATIVE_INFINITY;
    this.#totalCalls = 0;
    this.#totalFailures = 0;
    this.#totalSlowCalls = 0;
  }

  #indexOf(bucket: number): number {
    const count = this.#calls.length;
    return ((bucket % count) + count) % count;
  }

  /** Clears every bucket between the newest one and the one `nowMs` falls in. */
  #advance(nowMs: number): void {
    const bucket = Math.floor(nowMs / this.bucketMs);
    if (bucket <= this.#newestBucket) return;
    const count = this.#calls.length;
    // At most `count` buckets need clearing however far time jumped.
    const first = Math.max(this.#newestBucket + 1, bucket - count + 1);
    for (let stale = first; stale <= bucket; stale++) {
      const index = this.#indexOf(stale);
      this.#totalCalls -= this.#calls[index]!;
      this.#totalFailures -= this.#failures[index]!;
      this.#totalSlowCalls -= this.#slowCalls[index]!;
      this.#calls[index] = 0;
      this.#failures[index] = 0;
      this.#slowCalls[index] = 0;
    }
    this.#newestBucket = bucket;
    assert(
      this.#totalCalls >= 0 && this.#totalFailures >= 0 && this.#totalSlowCalls >= 0,
      'window totals stay non-negative',
    );
  }
}
