// The sticky partitioner places keyed records by murmur2 and spreads keyless ones over all
// partitions in runs of about `batchBytes`, as Kafka's producer does.
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../time.ts';
import { partitionForKey } from './murmur2.ts';
import { StickyPartitioner } from './partitioner.ts';

describe('StickyPartitioner', () => {
  it('puts a keyed record on partitionForKey(key)', () => {
    const partitioner = new StickyPartitioner({ random: seededRandom(1) });
    const key = new TextEncoder().encode('customer-7');
    expect(partitioner.partition('t', 12, key, 100)).toBe(partitionForKey(key, 12));
  });

  it('keeps keyless records on one partition until batchBytes went there, then moves round-robin', () => {
    const partitioner = new StickyPartitioner({ batchBytes: 300, random: seededRandom(7) });
    const chosen = Array.from({ length: 12 }, () => partitioner.partition('t', 4, null, 100));
    // Runs of three 100-byte records, each run on the next partition.
    const first = chosen[0]!;
    expect(chosen).toEqual([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3].map((step) => (first + step) % 4));
  });

  it('keeps a sticky partition per topic and stays in range when a topic shrinks', () => {
    const partitioner = new StickyPartitioner({ batchBytes: 1, random: seededRandom(3) });
    for (let i = 0; i < 20; i++) partitioner.partition('a', 16, null, 10);
    for (let i = 0; i < 20; i++) {
      const partition = partitioner.partition('a', 3, null, 10);
      expect(partition).toBeGreaterThanOrEqual(0);
      expect(partition).toBeLessThan(3);
    }
    partitioner.forget('a');
    expect(partitioner.partition('b', 1, null, 10)).toBe(0);
  });

  it('validates batchBytes', () => {
    expect(() => new StickyPartitioner({ batchBytes: 0 })).toThrow(
      "'batchBytes' must be an integer in [1, 67108864]: current value is 0",
    );
  });
});
