import { ValidationError } from '../errors.ts';
import type { LogRecord, OffsetCommit, TopicPartition } from './types.ts';

/** The key a consumer files per-partition state under. */
export function partitionKey(topic: string, partition: number): string {
  // ':' cannot occur in a topic name, so the key is unambiguous.
  return `${topic}:${partition}`;
}

/**
 * What `Consumer.commit(records?)` commits, for every backend: the offset after the last of
 * `records` per partition, or, without records, the current position of every owned partition.
 */
export function commitsFor(
  assignment: readonly TopicPartition[],
  positions: ReadonlyMap<string, number>,
  records: readonly LogRecord[] | undefined,
): OffsetCommit[] {
  const commits = new Map<string, OffsetCommit>();
  if (records === undefined) {
    for (const tp of assignment) {
      const position = positions.get(partitionKey(tp.topic, tp.partition));
      if (position !== undefined)
        commits.set(partitionKey(tp.topic, tp.partition), { ...tp, offset: position });
    }
    return [...commits.values()];
  }
  if (!Array.isArray(records)) {
    throw new ValidationError(`'records' must be an array of records: current value is a ${typeof records}`);
  }
  for (const record of records) {
    const key = partitionKey(record.topic, record.partition);
    const next = record.offset + 1;
    const existing = commits.get(key);
    if (existing === undefined || existing.offset < next) {
      commits.set(key, { topic: record.topic, partition: record.partition, offset: next });
    }
  }
  return [...commits.values()];
}
