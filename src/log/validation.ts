import { ValidationError } from '../errors.ts';
import type {
  AssignmentChange,
  CleanupPolicy,
  ConsumerOptions,
  PollOptions,
  ReadOptions,
  TopicConfig,
  TopicDescription,
} from './types.ts';

/**
 * Input checks every log backend shares, so that a bad name, option or offset fails with the same
 * typed error and the same message whether the log is SQLite or Kafka.
 */

/** Kafka's limit on topic names (249, so that derived file names stay under 255 bytes). */
export const maxTopicNameLength = 249;
/** The most partitions a topic may have. */
export const maxPartitions = 1024;
/** Kafka's default `retention.ms`: 7 days. */
export const defaultRetentionMs = 604_800_000;
/** An upper bound on `retentionMs`: 100 years (use null to keep records forever). */
export const maxRetentionMs = 3_155_760_000_000;
/** An upper bound on `retentionBytes`: 1 PiB per partition. */
export const maxRetentionBytes = 2 ** 50;
/** An upper bound on group names. */
export const maxGroupNameLength = 255;
export const defaultMaxRecords = 500;
export const maxMaxRecords = 10_000;
export const defaultReadMaxBytes = 1_048_576;
export const maxReadMaxBytes = 268_435_456;
export const defaultPollTimeoutMs = 1000;
export const maxPollTimeoutMs = 3_600_000;

const topicNamePattern = /^[a-zA-Z0-9._-]+$/;

function describeValue(value: unknown): string {
  if (typeof value === 'string') return `'${value.length > 60 ? `${value.slice(0, 60)}…` : value}'`;
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) {
    return String(value);
  }
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

/** Checks an integer option against [min, max]; the message names the option and the value. */
export function checkInteger(name: string, value: unknown, min: number, max: number, context = ''): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ValidationError(
      `${context}'${name}' must be an integer in [${min}, ${max}]: current value is ${describeValue(value)}`,
      { details: { option: name, min, max, value } },
    );
  }
  return value;
}

/** Kafka's rule: 1 to 249 characters from [a-zA-Z0-9._-], and not '.' or '..'. */
export function validateTopicName(name: unknown): string {
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    name.length > maxTopicNameLength ||
    !topicNamePattern.test(name) ||
    name === '.' ||
    name === '..'
  ) {
    throw new ValidationError(
      `A topic name must be 1 to ${maxTopicNameLength} characters from [a-zA-Z0-9._-] and not '.' or '..': current value is ${describeValue(name)}`,
      { details: { option: 'topic', value: name } },
    );
  }
  return name;
}

/** Group names are free text (as in Kafka) but bounded and non-empty. */
export function validateGroupName(group: unknown): string {
  if (typeof group !== 'string' || group.length === 0 || group.length > maxGroupNameLength) {
    throw new ValidationError(
      `A consumer group name must be a string of 1 to ${maxGroupNameLength} characters: current value is ${describeValue(group)}`,
      { details: { option: 'group', value: group } },
    );
  }
  return group;
}

/** A partition index must be a non-negative integer; whether the topic has it is the backend's check. */
export function validatePartitionIndex(partition: unknown): number {
  return checkInteger('partition', partition, 0, maxPartitions - 1);
}

/** Offsets are non-negative safe integers. */
export function validateOffset(offset: unknown, name = 'offset'): number {
  return checkInteger(name, offset, 0, Number.MAX_SAFE_INTEGER);
}

/** Timestamps are milliseconds since the epoch: non-negative safe integers. */
export function validateTimestamp(timestampMs: unknown, name = 'timestamp'): number {
  return checkInteger(name, timestampMs, 0, Number.MAX_SAFE_INTEGER);
}

/** Applies the documented defaults to a topic config and checks every bound. */
export function normalizeTopicConfig(name: string, config: TopicConfig): TopicDescription {
  const context = `Cannot create topic '${name}' as `;
  if (typeof config !== 'object' || config === null) {
    throw new ValidationError(
      `${context}'config' must be an object: current value is ${describeValue(config)}`,
    );
  }
  const partitions = checkInteger('partitions', config.partitions, 1, maxPartitions, context);
  const retentionMs =
    config.retentionMs === null
      ? null
      : checkInteger('retentionMs', config.retentionMs ?? defaultRetentionMs, 1, maxRetentionMs, context);
  const retentionBytes =
    config.retentionBytes === null || config.retentionBytes === undefined
      ? null
      : checkInteger('retentionBytes', config.retentionBytes, 1, maxRetentionBytes, context);
  const cleanupPolicy: CleanupPolicy = config.cleanupPolicy ?? 'delete';
  if (cleanupPolicy !== 'delete' && cleanupPolicy !== 'compact') {
    throw new ValidationError(
      `${context}'cleanupPolicy' must be 'delete' or 'compact': current value is ${describeValue(cleanupPolicy)}`,
    );
  }
  if (config.replicationFactor !== undefined) {
    checkInteger('replicationFactor', config.replicationFactor, 1, 32767, context);
  }
  return { name, partitions, retentionMs, retentionBytes, cleanupPolicy };
}

/** True when two descriptions configure a topic identically (createTopic is idempotent then). */
export function sameTopicConfig(a: TopicDescription, b: TopicDescription): boolean {
  return (
    a.partitions === b.partitions &&
    a.retentionMs === b.retentionMs &&
    a.retentionBytes === b.retentionBytes &&
    a.cleanupPolicy === b.cleanupPolicy
  );
}

export interface NormalizedReadOptions {
  maxRecords: number;
  maxBytes: number;
}

export function normalizeReadOptions(options: ReadOptions | undefined): NormalizedReadOptions {
  return {
    maxRecords: checkInteger('maxRecords', options?.maxRecords ?? defaultMaxRecords, 1, maxMaxRecords),
    maxBytes: checkInteger('maxBytes', options?.maxBytes ?? defaultReadMaxBytes, 1, maxReadMaxBytes),
  };
}

export interface NormalizedConsumerOptions {
  group: string;
  topics: string[];
  autoOffsetReset: 'earliest' | 'latest';
  maxPollRecords: number;
  onAssignment: ((change: AssignmentChange) => void) | undefined;
}

export function normalizeConsumerOptions(options: ConsumerOptions): NormalizedConsumerOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError(
      `Consumer options must be an object: current value is ${describeValue(options)}`,
    );
  }
  const group = validateGroupName(options.group);
  if (!Array.isArray(options.topics) || options.topics.length === 0 || options.topics.length > 1000) {
    throw new ValidationError(
      `'topics' must be an array of 1 to 1000 topic names: current value is ${describeValue(options.topics)}`,
    );
  }
  const topics = [...new Set(options.topics.map(validateTopicName))];
  const autoOffsetReset = options.autoOffsetReset ?? 'earliest';
  if (autoOffsetReset !== 'earliest' && autoOffsetReset !== 'latest') {
    throw new ValidationError(
      `'autoOffsetReset' must be 'earliest' or 'latest': current value is ${describeValue(autoOffsetReset)}`,
    );
  }
  const maxPollRecords = checkInteger(
    'maxPollRecords',
    options.maxPollRecords ?? defaultMaxRecords,
    1,
    maxMaxRecords,
  );
  const onAssignment = options.onAssignment;
  if (onAssignment !== undefined && typeof onAssignment !== 'function') {
    throw new ValidationError(
      `'onAssignment' must be a function: current value is ${describeValue(onAssignment)}`,
    );
  }
  return { group, topics, autoOffsetReset, maxPollRecords, onAssignment };
}

export function normalizePollTimeoutMs(options: PollOptions | undefined): number {
  return checkInteger('timeoutMs', options?.timeoutMs ?? defaultPollTimeoutMs, 0, maxPollTimeoutMs);
}
