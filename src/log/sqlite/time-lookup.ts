import type { StatementSync } from 'node:sqlite';
import { forEachRecord } from './batch-codec.ts';

/** Prepares (or fetches from the cache) a statement that returns rows as arrays. */
export type Prepare = (sql: string) => StatementSync;

/**
 * The first offset in [start, end) whose record has timestamp >= `targetMs`, or `end` when none
 * has — Kafka's ListOffsets by timestamp. Kafka answers with a sparse time index; here each
 * stored batch carries the partition's running maximum timestamp through it, which never
 * decreases along the partition, so a binary search over batches finds the first batch that can
 * hold such a record in O(log n) point queries. Every record before that batch is older than the
 * target, so a forward scan from it finds the answer (usually inside that very batch; further
 * only when compaction removed the record that raised the maximum).
 */
export function findOffsetForTimestamp(
  prepare: Prepare,
  topicId: number,
  partition: number,
  targetMs: number,
  start: number,
  end: number,
): number {
  const probe = prepare(
    'SELECT last_offset, max_timestamp FROM log_batches WHERE topic_id = ? AND partition = ? AND last_offset >= ? ORDER BY last_offset LIMIT 1',
  );
  let low = start;
  let high = end;
  while (low < high) {
    const middle = low + Math.floor((high - low) / 2);
    const row = probe.get(topicId, partition, middle) as unknown as [number, number] | undefined;
    if (row === undefined || row[1] >= targetMs) high = middle;
    else low = row[0] + 1;
  }
  if (low >= end) return end;
  const scan = prepare(
    'SELECT base_offset, records FROM log_batches WHERE topic_id = ? AND partition = ? AND last_offset >= ? ORDER BY last_offset',
  );
  const from = Math.max(low, start);
  for (const row of scan.iterate(topicId, partition, from) as Iterable<[number, Uint8Array]>) {
    let found = -1;
    forEachRecord(row[1], row[0], (entry) => {
      if (found < 0 && entry.offset >= from && entry.timestamp >= targetMs) found = entry.offset;
    });
    if (found >= 0) return found;
  }
  return end;
}
