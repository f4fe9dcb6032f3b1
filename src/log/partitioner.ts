import { type Random, systemRandom } from '../time.ts';
import { partitionForKey } from './murmur2.ts';
import { checkInteger } from './validation.ts';

/** Kafka's `batch.size` default: the sticky partitioner moves on after this many bytes. */
export const defaultStickyBatchBytes = 16_384;

export interface StickyPartitionerOptions {
  /** Bytes of keyless records sent to one partition before moving to the next. @default 16384, in [1, 67108864] */
  batchBytes?: number;
  /** Picks the first partition of each topic, so that processes do not all start on partition 0. @default systemRandom */
  random?: Random;
}

/**
 * Chooses a partition the way Kafka's producer does: a keyed record goes to
 * `partitionForKey(key, n)`; keyless records stick to one partition until `batchBytes` have gone
 * there, then move on round-robin (Kafka's KIP-794 sticky partitioner; Kafka picks the next
 * partition at random, this one in turn, so the spread is even and deterministic).
 */
export class StickyPartitioner {
  readonly #batchBytes: number;
  readonly #random: Random;
  readonly #sticky = new Map<string, { partition: number; bytes: number }>();

  constructor(options: StickyPartitionerOptions = {}) {
    this.#batchBytes = checkInteger(
      'batchBytes',
      options.batchBytes ?? defaultStickyBatchBytes,
      1,
      67_108_864,
    );
    this.#random = options.random ?? systemRandom;
  }

  /** The partition of one record of `recordBytes` bytes with key bytes `key` (null: keyless). */
  partition(topic: string, numPartitions: number, key: Uint8Array | null, recordBytes: number): number {
    if (key !== null) return partitionForKey(key, numPartitions);
    let state = this.#sticky.get(topic);
    if (state === undefined) {
      state = { partition: Math.floor(this.#random.next() * numPartitions), bytes: 0 };
      this.#sticky.set(topic, state);
    } else if (state.bytes >= this.#batchBytes) {
      state.partition = state.partition + 1;
      state.bytes = 0;
    }
    // The topic may have been recreated with fewer partitions since the last record.
    state.partition %= numPartitions;
    state.bytes += recordBytes;
    return state.partition;
  }

  /** Forgets a topic's sticky partition (when the topic is deleted). */
  forget(topic: string): void {
    this.#sticky.delete(topic);
  }
}
