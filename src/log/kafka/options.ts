import { ValidationError } from '../../errors.ts';
import { type Clock, type Random, systemClock, systemRandom, systemTimers, type Timers } from '../../time.ts';
import { defaultStickyBatchBytes } from '../partitioner.ts';
import { checkInteger } from '../validation.ts';

export interface KafkaLogOptions {
  /** Bootstrap brokers as `host:port`; the client discovers the rest of the cluster from them. 1 to 100 entries. */
  brokers: readonly string[];
  /** Names this process to the brokers (logs, quotas). @default 'meridian' */
  clientId?: string;
  /** How long one request to a broker may take before it fails. @default 30000, in [100, 600000] */
  requestTimeoutMs?: number;
  /** How long opening a connection to a broker may take. @default 5000, in [100, 600000] */
  connectTimeoutMs?: number;
  /**
   * Retries of a request that failed for a reason that may pass (leader moved, broker
   * restarting, coordinator loading). The idempotent producer retries without duplicating.
   * @default 5, in [0, 100]
   */
  retries?: number;
  /** Wait between two such retries. @default 500, in [0, 60000] */
  retryDelayMs?: number;
  /** Largest record (key + value + headers bytes) append accepts; the same default as the SQLite log. @default 1048576, in [1, 67108864] */
  maxRecordBytes?: number;
  /** Most records one append call takes. @default 10000, in [1, 1000000] */
  maxAppendRecords?: number;
  /**
   * How long a consumer group waits for a silent member (killed, hung, cut off) before moving its
   * partitions (Kafka's session.timeout.ms; the broker allows 6000 to 300000 by default, its
   * group.min.session.timeout.ms). After a SIGKILL the survivors own the partitions about this
   * long plus ~0.5 s later (measured: 8.4 s at the default), inside the cluster's 15 s takeover target.
   * @default 8000, in [1000, 3600000]
   */
  sessionTimeoutMs?: number;
  /** Interval of a member's heartbeats; also how fast members notice a rebalance. @default 1000, in [100, 600000] */
  heartbeatIntervalMs?: number;
  /** How long the group waits for members to rejoin during a rebalance. @default 30000, in [1000, 3600000] */
  rebalanceTimeoutMs?: number;
  /**
   * Longest a single fetch waits at the broker for new records (the broker answers as soon as
   * one arrives). A poll repeats fetches up to its own timeout. @default 500, in [0, 30000]
   */
  fetchMaxWaitMs?: number;
  /** Bytes one fetch may return per partition (at least one record batch is always returned). @default 1048576, in [1024, 268435456] */
  fetchMaxPartitionBytes?: number;
  /** How long createTopic/deleteTopic wait for the cluster's metadata to show the change. @default 30000, in [0, 600000] */
  topicPropagationTimeoutMs?: number;
  /** Bytes of keyless records sent to one partition before moving to the next (Kafka's batch.size). @default 16384 */
  stickyBatchBytes?: number;
  /** Timestamps of records appended without one. @default systemClock */
  clock?: Clock;
  /** Poll deadlines and topic propagation waits. @default systemTimers */
  timers?: Timers;
  /** Picks the first partition of keyless records per topic. @default systemRandom */
  random?: Random;
}

export interface NormalizedKafkaLogOptions {
  brokers: string[];
  clientId: string;
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  retries: number;
  retryDelayMs: number;
  maxRecordBytes: number;
  maxAppendRecords: number;
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  rebalanceTimeoutMs: number;
  fetchMaxWaitMs: number;
  fetchMaxPartitionBytes: number;
  topicPropagationTimeoutMs: number;
  stickyBatchBytes: number;
  clock: Clock;
  timers: Timers;
  random: Random;
}

const brokerPattern = /^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9A-Fa-f:.]+\]:\d{1,5}$/;
const clientIdPattern = /^[A-Za-z0-9._-]{1,249}$/;

/** Parses a comma-separated broker list, as the MERIDIAN_TEST_KAFKA_BROKERS variable holds it. */
export function parseBrokerList(text: string): string[] {
  return text
    .split(',')
    .map((broker) => broker.trim())
    .filter((broker) => broker.length > 0);
}

export function normalizeKafkaLogOptions(options: KafkaLogOptions): NormalizedKafkaLogOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError('Kafka log options must be an object with at least `brokers`');
  }
  const brokers = options.brokers;
  if (!Array.isArray(brokers) || brokers.length === 0 || brokers.length > 100) {
    throw new ValidationError(
      `'brokers' must be an array of 1 to 100 'host:port' strings: current value has ${Array.isArray(brokers) ? brokers.length : 'no'} entries`,
    );
  }
  for (const broker of brokers) {
    if (typeof broker !== 'string' || !brokerPattern.test(broker)) {
      throw new ValidationError(
        `'brokers' entries must be 'host:port': current value is '${String(broker)}'`,
      );
    }
  }
  const clientId = options.clientId ?? 'meridian';
  if (typeof clientId !== 'string' || !clientIdPattern.test(clientId)) {
    throw new ValidationError(
      `'clientId' must be 1 to 249 characters from [A-Za-z0-9._-]: current value is '${String(clientId)}'`,
    );
  }
  const sessionTimeoutMs = checkInteger(
    'sessionTimeoutMs',
    options.sessionTimeoutMs ?? 8000,
    1000,
    3_600_000,
  );
  const heartbeatIntervalMs = checkInteger(
    'heartbeatIntervalMs',
    options.heartbeatIntervalMs ?? 1000,
    100,
    600_000,
  );
  if (heartbeatIntervalMs >= sessionTimeoutMs) {
    throw new ValidationError(
      `'heartbeatIntervalMs' must be below 'sessionTimeoutMs' (${sessionTimeoutMs}): current value is ${heartbeatIntervalMs}`,
    );
  }
  return {
    brokers: [...brokers],
    clientId,
    requestTimeoutMs: checkInteger('requestTimeoutMs', options.requestTimeoutMs ?? 30_000, 100, 600_000),
    connectTimeoutMs: checkInteger('connectTimeoutMs', options.connectTimeoutMs ?? 5000, 100, 600_000),
    retries: checkInteger('retries', options.retries ?? 5, 0, 100),
    retryDelayMs: checkInteger('retryDelayMs', options.retryDelayMs ?? 500, 0, 60_000),
    maxRecordBytes: checkInteger('maxRecordBytes', options.maxRecordBytes ?? 1_048_576, 1, 67_108_864),
    maxAppendRecords: checkInteger('maxAppendRecords', options.maxAppendRecords ?? 10_000, 1, 1_000_000),
    sessionTimeoutMs,
    heartbeatIntervalMs,
    rebalanceTimeoutMs: checkInteger(
      'rebalanceTimeoutMs',
      options.rebalanceTimeoutMs ?? 30_000,
      1000,
      3_600_000,
    ),
    fetchMaxWaitMs: checkInteger('fetchMaxWaitMs', options.fetchMaxWaitMs ?? 500, 0, 30_000),
    fetchMaxPartitionBytes: checkInteger(
      'fetchMaxPartitionBytes',
      options.fetchMaxPartitionBytes ?? 1_048_576,
      1024,
      268_435_456,
    ),
    topicPropagationTimeoutMs: checkInteger(
      'topicPropagationTimeoutMs',
      options.topicPropagationTimeoutMs ?? 30_000,
      0,
      600_000,
    ),
    stickyBatchBytes: checkInteger(
      'stickyBatchBytes',
      options.stickyBatchBytes ?? defaultStickyBatchBytes,
      1,
      67_108_864,
    ),
    clock: options.clock ?? systemClock,
    timers: options.timers ?? systemTimers,
    random: options.random ?? systemRandom,
  };
}
