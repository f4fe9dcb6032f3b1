import type { StatementSync } from 'node:sqlite';
import { AlreadyExistsError, ClosedError, NotFoundError, ValidationError } from '../../errors.ts';
import { type Durability, SqliteDatabase } from '../../store/sqlite/database.ts';
import {
  type Clock,
  type Random,
  systemClock,
  systemRandom,
  systemTimers,
  type TimerHandle,
  type Timers,
} from '../../time.ts';
import { keyBytes } from '../codec.ts';
import { partitionKey } from '../consumer-commits.ts';
import { OffsetOutOfRangeError, RecordTooLargeError } from '../errors.ts';
import { defaultStickyBatchBytes, StickyPartitioner } from '../partitioner.ts';
import type {
  AppendResult,
  Consumer,
  ConsumerOptions,
  Log,
  LogRecord,
  OffsetCommit,
  PartitionOffsets,
  ProducerRecord,
  ReadOptions,
  RecordHeaders,
  TopicConfig,
  TopicDescription,
  TopicPartition,
} from '../types.ts';
import {
  checkInteger,
  maxPartitions,
  maxRetentionMs,
  normalizeConsumerOptions,
  normalizeReadOptions,
  normalizeTopicConfig,
  sameTopicConfig,
  validateGroupName,
  validateOffset,
  validatePartitionIndex,
  validateTimestamp,
  validateTopicName,
} from '../validation.ts';
import { assignRange } from './assignment.ts';
import {
  type DecodeBudget,
  decodeBatchInto,
  encodeBatch,
  encodedRecordBytes,
  type PackedRecordInput,
  packBatch,
  recordOverheadBytes,
} from './batch-codec.ts';
import { type ConsumerHost, type PartitionRange, SqliteConsumer } from './consumer.ts';
import { compactPartition, type RetentionResult, trimPartition } from './retention.ts';
import { logComponent, logMigrations } from './schema.ts';
import { findOffsetForTimestamp } from './time-lookup.ts';

export type { RetentionResult } from './retention.ts';

export interface SqliteLogOptions {
  /** Timestamps of records appended without one, and the "now" of retention. @default systemClock */
  clock?: Clock;
  /** Poll timeouts and the periodic retention run. @default systemTimers */
  timers?: Timers;
  /** Picks the first partition of keyless records per topic. @default systemRandom */
  random?: Random;
  /** Largest record (key + value + headers bytes) append accepts. @default 1048576 (1 MiB, Kafka's), in [1, 67108864] */
  maxRecordBytes?: number;
  /** Most records one append call takes. @default 10000, in [1, 1000000] */
  maxAppendRecords?: number;
  /** Interval of the automatic retention and compaction run; null: only `enforceRetention()`. @default 300000 (5 min, Kafka's), in [1, 86400000] */
  retentionCheckIntervalMs?: number | null;
  /** How long a compacted topic keeps a tombstone that deleted its key (Kafka's delete.retention.ms). @default 86400000 (1 day) */
  tombstoneRetentionMs?: number;
  /** Bytes of keyless records sent to one partition before moving to the next (Kafka's batch.size). @default 16384 */
  stickyBatchBytes?: number;
}

export interface OpenSqliteLogOptions extends SqliteLogOptions {
  /** Database file; created with its directory's permissions when missing. */
  path: string;
  /** What a committed append survives; see SqliteDatabase. @default 'process' */
  durability?: Durability;
  /** How long a statement waits for a lock held by another process. @default 5000 */
  busyTimeoutMs?: number;
}

/** What one retention run removed, or why it failed (for the periodic run, which nobody awaits). */
export interface RetentionEvent {
  readonly result?: RetentionResult;
  readonly error?: Error;
}

export interface Disposable {
  dispose(): void;
}

const defaultMaxRecordBytes = 1_048_576;
const defaultMaxAppendRecords = 10_000;
const defaultRetentionCheckIntervalMs = 300_000;
const defaultTombstoneRetentionMs = 86_400_000;
/** Kafka's `max.partition.fetch.bytes` default: key+value bytes one poll takes from one partition. */
const maxPartitionFetchBytes = 1_048_576;
/**
 * Bounds on one stored batch row. Large appends are split into several rows (still one
 * transaction): rows stay far below SQLite's 1 GB BLOB limit, and a read starting in the middle
 * of a batch skips at most this many record headers.
 */
const maxBatchRowBytes = 1_048_576;
const maxBatchRowRecords = 4096;

interface TopicMeta {
  readonly id: number;
  readonly description: TopicDescription;
  /** Bound once per topic so an append registers no new closure for its afterCommit wake-up. */
  readonly wake: () => void;
}

/** The cached topic id no longer exists: another SqliteLog on this file deleted the topic. */
class StaleTopicError extends Error {
  readonly topic: string;
  constructor(topic: string) {
    super(`Topic '${topic}' changed under this log`);
    this.topic = topic;
  }
}

interface PartitionPlan {
  partition: number;
  /** Input indexes of this partition's records, in input order. */
  indexes: number[];
  records: PackedRecordInput[];
  bytes: number;
  maxTimestamp: number;
}

/**
 * The embedded partitioned log: Kafka's model on SQLite tables, in the same database file (and
 * so the same transactions) as the store. See docs/log.md.
 *
 * Appends called inside a `db.write(...)` of the shared database join that transaction (as a
 * savepoint), so consuming, changing state, producing and committing offsets commit together.
 * Consumers are woken only after the appending transaction commits.
 */
export class SqliteLog implements Log {
  readonly backend = 'sqlite' as const;
  readonly db: SqliteDatabase;
  readonly #ownsDatabase: boolean;
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #maxRecordBytes: number;
  readonly #maxAppendRecords: number;
  readonly #retentionCheckIntervalMs: number | null;
  readonly #tombstoneRetentionMs: number;
  readonly #partitioner: StickyPartitioner;
  readonly #topics = new Map<string, TopicMeta>();
  readonly #groups = new Map<string, SqliteConsumer[]>();
  readonly #consumersByTopic = new Map<string, Set<SqliteConsumer>>();
  readonly #retentionListeners = new Set<(event: RetentionEvent) => void>();
  readonly #consumerHost: ConsumerHost;
  #memberSequence = 0;
  #retentionTimer: TimerHandle | undefined;
  #closed = false;

  /** A log on an existing database (shared with the store); `close()` leaves the database open. */
  constructor(db: SqliteDatabase, options: SqliteLogOptions = {}, ownsDatabase = false) {
    this.db = db;
    this.#ownsDatabase = ownsDatabase;
    this.#clock = options.clock ?? systemClock;
    this.#timers = options.timers ?? systemTimers;
    this.#maxRecordBytes = checkInteger(
      'maxRecordBytes',
      options.maxRecordBytes ?? defaultMaxRecordBytes,
      1,
      67_108_864,
    );
    this.#maxAppendRecords = checkInteger(
      'maxAppendRecords',
      options.maxAppendRecords ?? defaultMaxAppendRecords,
      1,
      1_000_000,
    );
    this.#retentionCheckIntervalMs =
      options.retentionCheckIntervalMs === null
        ? null
        : checkInteger(
            'retentionCheckIntervalMs',
            options.retentionCheckIntervalMs ?? defaultRetentionCheckIntervalMs,
            1,
            86_400_000,
          );
    this.#tombstoneRetentionMs = checkInteger(
      'tombstoneRetentionMs',
      options.tombstoneRetentionMs ?? defaultTombstoneRetentionMs,
      0,
      maxRetentionMs,
    );
    this.#partitioner = new StickyPartitioner({
      batchBytes: options.stickyBatchBytes ?? defaultStickyBatchBytes,
      random: options.random ?? systemRandom,
    });
    migrateLog(db);
    this.#consumerHost = {
      timers: this.#timers,
      partitionRanges: (topic) => this.#partitionRanges(topic),
      committedOffsetsOf: (group, topic) => this.#committedOffsetsOf(group, topic),
      readPartition: (topic, partition, from, maxRecords, out) =>
        this.#readPartitionFromConsumer(topic, partition, from, maxRecords, out),
      commitOffsets: (group, commits, fence) => this.#commitOffsets(group, commits, fence),
      leave: (consumer) => this.#leave(consumer),
    };
    this.#scheduleRetention();
  }

  get closed(): boolean {
    return this.#closed;
  }

  // ---- topics ----

  async createTopic(name: string, config: TopicConfig): Promise<void> {
    this.#assertOpen();
    validateTopicName(name);
    const description = normalizeTopicConfig(name, config);
    if (config.replicationFactor !== undefined && config.replicationFactor !== 1) {
      throw new ValidationError(
        `Cannot create topic '${name}' as the SQLite log keeps one copy, so 'replicationFactor' must be 1: current value is ${config.replicationFactor}`,
      );
    }
    await this.#write(() => {
      const existing = this.#readTopicRow(name);
      if (existing !== undefined) {
        if (sameTopicConfig(existing.description, description)) return;
        throw new AlreadyExistsError(
          `Topic '${name}' already exists with another config: ${JSON.stringify(existing.description)}`,
          { details: { topic: name } },
        );
      }
      const row = this.#statement(
        'INSERT INTO log_topics (name, partitions, retention_ms, retention_bytes, cleanup_policy, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id',
      ).get(
        name,
        description.partitions,
        description.retentionMs,
        description.retentionBytes,
        description.cleanupPolicy,
        Math.floor(this.#clock.now()),
      ) as unknown as [number];
      const insertPartition = this.#statement(
        'INSERT INTO log_partitions (topic_id, partition, start_offset, end_offset, size_bytes, max_timestamp) VALUES (?, ?, 0, 0, 0, -1)',
      );
      for (let partition = 0; partition < description.partitions; partition++) {
        insertPartition.run(row[0], partition);
      }
      this.db.afterCommit(() => {
        this.#topics.delete(name);
        this.#rebalanceTopic(name);
      });
    });
  }

  async describeTopic(name: string): Promise<TopicDescription> {
    this.#assertOpen();
    validateTopicName(name);
    // Always read: another log on the same file may have changed the topic.
    const row = this.#readTopicRow(name);
    if (row === undefined) throw topicNotFound(name);
    return row.description;
  }

  async listTopics(): Promise<string[]> {
    this.#assertOpen();
    const rows = this.#statement('SELECT name FROM log_topics ORDER BY name').all() as unknown as [string][];
    return rows.map((row) => row[0]);
  }

  async deleteTopic(name: string): Promise<void> {
    this.#assertOpen();
    validateTopicName(name);
    await this.#write(() => {
      const row = this.#readTopicRow(name);
      if (row === undefined) throw topicNotFound(name);
      for (const table of ['log_batches', 'log_partitions', 'log_group_offsets']) {
        this.#statement(`DELETE FROM ${table} WHERE topic_id = ?`).run(row.id);
      }
      this.#statement('DELETE FROM log_topics WHERE id = ?').run(row.id);
      this.db.afterCommit(() => {
        this.#topics.delete(name);
        this.#partitioner.forget(name);
        this.#rebalanceTopic(name);
      });
    });
  }

  // ---- append ----

  async append(topic: string, records: readonly ProducerRecord[]): Promise<AppendResult[]> {
    this.#assertOpen();
    validateTopicName(topic);
    if (!Array.isArray(records)) {
      throw new ValidationError(`'records' must be an array: current value is a ${typeof records}`);
    }
    if (records.length > this.#maxAppendRecords) {
      throw new ValidationError(
        `Cannot append to topic '${topic}' as 'records.length' must be <= ${this.#maxAppendRecords} ('maxAppendRecords'): current value is ${records.length}`,
      );
    }
    return this.#retryStale(topic, () => {
      const meta = this.#topicMeta(topic);
      if (records.length === 0) return [];
      const plans = this.#planAppend(meta, records);
      return this.#write(() => this.#applyAppend(meta, records.length, plans));
    });
  }

  /** Validates and encodes outside the write lock: the transaction only assigns offsets and inserts. */
  #planAppend(meta: TopicMeta, records: readonly ProducerRecord[]): PartitionPlan[] {
    const { name, partitions, cleanupPolicy } = meta.description;
    const nowMs = Math.floor(this.#clock.now());
    const byPartition = new Map<number, PartitionPlan>();
    for (let index = 0; index < records.length; index++) {
      const record = records[index]!;
      if (typeof record !== 'object' || record === null) {
        throw new ValidationError(
          `Cannot append to topic '${name}' as records[${index}] is not a record object`,
        );
      }
      const value = record.value;
      if (value !== null && !(value instanceof Uint8Array)) {
        throw new ValidationError(
          `Cannot append to topic '${name}' as records[${index}].value must be a Uint8Array or null (use jsonValue() for JSON): current value is ${value === undefined ? 'undefined' : `a ${typeof value}`}`,
        );
      }
      let key: Uint8Array | null;
      try {
        key = keyBytes(record.key);
      } catch (error) {
        throw new ValidationError(`Cannot append to topic '${name}' as records[${index}].key is invalid`, {
          cause: error,
        });
      }
      if (key === null && cleanupPolicy === 'compact') {
        throw new ValidationError(
          `Cannot append to topic '${name}' as it is compacted and records[${index}] has no key: compaction keeps the newest record per key`,
        );
      }
      const input: PackedRecordInput = {
        key,
        value,
        headers: encodeHeaders(name, index, record.headers),
        timestamp:
          record.timestamp === undefined
            ? nowMs
            : validateTimestamp(record.timestamp, `records[${index}].timestamp`),
      };
      const bytes = encodedRecordBytes(input);
      const recordBytes = bytes - recordOverheadBytes;
      if (recordBytes > this.#maxRecordBytes) {
        throw new RecordTooLargeError(
          `Cannot append to topic '${name}' as records[${index}] is ${recordBytes} bytes (key + value + headers), more than 'maxRecordBytes' ${this.#maxRecordBytes}`,
          { details: { topic: name, index, recordBytes, maxRecordBytes: this.#maxRecordBytes } },
        );
      }
      let partition: number;
      if (record.partition === undefined) {
        partition = this.#partitioner.partition(name, partitions, key, recordBytes);
      } else {
        partition = checkInteger(`records[${index}].partition`, record.partition, 0, maxPartitions - 1);
        if (partition >= partitions) throw partitionNotFound(name, partitions, partition);
      }
      let plan = byPartition.get(partition);
      if (plan === undefined) {
        plan = { partition, indexes: [], records: [], bytes: 0, maxTimestamp: -1 };
        byPartition.set(partition, plan);
      }
      plan.indexes.push(index);
      plan.records.push(input);
      plan.bytes += bytes;
      if (input.timestamp > plan.maxTimestamp) plan.maxTimestamp = input.timestamp;
    }
    // Partitions in ascending order: concurrent writers touch rows in one order.
    return [...byPartition.values()].sort((a, b) => a.partition - b.partition);
  }

  #applyAppend(meta: TopicMeta, count: number, plans: readonly PartitionPlan[]): AppendResult[] {
    const topic = meta.description.name;
    const results = new Array<AppendResult>(count);
    const advance = this.#statement(
      'UPDATE log_partitions SET end_offset = end_offset + ?, size_bytes = size_bytes + ?, max_timestamp = max(max_timestamp, ?) WHERE topic_id = ? AND partition = ? RETURNING end_offset, max_timestamp',
    );
    const insert = this.#statement(
      'INSERT INTO log_batches (topic_id, partition, last_offset, base_offset, max_timestamp, record_count, size_bytes, records) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    for (const plan of plans) {
      const { partition, records } = plan;
      const row = advance.get(records.length, plan.bytes, plan.maxTimestamp, meta.id, partition) as unknown as
        | [number, number]
        | undefined;
      if (row === undefined) throw new StaleTopicError(topic);
      const [end, runningMaxTimestamp] = row;
      const base = end - records.length;
      // Every chunk gets the partition's new running maximum: an upper bound on the true one, and
      // still non-decreasing along the partition, which is all the time lookup needs.
      let from = 0;
      while (from < records.length) {
        let to = from;
        let bytes = 0;
        while (to < records.length && to - from < maxBatchRowRecords) {
          const size = encodedRecordBytes(records[to]!);
          if (to > from && bytes + size > maxBatchRowBytes) break;
          bytes += size;
          to++;
        }
        insert.run(
          meta.id,
          partition,
          base + to - 1,
          base + from,
          runningMaxTimestamp,
          to - from,
          bytes,
          packBatch(encodeBatch(records, from, to, bytes)),
        );
        from = to;
      }
      for (let i = 0; i < records.length; i++) {
        results[plan.indexes[i]!] = { topic, partition, offset: base + i, timestamp: records[i]!.timestamp };
      }
    }
    this.db.afterCommit(meta.wake);
    return results;
  }

  // ---- read ----

  async read(topic: string, partition: number, offset: number, options?: ReadOptions): Promise<LogRecord[]> {
    this.#assertOpen();
    validateTopicName(topic);
    validatePartitionIndex(partition);
    validateOffset(offset);
    const { maxRecords, maxBytes } = normalizeReadOptions(options);
    return this.#retryStale(topic, () => {
      const meta = this.#topicMeta(topic);
      const range = this.#partitionRange(meta, partition);
      if (offset > range.end) throw offsetPastEnd(topic, partition, offset, range.end);
      const out: LogRecord[] = [];
      if (offset < range.end)
        this.#readInto(meta, partition, Math.max(offset, range.start), maxRecords, maxBytes, out);
      return out;
    });
  }

  async offsets(topic: string, partition: number): Promise<PartitionOffsets> {
    this.#assertOpen();
    validateTopicName(topic);
    validatePartitionIndex(partition);
    return this.#retryStale(topic, () => {
      const range = this.#partitionRange(this.#topicMeta(topic), partition);
      return { start: range.start, end: range.end };
    });
  }

  async offsetForTimestamp(topic: string, partition: number, timestampMs: number): Promise<number> {
    this.#assertOpen();
    validateTopicName(topic);
    validatePartitionIndex(partition);
    validateTimestamp(timestampMs, 'timestampMs');
    return this.#retryStale(topic, () => {
      const meta = this.#topicMeta(topic);
      const range = this.#partitionRange(meta, partition);
      return findOffsetForTimestamp(
        (sql) => this.#statement(sql),
        meta.id,
        partition,
        timestampMs,
        range.start,
        range.end,
      );
    });
  }

  #readInto(
    meta: TopicMeta,
    partition: number,
    from: number,
    maxRecords: number,
    maxBytes: number,
    out: LogRecord[],
  ): number {
    const before = out.length;
    const budget: DecodeBudget = { records: maxRecords, bytes: maxBytes, any: false };
    const batches = this.#statement(
      'SELECT base_offset, records FROM log_batches WHERE topic_id = ? AND partition = ? AND last_offset >= ? ORDER BY last_offset',
    );
    const name = meta.description.name;
    // iterate, not all: a batch can hold thousands of records, so stop as soon as the budget is spent.
    for (const row of batches.iterate(meta.id, partition, from) as Iterable<[number, Uint8Array]>) {
      if (!decodeBatchInto(out, name, partition, row[0], row[1], from, budget) || budget.records === 0) break;
    }
    return out.length - before;
  }

  // ---- consumer groups ----

  async commitOffsets(group: string, commits: readonly OffsetCommit[]): Promise<void> {
    this.#assertOpen();
    return this.#commitOffsets(group, commits, undefined);
  }

  async #commitOffsets(group: string, commits: readonly OffsetCommit[], fence: (() => void) | undefined) {
    validateGroupName(group);
    if (!Array.isArray(commits) || commits.length > 100_000) {
      throw new ValidationError(`'commits' must be an array of at most 100000 offset commits`);
    }
    for (const commit of commits) {
      validateTopicName(commit?.topic);
      validatePartitionIndex(commit.partition);
      validateOffset(commit.offset);
    }
    const topics = [...new Set(commits.map((commit) => commit.topic))];
    // Resolved outside the write too, so unknown topics fail early and known ones get cached.
    for (const topic of topics) this.#topicMeta(topic);
    await this.#retryStale(topics, () =>
      this.#write(() => {
        fence?.();
        const nowMs = Math.floor(this.#clock.now());
        const upsert = this.#statement(
          'INSERT INTO log_group_offsets (group_name, topic_id, partition, committed_offset, committed_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (group_name, topic_id, partition) DO UPDATE SET committed_offset = excluded.committed_offset, committed_at = excluded.committed_at',
        );
        for (const { topic, partition, offset } of commits) {
          const meta = this.#topicMeta(topic);
          const range = this.#partitionRange(meta, partition);
          if (offset > range.end) {
            throw new OffsetOutOfRangeError(
              `Cannot commit offset ${offset} for group '${group}' on topic '${topic}' partition ${partition}: the partition ends at ${range.end}`,
              { details: { group, topic, partition, offset, end: range.end } },
            );
          }
          upsert.run(group, meta.id, partition, offset, nowMs);
        }
      }),
    );
  }

  async committedOffsets(group: string, topic: string): Promise<Map<number, number>> {
    this.#assertOpen();
    validateGroupName(group);
    validateTopicName(topic);
    return this.#retryStale(topic, () => {
      const offsets = this.#committedOffsetsOf(group, topic);
      if (offsets.size === 0 && !this.#groups.has(group)) {
        const known = this.#statement('SELECT 1 FROM log_group_offsets WHERE group_name = ? LIMIT 1').get(
          group,
        );
        if (known === undefined) {
          throw new NotFoundError(
            `Consumer group '${group}' is unknown: it has no committed offsets and no members`,
            {
              details: { group },
            },
          );
        }
      }
      return offsets;
    });
  }

  consumer(options: ConsumerOptions): Consumer {
    this.#assertOpen();
    const normalized = normalizeConsumerOptions(options);
    const consumer = new SqliteConsumer(this.#consumerHost, normalized, ++this.#memberSequence);
    const members = this.#groups.get(normalized.group) ?? [];
    members.push(consumer);
    this.#groups.set(normalized.group, members);
    for (const topic of normalized.topics) {
      let subscribers = this.#consumersByTopic.get(topic);
      if (subscribers === undefined) {
        subscribers = new Set();
        this.#consumersByTopic.set(topic, subscribers);
      }
      subscribers.add(consumer);
    }
    this.#rebalance(normalized.group);
    return consumer;
  }

  #committedOffsetsOf(group: string, topic: string): Map<number, number> {
    const meta = this.#topicMeta(topic);
    const rows = this.#statement(
      'SELECT partition, committed_offset FROM log_group_offsets WHERE group_name = ? AND topic_id = ?',
    ).all(group, meta.id) as unknown as [number, number][];
    return new Map(rows);
  }

  #partitionRanges(topic: string): PartitionRange[] | undefined {
    const meta = this.#lookupTopic(topic);
    if (meta === undefined) return undefined;
    const rows = this.#statement(
      'SELECT partition, start_offset, end_offset FROM log_partitions WHERE topic_id = ?',
    ).all(meta.id) as unknown as [number, number, number][];
    if (rows.length === 0) {
      // Deleted by another log on this file: forget it so the next lookup sees the truth.
      this.#topics.delete(topic);
      return undefined;
    }
    const ranges: PartitionRange[] = [];
    for (const [partition, start, end] of rows) ranges[partition] = { start, end };
    return ranges;
  }

  #readPartitionFromConsumer(
    topic: string,
    partition: number,
    from: number,
    maxRecords: number,
    out: LogRecord[],
  ): number {
    const meta = this.#lookupTopic(topic);
    if (meta === undefined) return 0;
    return this.#readInto(meta, partition, from, maxRecords, maxPartitionFetchBytes, out);
  }

  #leave(consumer: SqliteConsumer): void {
    const members = this.#groups.get(consumer.group);
    if (members !== undefined) {
      const remaining = members.filter((member) => member !== consumer);
      if (remaining.length === 0) this.#groups.delete(consumer.group);
      else this.#groups.set(consumer.group, remaining);
    }
    for (const topic of consumer.topics) this.#consumersByTopic.get(topic)?.delete(consumer);
    this.#rebalance(consumer.group);
  }

  /** Recomputes a group's assignment (Kafka's range assignor) and hands each member its share. */
  #rebalance(group: string): void {
    const members = this.#groups.get(group);
    if (members === undefined || this.#closed) return;
    const counts = new Map<string, number>();
    for (const member of members) {
      for (const topic of member.topics) {
        if (!counts.has(topic)) counts.set(topic, this.#lookupTopic(topic)?.description.partitions ?? 0);
      }
    }
    const assignment = assignRange(members, counts);
    // Revocations first, for every member, then the additions: as with Kafka's cooperative
    // protocol, a partition's old owner is told it lost it before its new owner is told it has it.
    for (const member of members) {
      const next = new Set(
        (assignment.get(member.memberId) ?? []).map((tp) => partitionKey(tp.topic, tp.partition)),
      );
      member.assign(member.assignment().filter((tp) => next.has(partitionKey(tp.topic, tp.partition))));
    }
    for (const member of members) member.assign(assignment.get(member.memberId) ?? ([] as TopicPartition[]));
  }

  #rebalanceTopic(topic: string): void {
    const groups = new Set([...(this.#consumersByTopic.get(topic) ?? [])].map((consumer) => consumer.group));
    for (const group of groups) this.#rebalance(group);
  }

  #wakeTopic(topic: string): void {
    const subscribers = this.#consumersByTopic.get(topic);
    if (subscribers === undefined) return;
    for (const consumer of subscribers) consumer.wake();
  }

  // ---- retention ----

  /**
   * Applies every topic's retention (age, size) or compaction now, one partition per
   * transaction so appends interleave. Also runs every `retentionCheckIntervalMs`.
   */
  async enforceRetention(): Promise<RetentionResult> {
    this.#assertOpen();
    const total = { recordsRemoved: 0, bytesRemoved: 0 };
    try {
      const topics = this.#statement(
        'SELECT id, partitions, retention_ms, retention_bytes, cleanup_policy FROM log_topics ORDER BY id',
      ).all() as unknown as [number, number, number | null, number | null, string][];
      const prepare = (sql: string) => this.#statement(sql);
      for (const [topicId, partitions, retentionMs, retentionBytes, cleanupPolicy] of topics) {
        if (cleanupPolicy === 'delete' && retentionMs === null && retentionBytes === null) continue;
        for (let partition = 0; partition < partitions; partition++) {
          if (this.#closed) break;
          const ref = { topicId, partition };
          const result = await this.#write(() => {
            const nowMs = Math.floor(this.#clock.now());
            return cleanupPolicy === 'compact'
              ? compactPartition(prepare, ref, this.#tombstoneRetentionMs, nowMs)
              : trimPartition(prepare, ref, retentionMs, retentionBytes, nowMs);
          });
          total.recordsRemoved += result.recordsRemoved;
          total.bytesRemoved += result.bytesRemoved;
        }
      }
    } catch (error) {
      this.#emitRetention({ error: error as Error });
      throw error;
    }
    this.#emitRetention({ result: total });
    return total;
  }

  /** Calls `listener` after every retention run (manual or periodic) with what it removed or its error. */
  onRetention(listener: (event: RetentionEvent) => void): Disposable {
    this.#retentionListeners.add(listener);
    return { dispose: () => this.#retentionListeners.delete(listener) };
  }

  #emitRetention(event: RetentionEvent): void {
    for (const listener of this.#retentionListeners) listener(event);
  }

  #scheduleRetention(): void {
    if (this.#retentionCheckIntervalMs === null || this.#closed) return;
    this.#retentionTimer = this.#timers.setTimeout(() => {
      this.#retentionTimer = undefined;
      this.enforceRetention()
        // The error already went to the onRetention listeners; the next run tries again.
        .catch(() => undefined)
        .finally(() => this.#scheduleRetention());
    }, this.#retentionCheckIntervalMs);
    // Housekeeping alone must not keep a process alive that has nothing else to do.
    this.#retentionTimer.unref?.();
  }

  // ---- lifecycle ----

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#retentionTimer?.cancel();
    this.#retentionTimer = undefined;
    for (const members of this.#groups.values()) for (const member of members) member.closeByLog();
    this.#groups.clear();
    this.#consumersByTopic.clear();
    if (this.#ownsDatabase && !this.db.closed) {
      // Let queued writes (a retention pass, a waiting append) finish before the file closes.
      if (!this.db.inWrite) await this.db.write(() => undefined);
      await this.db.close();
    }
  }

  // ---- internals ----

  /** Runs `fn` in a write: at once when the lock is free or already ours, else after earlier writes. */
  #write<T>(fn: () => T): T | Promise<T> {
    if (this.db.inWrite || this.db.writeIdle) return this.db.writeSync(fn);
    return this.db.write(fn);
  }

  /**
   * Runs `fn`, and once more with fresh topic metadata if a cached topic id turned out stale
   * (the topic was deleted or recreated through another log on this file).
   */
  async #retryStale<T>(topics: string | readonly string[], fn: () => T | Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      if (!(error instanceof StaleTopicError)) throw error;
      for (const topic of typeof topics === 'string' ? [topics] : topics) this.#topics.delete(topic);
      try {
        return await fn();
      } catch (retryError) {
        if (retryError instanceof StaleTopicError) throw topicNotFound(retryError.topic);
        throw retryError;
      }
    }
  }

  #statement(sql: string): StatementSync {
    const statement = this.db.prepare(sql);
    statement.setReturnArrays(true);
    return statement;
  }

  #readTopicRow(name: string): { id: number; description: TopicDescription } | undefined {
    const row = this.#statement(
      'SELECT id, partitions, retention_ms, retention_bytes, cleanup_policy FROM log_topics WHERE name = ?',
    ).get(name) as unknown as
      | [number, number, number | null, number | null, 'delete' | 'compact']
      | undefined;
    if (row === undefined) return undefined;
    const [id, partitions, retentionMs, retentionBytes, cleanupPolicy] = row;
    return {
      id,
      description: Object.freeze({ name, partitions, retentionMs, retentionBytes, cleanupPolicy }),
    };
  }

  #lookupTopic(name: string): TopicMeta | undefined {
    const cached = this.#topics.get(name);
    if (cached !== undefined) return cached;
    const row = this.#readTopicRow(name);
    if (row === undefined) return undefined;
    const meta: TopicMeta = { ...row, wake: () => this.#wakeTopic(name) };
    // Inside a write the row may be uncommitted and roll back: cache it only once that write
    // commits (appends made only inside callers' transactions still get a cached topic).
    if (this.db.inWrite) this.db.afterCommit(() => this.#topics.set(name, meta));
    else this.#topics.set(name, meta);
    return meta;
  }

  #topicMeta(name: string): TopicMeta {
    const meta = this.#lookupTopic(name);
    if (meta === undefined) throw topicNotFound(name);
    return meta;
  }

  #partitionRange(meta: TopicMeta, partition: number): PartitionRange {
    if (partition >= meta.description.partitions) {
      throw partitionNotFound(meta.description.name, meta.description.partitions, partition);
    }
    const row = this.#statement(
      'SELECT start_offset, end_offset FROM log_partitions WHERE topic_id = ? AND partition = ?',
    ).get(meta.id, partition) as unknown as [number, number] | undefined;
    if (row === undefined) throw new StaleTopicError(meta.description.name);
    return { start: row[0], end: row[1] };
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError('The log is closed');
  }
}

/** Opens (creating when missing) a SQLite log file; `close()` closes the file too. */
export function openSqliteLog(options: OpenSqliteLogOptions): SqliteLog {
  const db = new SqliteDatabase({
    path: options.path,
    ...(options.durability === undefined ? {} : { durability: options.durability }),
    ...(options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs }),
  });
  try {
    return new SqliteLog(db, options, true);
  } catch (error) {
    db.close();
    throw error;
  }
}

/** Creates or upgrades the log's tables; SchemaMismatchError when the file is newer than this code. */
function migrateLog(db: SqliteDatabase): void {
  db.migrate(logComponent, logMigrations);
}

const headerEncoder = new TextEncoder();

function encodeHeaders(topic: string, index: number, headers: RecordHeaders | undefined): Uint8Array | null {
  if (headers === undefined || headers === null) return null;
  if (typeof headers !== 'object' || Array.isArray(headers)) {
    throw new ValidationError(
      `Cannot append to topic '${topic}' as records[${index}].headers must be an object of strings`,
    );
  }
  let any = false;
  for (const name in headers) {
    any = true;
    if (typeof headers[name] !== 'string') {
      throw new ValidationError(
        `Cannot append to topic '${topic}' as header '${name}' of records[${index}] must be a string: current value is a ${typeof headers[name]}`,
      );
    }
  }
  return any ? headerEncoder.encode(JSON.stringify(headers)) : null;
}

function topicNotFound(topic: string): NotFoundError {
  return new NotFoundError(`Topic '${topic}' does not exist`, { details: { topic } });
}

function partitionNotFound(topic: string, partitions: number, partition: number): NotFoundError {
  return new NotFoundError(
    `Topic '${topic}' has ${partitions} partition${partitions === 1 ? '' : 's'}, so partition ${partition} does not exist`,
    { details: { topic, partition, partitions } },
  );
}

function offsetPastEnd(topic: string, partition: number, offset: number, end: number): OffsetOutOfRangeError {
  return new OffsetOutOfRangeError(
    `Cannot read topic '${topic}' partition ${partition} from offset ${offset}: the partition ends at ${end}`,
    { details: { topic, partition, offset, end } },
  );
}
