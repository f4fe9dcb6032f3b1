import { ValidationError } from '../errors.ts';
import { partitionForKey } from '../log/murmur2.ts';

const encoder = new TextEncoder();

/** The most work partitions a cluster may have (Kafka's and the log's partition limit). */
export const maxWorkPartitions = 1024;

/**
 * The work partition of an entity id or a saga id: Kafka's murmur2 of its UTF-8 bytes, so the
 * partition of an id is the partition a Kafka producer would send a record keyed by it to.
 */
export function workPartitionOf(id: string, partitions: number): number {
  return partitionForKey(encoder.encode(id), partitions);
}

/** Checks a work partition count: an integer in 1..1024. */
export function requireWorkPartitions(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > maxWorkPartitions) {
    throw new ValidationError(
      `'workPartitions' must be an integer from 1 to ${maxWorkPartitions}: current value is ${String(value).slice(0, 40)}`,
    );
  }
  return value;
}
