import { Buffer } from 'node:buffer';
import { assert } from '../../assert.ts';
import { forEachRecord, keepRecords, packBatch, type RecordEntry, unpackBatch } from './batch-codec.ts';
import { findOffsetForTimestamp, type Prepare } from './time-lookup.ts';

/** What one retention or compaction pass removed. */
export interface RetentionResult {
  /** Records no longer readable (below the new start offset, or compacted away). */
  recordsRemoved: number;
  /** Stored bytes freed (whole batches deleted, or compacted batches shrunk). */
  bytesRemoved: number;
}

export const noRetention: RetentionResult = Object.freeze({ recordsRemoved: 0, bytesRemoved: 0 });

export interface PartitionRef {
  topicId: number;
  partition: number;
}

/** Rows read per page while compacting, so no statement iterates over rows being rewritten. */
const compactionPageBatches = 256;

/**
 * Cleanup policy 'delete': moves the partition's start offset past records older than
 * `retentionMs` and past the oldest batches while the partition is larger than
 * `retentionBytes`, then deletes the batches wholly below the new start. Like Kafka (which
 * deletes whole segments), space is freed per batch: records below the start that share a batch
 * with kept ones stay on disk, unreadable, until the rest of their batch goes. Must run inside a
 * write transaction.
 */
export function trimPartition(
  prepare: Prepare,
  ref: PartitionRef,
  retentionMs: number | null,
  retentionBytes: number | null,
  nowMs: number,
): RetentionResult {
  const { topicId, partition } = ref;
  const row = prepare(
    'SELECT start_offset, end_offset, size_bytes FROM log_partitions WHERE topic_id = ? AND partition = ?',
  ).get(topicId, partition) as unknown as [number, number, number] | undefined;
  if (row === undefined) return noRetention;
  const [start, end, sizeBytes] = row;
  let newStart = start;
  if (retentionMs !== null) {
    // Every record before the first one at or after the cutoff is older than the cutoff.
    newStart = Math.max(
      newStart,
      findOffsetForTimestamp(prepare, topicId, partition, nowMs - retentionMs, start, end),
    );
  }
  if (retentionBytes !== null && sizeBytes > retentionBytes) {
    let remaining = sizeBytes;
    const batches = prepare(
      'SELECT last_offset, size_bytes FROM log_batches WHERE topic_id = ? AND partition = ? ORDER BY last_offset',
    );
    for (const [lastOffset, batchBytes] of batches.iterate(topicId, partition) as Iterable<
      [number, number]
    >) {
      if (lastOffset < newStart) {
        remaining -= batchBytes;
        continue;
      }
      if (remaining <= retentionBytes) break;
      remaining -= batchBytes;
      newStart = lastOffset + 1;
    }
  }
  if (newStart === start) return noRetention;
  assert(newStart > start && newStart <= end, `retention moves the start forward within [${start}, ${end}]`);
  const freed = prepare(
    'SELECT COALESCE(SUM(size_bytes), 0) FROM log_batches WHERE topic_id = ? AND partition = ? AND last_offset < ?',
  ).get(topicId, partition, newStart) as unknown as [number];
  prepare('DELETE FROM log_batches WHERE topic_id = ? AND partition = ? AND last_offset < ?').run(
    topicId,
    partition,
    newStart,
  );
  prepare(
    'UPDATE log_partitions SET start_offset = ?, size_bytes = size_bytes - ? WHERE topic_id = ? AND partition = ?',
  ).run(newStart, freed[0], topicId, partition);
  return { recordsRemoved: newStart - start, bytesRemoved: freed[0] };
}

interface BatchRow {
  lastOffset: number;
  baseOffset: number;
  records: Uint8Array;
}

function* pagesOfBatches(prepare: Prepare, ref: PartitionRef): Generator<BatchRow[]> {
  const page = prepare(
    `SELECT last_offset, base_offset, records FROM log_batches WHERE topic_id = ? AND partition = ? AND last_offset > ? ORDER BY last_offset LIMIT ${compactionPageBatches}`,
  );
  let after = -1;
  for (;;) {
    const rows = page.all(ref.topicId, ref.partition, after) as unknown as [number, number, Uint8Array][];
    if (rows.length === 0) return;
    // Format 1: compaction reads the records' byte ranges, and rewrites a batch it shrinks.
    yield rows.map(([lastOffset, baseOffset, records]) => ({
      lastOffset,
      baseOffset,
      records: unpackBatch(records, `base offset ${baseOffset}`),
    }));
    after = rows[rows.length - 1]![0];
  }
}

function keyOf(buffer: Buffer, entry: RecordEntry): string {
  // latin1 maps each byte to one char, so distinct byte strings stay distinct map keys.
  return buffer.toString('latin1', entry.keyStart, entry.keyEnd);
}

/**
 * Cleanup policy 'compact': keeps only the newest record of each key (Kafka's log compaction).
 * A tombstone (null value) deletes its key's older records at once and is removed itself once
 * it is older than `tombstoneRetentionMs`, so consumers have that long to see the delete. Offsets
 * never change and the start offset stays (reads skip the gaps). Two passes over the partition
 * (latest offset per key, then rewrite), in pages; memory grows with the number of distinct keys.
 * Must run inside a write transaction.
 */
export function compactPartition(
  prepare: Prepare,
  ref: PartitionRef,
  tombstoneRetentionMs: number,
  nowMs: number,
): RetentionResult {
  const latest = new Map<string, number>();
  for (const page of pagesOfBatches(prepare, ref)) {
    for (const batch of page) {
      const buffer = Buffer.from(batch.records.buffer, batch.records.byteOffset, batch.records.byteLength);
      forEachRecord(batch.records, batch.baseOffset, (entry) => {
        if (entry.keyStart >= 0) latest.set(keyOf(buffer, entry), entry.offset);
      });
    }
  }
  const tombstoneCutoffMs = nowMs - tombstoneRetentionMs;
  const update = prepare(
    'UPDATE log_batches SET records = ?, record_count = ?, size_bytes = ? WHERE topic_id = ? AND partition = ? AND last_offset = ?',
  );
  const remove = prepare('DELETE FROM log_batches WHERE topic_id = ? AND partition = ? AND last_offset = ?');
  let recordsRemoved = 0;
  let bytesRemoved = 0;
  for (const page of pagesOfBatches(prepare, ref)) {
    for (const batch of page) {
      const buffer = Buffer.from(batch.records.buffer, batch.records.byteOffset, batch.records.byteLength);
      const kept: RecordEntry[] = [];
      let removedHere = 0;
      let keptBytes = 0;
      let removedBytes = 0;
      forEachRecord(batch.records, batch.baseOffset, (entry) => {
        const newest = entry.keyStart < 0 || latest.get(keyOf(buffer, entry)) === entry.offset;
        const expiredTombstone = entry.isTombstone && entry.timestamp < tombstoneCutoffMs;
        if (newest && !expiredTombstone) {
          kept.push(entry);
          keptBytes += entry.recordEnd - entry.recordStart;
        } else {
          removedHere++;
          removedBytes += entry.recordEnd - entry.recordStart;
        }
      });
      if (removedHere === 0) continue;
      if (kept.length === 0) remove.run(ref.topicId, ref.partition, batch.lastOffset);
      else {
        update.run(
          packBatch(keepRecords(batch.records, kept)),
          kept.length,
          keptBytes,
          ref.topicId,
          ref.partition,
          batch.lastOffset,
        );
      }
      recordsRemoved += removedHere;
      bytesRemoved += removedBytes;
    }
  }
  if (bytesRemoved > 0) {
    prepare('UPDATE log_partitions SET size_bytes = size_bytes - ? WHERE topic_id = ? AND partition = ?').run(
      bytesRemoved,
      ref.topicId,
      ref.partition,
    );
  }
  return { recordsRemoved, bytesRemoved };
}
