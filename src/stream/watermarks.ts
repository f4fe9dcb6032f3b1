import type { Json } from '../store/types.ts';
import type { Clock } from '../time.ts';

/** No watermark yet: nothing has been seen, so no window can fire. */
export const noWatermark = Number.NEGATIVE_INFINITY;

/**
 * Event-time progress of a multi-partition input. Each partition's watermark is the highest event
 * time it has delivered minus the bounded out-of-orderness minus 1 ms (Flink's
 * BoundedOutOfOrdernessWatermarks): a record at most `outOfOrdernessMs` older than the newest one
 * is still on time. The input's watermark is the least of its partitions', so one slow partition
 * holds it back, as it must: its records are yet to come.
 *
 * An idle partition (no record for `idleTimeoutMs` of processing time, on the Clock) does not
 * hold it back: it is left out of the minimum until it delivers again, the pain that makes Flink
 * and Beam jobs stall when a partition goes quiet. The watermark never moves backwards, even when
 * an idle partition wakes up behind it: its records are then judged late or on time against it.
 */
export class WatermarkTracker {
  readonly #outOfOrdernessMs: number;
  readonly #idleTimeoutMs: number | null;
  readonly #clock: Clock;
  readonly #maxTimestampMs: number[];
  readonly #lastActiveMs: number[];
  #watermarkMs = noWatermark;
  /** Processing time as of the last markActive or refresh: read once per batch, not per record. */
  #nowMs: number;

  constructor(
    partitions: number,
    options: { outOfOrdernessMs: number; idleTimeoutMs: number | null; clock: Clock },
  ) {
    this.#outOfOrdernessMs = options.outOfOrdernessMs;
    this.#idleTimeoutMs = options.idleTimeoutMs;
    this.#clock = options.clock;
    this.#maxTimestampMs = new Array<number>(partitions).fill(noWatermark);
    this.#nowMs = options.clock.now();
    this.#lastActiveMs = new Array<number>(partitions).fill(this.#nowMs);
  }

  /** The input's watermark: every record at or before it has been seen (up to lateness). */
  get watermarkMs(): number {
    return this.#watermarkMs;
  }

  /** The partition delivered records now (processing time): it is not idle. */
  markActive(partition: number): void {
    this.#nowMs = this.#clock.now();
    this.#lastActiveMs[partition] = this.#nowMs;
  }

  /**
   * Records event time `timestampMs` from `partition`; returns the input's watermark after it. A
   * hot path: one comparison unless the partition's maximum moved.
   */
  observe(partition: number, timestampMs: number): number {
    if (timestampMs > this.#maxTimestampMs[partition]!) {
      this.#maxTimestampMs[partition] = timestampMs;
      this.#recompute();
    }
    return this.#watermarkMs;
  }

  /** Re-evaluates idleness on the Clock (call when no records arrive); returns the watermark. */
  refresh(): number {
    this.#nowMs = this.#clock.now();
    this.#recompute();
    return this.#watermarkMs;
  }

  /** Which partitions counted as idle at the last markActive or refresh. */
  idlePartitions(): number[] {
    const idle: number[] = [];
    for (let partition = 0; partition < this.#maxTimestampMs.length; partition++) {
      if (this.#isIdle(partition, this.#nowMs)) idle.push(partition);
    }
    return idle;
  }

  #isIdle(partition: number, nowMs: number): boolean {
    return this.#idleTimeoutMs !== null && nowMs - this.#lastActiveMs[partition]! >= this.#idleTimeoutMs;
  }

  #recompute(): void {
    const partitions = this.#maxTimestampMs.length;
    let least = Number.POSITIVE_INFINITY;
    let anyActive = false;
    const nowMs = this.#nowMs;
    for (let partition = 0; partition < partitions; partition++) {
      if (this.#isIdle(partition, nowMs)) continue;
      anyActive = true;
      const candidate = this.#maxTimestampMs[partition]! - this.#outOfOrdernessMs - 1;
      if (candidate < least) least = candidate;
    }
    // All idle: nothing holds time back but nothing moves it either.
    if (anyActive && least > this.#watermarkMs) this.#watermarkMs = least;
  }

  /** Moves the watermark to the end of time: a bounded input has been read to its end. */
  finish(): number {
    this.#watermarkMs = Number.POSITIVE_INFINITY;
    return this.#watermarkMs;
  }

  snapshot(): Json {
    return {
      watermarkMs: encodeTime(this.#watermarkMs),
      maxTimestampMs: this.#maxTimestampMs.map(encodeTime),
    };
  }

  restore(snapshot: Json): void {
    const value = snapshot as { watermarkMs: number | string; maxTimestampMs: Array<number | string> };
    this.#watermarkMs = decodeTime(value.watermarkMs);
    value.maxTimestampMs.forEach((timeMs, partition) => {
      if (partition < this.#maxTimestampMs.length) this.#maxTimestampMs[partition] = decodeTime(timeMs);
    });
  }
}

/** JSON has no infinities: they travel as strings. */
export function encodeTime(timeMs: number): number | string {
  return Number.isFinite(timeMs) ? timeMs : timeMs > 0 ? '+inf' : '-inf';
}

export function decodeTime(value: number | string): number {
  if (value === '+inf') return Number.POSITIVE_INFINITY;
  if (value === '-inf') return Number.NEGATIVE_INFINITY;
  return value as number;
}
