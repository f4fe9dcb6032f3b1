/**
 * The partitioned log: Kafka's model (topics, partitions, dense offsets, consumer groups,
 * retention and compaction) with an embedded SQLite backend. The Kafka backend is `meridian/kafka`
 * (src/log/kafka/index.ts), whose client loads only when a KafkaLog is used. See docs/log.md and
 * docs/kafka.md.
 */

export { decodeJson, decodeKey, decodeString, fromUtf8, jsonValue, keyBytes, utf8 } from './codec.ts';
export {
  AssignmentListenerError,
  OffsetOutOfRangeError,
  RecordTooLargeError,
  SchemaMismatchError,
} from './errors.ts';
export { murmur2, partitionForKey, toPositive } from './murmur2.ts';
export { StickyPartitioner, type StickyPartitionerOptions } from './partitioner.ts';
export {
  type Disposable,
  type OpenSqliteLogOptions,
  openSqliteLog,
  type RetentionEvent,
  type RetentionResult,
  SqliteLog,
  type SqliteLogOptions,
} from './sqlite/sqlite-log.ts';
export type {
  AppendResult,
  AssignmentChange,
  CleanupPolicy,
  Consumer,
  ConsumerOptions,
  Log,
  LogRecord,
  OffsetCommit,
  PartitionOffsets,
  PollOptions,
  ProducerRecord,
  ReadOptions,
  RecordHeaders,
  TopicConfig,
  TopicDescription,
  TopicPartition,
} from './types.ts';
