/**
 * Kafka's key partitioner. A key must land on the partition Kafka itself would pick, so that the
 * embedded (SQLite) and cluster (Kafka) shapes agree on which partition — and so which owner —
 * handles a key. This is a port of the Java client's `Utils.murmur2` and
 * `BuiltInPartitioner.partitionForKey`, checked against Kafka's own test vectors.
 */

const seed = 0x9747b28c;
const m = 0x5bd1e995;

/**
 * The 32-bit murmur2 hash of `data` exactly as Kafka's Java `Utils.murmur2` computes it,
 * returned as a signed 32-bit integer (Java's `int`).
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = (seed ^ length) | 0;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i << 2;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  // The last 1 to 3 bytes, folded in as the Java switch does by falling through from case 3 to 1.
  const tail = length & ~3;
  const rest = length & 3;
  if (rest === 3) h ^= data[tail + 2]! << 16;
  if (rest >= 2) h ^= data[tail + 1]! << 8;
  if (rest >= 1) {
    h ^= data[tail]!;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/** Kafka's `Utils.toPositive`: clears the sign bit (not `Math.abs`, which differs for -2^31). */
export function toPositive(value: number): number {
  return value & 0x7fffffff;
}

/** The partition Kafka's default partitioner gives a non-null key: `toPositive(murmur2(key)) % n`. */
export function partitionForKey(keyBytes: Uint8Array, numPartitions: number): number {
  return toPositive(murmur2(keyBytes)) % numPartitions;
}
