// murmur2 and partitionForKey reproduce Kafka's Java client bit for bit, so a key lands on the
// same partition in the embedded log as in a real Kafka cluster.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { murmur2, partitionForKey, toPositive } from './murmur2.ts';

const utf8 = (text: string) => new TextEncoder().encode(text);

describe('murmur2', () => {
  // The cases of Kafka's UtilsTest.testMurmur2 (clients/src/test/java/org/apache/kafka/common/utils).
  it.each([
    ['21', -973932308],
    ['foobar', -790332482],
    ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
  ])('hashes %j to Kafka’s value %i', (input, expected) => {
    expect(murmur2(utf8(input))).toBe(expected);
  });

  it("hashes the bytes {'a','b','c'} to Kafka's 479470107", () => {
    expect(murmur2(new Uint8Array([0x61, 0x62, 0x63]))).toBe(479470107);
  });

  it('returns a signed 32-bit integer for any input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const hash = murmur2(bytes);
        expect(Number.isInteger(hash)).toBe(true);
        expect(hash).toBeGreaterThanOrEqual(-(2 ** 31));
        expect(hash).toBeLessThan(2 ** 31);
      }),
    );
  });
});

describe('partitionForKey', () => {
  it('is toPositive(murmur2(key)) % n, as Kafka’s BuiltInPartitioner', () => {
    // "foobar" hashes to -790332482; & 0x7fffffff gives 1357151166, and 1357151166 % 50 = 16.
    expect(toPositive(-790332482)).toBe(1357151166);
    expect(partitionForKey(utf8('foobar'), 50)).toBe(16);
    expect(toPositive(-(2 ** 31))).toBe(0);
  });

  it('is always a partition in range and the same for the same key', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 1, max: 1024 }), (key, partitions) => {
        const partition = partitionForKey(key, partitions);
        expect(Number.isInteger(partition)).toBe(true);
        expect(partition).toBeGreaterThanOrEqual(0);
        expect(partition).toBeLessThan(partitions);
        expect(partitionForKey(Uint8Array.from(key), partitions)).toBe(partition);
      }),
    );
  });

  it('spreads distinct keys over all partitions', () => {
    const counts = new Array<number>(8).fill(0);
    for (let i = 0; i < 8000; i++) counts[partitionForKey(utf8(`key-${i}`), 8)]!++;
    for (const count of counts) expect(count).toBeGreaterThan(800);
  });
});
