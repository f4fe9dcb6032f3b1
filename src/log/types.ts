/**
 * The partitioned log: Kafka's model, with the same contract for every backend (SQLite
 * embedded, Apache Kafka). See docs/concepts.md and docs/guarantees.md.
 */

/** Record headers. Kafka headers are bytes; Meridian carries UTF-8 strings (trace context, ids). */
export type RecordHeaders = Readonly<Record<string, string>>;

/** A record to append. */
export interface ProducerRecord {
  /** Decides the partition with Kafka's murmur2 partitioner, unless `partition` is given. */
  key?: string | Uint8Array | null;
  /** The payload: bytes, or null for a tombstone (which compaction uses to delete a key). */
  value: Uint8Array | null;
  headers?: RecordHeaders;
  /** Event time in ms since the epoch. @default the log's clock at append time */
  timestamp?: number;
  /** An explicit partition, overriding the key's. */
  partition?: number;
}

/** A record as stored: its place in the log is (topic, partition, offset). */
export interface LogRecord {
  readonly topic: string;
  readonly partition: number;
  /** Dense and increasing within the partition, from 0. */
  readonly offset: number;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  readonly headers: RecordHeaders;
  readonly timestamp: number;
}

export interface AppendResult {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly timestamp: number;
}

export type CleanupPolicy = 'delete' | 'compact';

export interface TopicConfig {
  /** 1 to 1024. */
  partitions: number;
  /** Records older than this are deleted (cleanup policy 'delete'). null keeps them forever. @default 604800000 (7 days) */
  retentionMs?: number | null;
  /** A partition is trimmed from its start down to this size. null: no size limit. @default null */
  retentionBytes?: number | null;
  /** @default 'delete' */
  cleanupPolicy?: CleanupPolicy;
  /** Kafka's replication factor; the SQLite backend accepts only 1. @default 1 (sqlite), the broker's default (kafka) */
  replicationFactor?: number;
}

export interface TopicDescription {
  readonly name: string;
  readonly partitions: number;
  readonly retentionMs: number | null;
  readonly retentionBytes: number | null;
  readonly cleanupPolicy: CleanupPolicy;
}

export interface TopicPartition {
  readonly topic: string;
  readonly partition: number;
}

export interface PartitionOffsets {
  /** The first offset still in the log (moves forward with retention). */
  readonly start: number;
  /** The offset the next appended record will get (Kafka's high watermark). */
  readonly end: number;
}

/** `offset` is the next offset to read, as in Kafka. */
export interface OffsetCommit extends TopicPartition {
  readonly offset: number;
}

export interface ReadOptions {
  /** @default 500, at most 10000 */
  maxRecords?: number;
  /** Stop after this many payload bytes (at least one record is returned). @default 1048576 */
  maxBytes?: number;
}

/** One change of a consumer's assignment, as `ConsumerOptions.onAssignment` receives it. */
export interface AssignmentChange {
  /** Partitions the member owns from now on and did not own before. */
  readonly assigned: readonly TopicPartition[];
  /** Partitions the member no longer owns: it has stopped fetching them and cannot commit them. */
  readonly revoked: readonly TopicPartition[];
  /** Everything the member owns after this change (what `assignment()` returned right after it). */
  readonly assignment: readonly TopicPartition[];
}

export interface ConsumerOptions {
  group: string;
  topics: readonly string[];
  /** Where to start when the group has no committed offset for a partition. @default 'earliest' */
  autoOffsetReset?: 'earliest' | 'latest';
  /** Upper bound on records one poll returns. @default 500, at most 10000 */
  maxPollRecords?: number;
  /**
   * Called on every change of this member's assignment, in order, one call at a time (a change
   * made while the listener runs — it closes the consumer, say — is delivered after it returns).
   * `revoked` is reported at the latest when the member stops fetching those partitions, before
   * it gives them up to the group; on close, or when the member falls out of the group, it is
   * called with everything revoked. A listener that throws (or returns a promise that rejects)
   * does not stop the consumer: the next poll throws an AssignmentListenerError with the
   * listener's error as its cause, once, and the consumer goes on.
   */
  onAssignment?: (change: AssignmentChange) => void;
}

export interface PollOptions {
  /** How long poll waits for records when none are ready. 0 returns at once. @default 1000 */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * A member of a consumer group. Partitions of its topics are shared among the group's live
 * members; each partition has one owner at a time. Offsets are committed explicitly.
 */
export interface Consumer {
  readonly group: string;
  /** The partitions this member owns now. */
  assignment(): readonly TopicPartition[];
  /**
   * Records from the owned partitions, from each one's position. Waits up to `timeoutMs` for
   * records to arrive (woken by appends, never by busy polling).
   */
  poll(options?: PollOptions): Promise<LogRecord[]>;
  /** Moves the position of an owned partition (replay). */
  seek(topic: string, partition: number, offset: number): void;
  /** Commits the position after the given records (or the current positions when omitted). */
  commit(records?: readonly LogRecord[]): Promise<void>;
  close(): Promise<void>;
}

export interface Log {
  readonly backend: 'sqlite' | 'kafka';
  /** Creates a topic; AlreadyExistsError if it exists with another config. Idempotent for the same config. */
  createTopic(name: string, config: TopicConfig): Promise<void>;
  describeTopic(name: string): Promise<TopicDescription>;
  listTopics(): Promise<string[]>;
  deleteTopic(name: string): Promise<void>;
  /** Appends a batch atomically per partition; one result per record, in input order. */
  append(topic: string, records: readonly ProducerRecord[]): Promise<AppendResult[]>;
  /** Reads from `offset`; an offset past the end is an OffsetOutOfRangeError, before the start a read from the start. */
  read(topic: string, partition: number, offset: number, options?: ReadOptions): Promise<LogRecord[]>;
  offsets(topic: string, partition: number): Promise<PartitionOffsets>;
  /** The first offset whose timestamp is >= `timestampMs`, or the end offset when none is. */
  offsetForTimestamp(topic: string, partition: number, timestampMs: number): Promise<number>;
  commitOffsets(group: string, commits: readonly OffsetCommit[]): Promise<void>;
  /** The group's committed offsets of one topic, by partition. NotFoundError for an unknown group. */
  committedOffsets(group: string, topic: string): Promise<Map<number, number>>;
  consumer(options: ConsumerOptions): Consumer;
  close(): Promise<void>;
}
