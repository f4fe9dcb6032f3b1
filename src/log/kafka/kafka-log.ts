import type { Admin, Consumer as ClientConsumer, ClusterMetadata, Producer } from '@platformatic/kafka';
import { assert } from '../../assert.ts';
import {
  AlreadyExistsError,
  ClosedError,
  ConflictError,
  isMeridianError,
  NotFoundError,
  ValidationError,
} from '../../errors.ts';
import { keyBytes } from '../codec.ts';
import { OffsetOutOfRangeError, RecordTooLargeError } from '../errors.ts';
import { StickyPartitioner } from '../partitioner.ts';
import type {
  AppendResult,
  CleanupPolicy,
  Consumer,
  ConsumerOptions,
  Log,
  LogRecord,
  OffsetCommit,
  PartitionOffsets,
  ProducerRecord,
  ReadOptions,
  TopicConfig,
  TopicDescription,
} from '../types.ts';
import {
  checkInteger,
  maxPartitions,
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
import { type KafkaClientModule, loadKafkaClient } from './client.ts';
import { cooperativeAssignor } from './cooperative-assignor.ts';
import { KafkaConsumer, type KafkaConsumerHost } from './kafka-consumer.ts';
import { hasBrokerError, isUnknownTopic, translateKafkaError } from './kafka-errors.ts';
import { type KafkaLogOptions, type NormalizedKafkaLogOptions, normalizeKafkaLogOptions } from './options.ts';
import { readBatches, toBuffer } from './records.ts';

interface Clients {
  readonly module: KafkaClientModule;
  readonly admin: Admin;
  readonly producer: Producer;
  /** Fetches for read() and offset look-ups; never joins a group. */
  readonly reader: ClientConsumer;
}

interface OutgoingRecord {
  readonly index: number;
  readonly partition: number;
  readonly key: Buffer | undefined;
  readonly value: Buffer | null;
  readonly headers: Map<Buffer, Buffer> | undefined;
  readonly timestamp: number;
  readonly bytes: number;
}

/** Kafka's ConfigResource type for a topic (DescribeConfigs). */
const topicResource = 2;
/** Kafka's ListOffsets pseudo-timestamps. */
const earliestTimestamp = -2n;
const latestTimestamp = -1n;
/**
 * Topics Meridian creates accept batches up to `maxRecordBytes` plus this much: room for the
 * batch and record headers around a record of exactly `maxRecordBytes`.
 */
const batchOverheadBytes = 65_536;
/** Fetches one read() makes at most while gathering records across log segments. */
const maxReadFetches = 64;
/**
 * Times read() asks again, with fresh metadata, when a fetch came up short of the leader's end
 * (a follower answered for the leader, or a just-written partition was not yet readable).
 */
const maxReadLeaderAttempts = 6;
/** The first wait before asking again; it doubles each time (10 + 20 + … + 160 = 310 ms at most). */
const readRetryDelayMs = 10;
/** Timestamps within one record batch stay closer than this to its first one (see #rounds). */
const maxTimestampDeltaMs = 2 ** 31 - 1;
/** The interval of the bounded waits for topic metadata to settle after create and delete. */
const propagationPollMs = 100;

function topicNotFound(topic: string, cause?: unknown): NotFoundError {
  return new NotFoundError(`Topic '${topic}' does not exist`, { cause, details: { topic } });
}

function partitionNotFound(topic: string, partitions: number, partition: number): NotFoundError {
  return new NotFoundError(
    `Topic '${topic}' has ${partitions} partition${partitions === 1 ? '' : 's'}, so partition ${partition} does not exist`,
    { details: { topic, partition, partitions } },
  );
}

function cleanupPolicyOf(value: string | null | undefined): CleanupPolicy {
  // Kafka also allows 'compact,delete'; compaction is on then, which is what callers need to know.
  return value?.split(',').includes('compact') ? 'compact' : 'delete';
}

function limitOf(value: string | null | undefined): number | null {
  const parsed = value === null || value === undefined ? -1 : Number(value);
  return parsed < 0 || !Number.isSafeInteger(parsed) ? null : parsed;
}

/**
 * The log on Apache Kafka, through @platformatic/kafka (pure TypeScript, loaded on first use).
 * Topics, partitions, records and consumer groups are Kafka's own; this class maps the log's
 * contract onto them:
 *
 * - append places each record itself (Kafka's murmur2 partitioner for keys, the sticky one for
 *   keyless records) and sends with an explicit partition through the idempotent producer
 *   with acks=all, so a retried send never duplicates and an acknowledged record is on every
 *   in-sync replica. A batch is atomic per partition (one Kafka record batch) when that
 *   partition's share of it fits in `maxRecordBytes` and its timestamps lie within 24.8 days
 *   of each other; otherwise it goes as several batches, in order (see #rounds).
 * - read fetches from the partition leader; offsets and offsetForTimestamp are ListOffsets.
 * - commitOffsets writes a group's offsets from outside the group (Kafka allows that only
 *   while the group has no live members: ConflictError otherwise); consumers commit their own.
 */
export class KafkaLog implements Log {
  readonly backend = 'kafka' as const;
  readonly #options: NormalizedKafkaLogOptions;
  readonly #partitioner: StickyPartitioner;
  #clients: Promise<Clients> | undefined;
  /** Cleanup policy per topic, for rejecting keyless records on compacted topics before sending. */
  readonly #policies = new Map<string, CleanupPolicy>();
  readonly #consumers = new Set<KafkaConsumer>();
  /** Fetches of read() run one at a time: they share the reader's fetch session with the broker. */
  #readQueue: Promise<unknown> = Promise.resolve();
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #consumerHost: KafkaConsumerHost;

  constructor(options: KafkaLogOptions) {
    this.#options = normalizeKafkaLogOptions(options);
    this.#partitioner = new StickyPartitioner({
      batchBytes: this.#options.stickyBatchBytes,
      random: this.#options.random,
    });
    this.#consumerHost = {
      options: this.#options,
      createClient: async (group) => {
        const { module } = await this.#ready();
        return new module.Consumer({
          ...this.#clientOptions('consumer'),
          groupId: group,
          autocommit: false,
          sessionTimeout: this.#options.sessionTimeoutMs,
          heartbeatInterval: this.#options.heartbeatIntervalMs,
          rebalanceTimeout: this.#options.rebalanceTimeoutMs,
          // Cooperative rebalancing: a member joining or leaving moves only the partitions that
          // must move; the others keep fetching. Round-robin second, so a group that still has a
          // member offering only that (an older Meridian) keeps working, with eager rebalances.
          protocols: [
            { name: 'cooperative-sticky', version: 3 },
            { name: 'roundrobin', version: 1 },
          ],
          partitionAssigner: cooperativeAssignor,
        });
      },
      released: (consumer) => {
        this.#consumers.delete(consumer);
      },
    };
  }

  /** Connects and checks that the brokers answer (createKafkaLog calls it). */
  async connect(): Promise<void> {
    const { admin } = await this.#ready();
    try {
      await admin.metadata({ topics: [] });
    } catch (error) {
      throw translateKafkaError(error, `Cannot reach Kafka at ${this.#options.brokers.join(',')}`);
    }
  }

  async createTopic(name: string, config: TopicConfig): Promise<void> {
    this.#assertOpen();
    validateTopicName(name);
    const description = normalizeTopicConfig(name, config);
    const { admin } = await this.#ready();
    try {
      await admin.createTopics({
        topics: [name],
        partitions: description.partitions,
        // -1: the broker's default.replication.factor.
        replicas: config.replicationFactor ?? -1,
        configs: [
          { name: 'cleanup.policy', value: description.cleanupPolicy },
          { name: 'retention.ms', value: String(description.retentionMs ?? -1) },
          { name: 'retention.bytes', value: String(description.retentionBytes ?? -1) },
          { name: 'max.message.bytes', value: String(this.#options.maxRecordBytes + batchOverheadBytes) },
        ],
      });
    } catch (error) {
      if (!hasBrokerError(error, 'TOPIC_ALREADY_EXISTS')) {
        throw translateKafkaError(error, `Cannot create topic '${name}'`, { topic: name });
      }
      // Another client created it a moment ago: the broker answering may not know it yet.
      await this.#awaitTopicMetadata(name, (topic) => topic !== undefined);
      const existing = await this.describeTopic(name);
      if (!sameTopicConfig(existing, description)) {
        throw new AlreadyExistsError(
          `Cannot create topic '${name}' as it exists with another config: ${JSON.stringify(existing)}`,
          { details: { topic: name, existing, requested: description } },
        );
      }
    }
    this.#forget(name);
    await this.#awaitTopicMetadata(
      name,
      (topic) =>
        topic !== undefined &&
        topic.partitionsCount === description.partitions &&
        topic.partitions.every((partition) => partition.leader >= 0),
    );
  }

  async describeTopic(name: string): Promise<TopicDescription> {
    this.#assertOpen();
    validateTopicName(name);
    const { admin } = await this.#ready();
    const partitions = await this.#partitionCount(name, true);
    let configs: Awaited<ReturnType<Admin['describeConfigs']>>;
    try {
      configs = await admin.describeConfigs({
        resources: [
          {
            resourceType: topicResource,
            resourceName: name,
            configurationKeys: ['cleanup.policy', 'retention.ms', 'retention.bytes'],
          },
        ],
      });
    } catch (error) {
      throw translateKafkaError(error, `Cannot describe topic '${name}'`, { topic: name });
    }
    const values = new Map((configs[0]?.configs ?? []).map((entry) => [entry.name, entry.value]));
    const cleanupPolicy = cleanupPolicyOf(values.get('cleanup.policy'));
    this.#policies.set(name, cleanupPolicy);
    return {
      name,
      partitions,
      retentionMs: limitOf(values.get('retention.ms')),
      retentionBytes: limitOf(values.get('retention.bytes')),
      cleanupPolicy,
    };
  }

  async listTopics(): Promise<string[]> {
    this.#assertOpen();
    const { admin } = await this.#ready();
    try {
      const topics = await admin.listTopics({ includeInternals: false });
      return topics.filter((topic) => !topic.startsWith('__')).sort();
    } catch (error) {
      throw translateKafkaError(error, 'Cannot list topics');
    }
  }

  async deleteTopic(name: string): Promise<void> {
    this.#assertOpen();
    validateTopicName(name);
    const { admin } = await this.#ready();
    await this.#metadata(admin, name, true);
    try {
      await admin.deleteTopics({ topics: [name] });
    } catch (error) {
      if (isUnknownTopic(error)) throw topicNotFound(name, error);
      throw translateKafkaError(error, `Cannot delete topic '${name}'`, { topic: name });
    }
    this.#forget(name);
    this.#partitioner.forget(name);
    await this.#awaitTopicMetadata(name, (topic) => topic === undefined);
  }

  async append(topic: string, records: readonly ProducerRecord[]): Promise<AppendResult[]> {
    this.#assertOpen();
    validateTopicName(topic);
    if (!Array.isArray(records)) {
      throw new ValidationError(
        `Cannot append to topic '${topic}' as 'records' must be an array: current value is a ${typeof records}`,
      );
    }
    checkInteger(
      'records.length',
      records.length,
      0,
      this.#options.maxAppendRecords,
      `Cannot append to topic '${topic}' as `,
    );
    if (records.length === 0) return [];
    const partitions = await this.#partitionCount(topic, false);
    const cleanupPolicy = await this.#cleanupPolicy(topic);
    const outgoing = this.#prepare(topic, records, partitions, cleanupPolicy);
    const { producer } = await this.#ready();
    const results = new Array<AppendResult>(records.length);
    for (const round of this.#rounds(outgoing)) {
      let offsets: { topic: string; partition: number; offset: bigint }[];
      try {
        const produced = await producer.send({
          messages: round.map((record) => ({
            topic,
            partition: record.partition,
            key: record.key,
            // The client writes null as Kafka's null value (a tombstone); its types only say Buffer.
            value: record.value as Buffer,
            headers: record.headers,
            timestamp: BigInt(record.timestamp),
          })),
        });
        offsets = produced.offsets ?? [];
      } catch (error) {
        throw translateKafkaError(error, `Cannot append to topic '${topic}'`, { topic });
      }
      const base = new Map(offsets.map((entry) => [entry.partition, Number(entry.offset)]));
      const next = new Map<number, number>();
      for (const record of round) {
        const first = base.get(record.partition);
        assert(first !== undefined, `the broker acknowledged partition ${record.partition} of the send`);
        const offset = next.get(record.partition) ?? first;
        next.set(record.partition, offset + 1);
        results[record.index] = { topic, partition: record.partition, offset, timestamp: record.timestamp };
      }
    }
    return results;
  }

  async read(topic: string, partition: number, offset: number, options?: ReadOptions): Promise<LogRecord[]> {
    this.#assertOpen();
    validateTopicName(topic);
    validatePartitionIndex(partition);
    validateOffset(offset);
    const { maxRecords, maxBytes } = normalizeReadOptions(options);
    const { reader } = await this.#ready();
    const metadata = await this.#metadata(reader, topic);
    let topicMetadata = metadata.topics.get(topic);
    assert(topicMetadata !== undefined, 'metadata of a topic that exists names it');
    if (partition >= topicMetadata.partitionsCount)
      throw partitionNotFound(topic, topicMetadata.partitionsCount, partition);
    // A Kafka fetch answers from one log segment at most, so a read may need several fetches to
    // gather what the partition holds; it stops at maxRecords, maxBytes or the high watermark.
    // `atEnd` says it stopped at the answering broker's high watermark rather than at a limit.
    const fetchRange = async (from: number, leader: number, topicId: string) => {
      const out: LogRecord[] = [];
      let next = from;
      let bytes = 0;
      for (let fetches = 0; fetches < maxReadFetches; fetches++) {
        if (out.length >= maxRecords || bytes >= maxBytes) break;
        const response = await reader.fetch({
          node: leader,
          // Answer at once with what the log holds: a read never waits for new records.
          maxWaitTime: 0,
          minBytes: 0,
          maxBytes: Math.max(maxBytes - bytes, 1024),
          topics: [
            {
              topicId,
              partitions: [
                {
                  partition,
                  fetchOffset: BigInt(next),
                  partitionMaxBytes: Math.max(maxBytes - bytes, 1024),
                  currentLeaderEpoch: -1,
                  lastFetchedEpoch: -1,
                },
              ],
            },
          ],
        });
        const result = response.responses[0]?.partitions.find((entry) => entry.partitionIndex === partition);
        const read = readBatches(
          topic,
          partition,
          result?.records,
          next,
          maxRecords - out.length,
          maxBytes - bytes,
          out,
        );
        // With records already gathered, one that would overshoot maxBytes ends the read.
        if (out.length > 0 && read.added === 0) break;
        bytes += read.bytes;
        if (read.nextOffset <= next || read.nextOffset >= Number(result?.highWatermark ?? 0)) {
          return { records: out, next: Math.max(next, read.nextOffset), atEnd: true };
        }
        next = read.nextOffset;
      }
      return { records: out, next, atEnd: false };
    };
    const gather = async (from: number) => {
      for (let attempt = 1; ; attempt++) {
        assert(topicMetadata !== undefined, 'metadata of a topic that exists names it');
        const leader = topicMetadata.partitions[partition]?.leader ?? -1;
        const { records, next, atEnd } = await fetchRange(from, leader, topicMetadata.id);
        if (!atEnd) return records;
        // Kafka lets a follower answer a fetch, up to its own high watermark, which lags the
        // leader's. With metadata from before a leader change, the "leader" asked may be such a
        // follower and the read would come up short: check the end with the real leader
        // (ListOffsets goes to leaders only) and ask again with fresh metadata.
        const end = await this.#listOffset(topic, partition, latestTimestamp);
        if (next >= end || attempt >= maxReadLeaderAttempts) return records;
        // Asking again at once can meet the same transient state, so give the broker a moment.
        const delayMs = readRetryDelayMs * 2 ** (attempt - 1);
        await new Promise<void>((resolve) => this.#options.timers.setTimeout(resolve, delayMs));
        reader.clearMetadata();
        topicMetadata = (await this.#metadata(reader, topic, true)).topics.get(topic);
      }
    };
    return this.#serializedRead(async () => {
      try {
        return await gather(offset);
      } catch (error) {
        if (isMeridianError(error)) throw error;
        if (!hasBrokerError(error, 'OFFSET_OUT_OF_RANGE')) {
          reader.clearMetadata();
          throw translateKafkaError(error, `Cannot read topic '${topic}' partition ${partition}`, {
            topic,
            partition,
            offset,
          });
        }
      }
      // Before the start (retention removed it) reads from the start; past the end is an error.
      const { start, end } = await this.offsets(topic, partition);
      if (offset > end) {
        throw new OffsetOutOfRangeError(
          `Cannot read topic '${topic}' partition ${partition} from offset ${offset}: the partition ends at ${end}`,
          { details: { topic, partition, offset, end } },
        );
      }
      try {
        return await gather(Math.max(offset, start));
      } catch (error) {
        throw translateKafkaError(error, `Cannot read topic '${topic}' partition ${partition}`, {
          topic,
          partition,
          offset,
        });
      }
    });
  }

  async offsets(topic: string, partition: number): Promise<PartitionOffsets> {
    this.#assertOpen();
    validateTopicName(topic);
    validatePartitionIndex(partition);
    const partitions = await this.#partitionCount(topic, false);
    if (partition >= partitions) throw partitionNotFound(topic, partitions, partition);
    const [start, end] = await Promise.all([
      this.#listOffset(topic, partition, earliestTimestamp),
      this.#listOffset(topic, partition, latestTimestamp),
    ]);
    return { start, end };
  }

  async offsetForTimestamp(topic: string, partition: number, timestampMs: number): Promise<number> {
    this.#assertOpen();
    validateTopicName(topic);
    validatePartitionIndex(partition);
    validateTimestamp(timestampMs, 'timestampMs');
    const partitions = await this.#partitionCount(topic, false);
    if (partition >= partitions) throw partitionNotFound(topic, partitions, partition);
    const offset = await this.#listOffset(topic, partition, BigInt(timestampMs));
    // Kafka answers -1 when no record is that recent; the contract answers the end offset.
    return offset >= 0 ? offset : this.#listOffset(topic, partition, latestTimestamp);
  }

  async commitOffsets(group: string, commits: readonly OffsetCommit[]): Promise<void> {
    this.#assertOpen();
    validateGroupName(group);
    if (!Array.isArray(commits) || commits.length > 100_000) {
      throw new ValidationError(`'commits' must be an array of at most 100000 offset commits`);
    }
    for (const commit of commits) {
      validateTopicName(commit?.topic);
      validatePartitionIndex(commit.partition);
      validateOffset(commit.offset);
    }
    if (commits.length === 0) return;
    const byTopic = new Map<string, Map<number, number>>();
    for (const { topic, partition, offset } of commits) {
      const partitions = byTopic.get(topic) ?? new Map<number, number>();
      partitions.set(partition, offset);
      byTopic.set(topic, partitions);
    }
    for (const [topic, partitions] of byTopic) {
      const count = await this.#partitionCount(topic, false);
      const ends = await Promise.all(
        [...partitions.keys()].map(async (partition) => {
          if (partition >= count) throw partitionNotFound(topic, count, partition);
          return [partition, await this.#listOffset(topic, partition, latestTimestamp)] as const;
        }),
      );
      for (const [partition, end] of ends) {
        const offset = partitions.get(partition)!;
        if (offset > end) {
          throw new OffsetOutOfRangeError(
            `Cannot commit offset ${offset} for group '${group}' on topic '${topic}' partition ${partition}: the partition ends at ${end}`,
            { details: { group, topic, partition, offset, end } },
          );
        }
      }
    }
    const { admin } = await this.#ready();
    try {
      await admin.alterConsumerGroupOffsets({
        groupId: group,
        topics: [...byTopic].map(([name, partitions]) => ({
          name,
          partitionOffsets: [...partitions].map(([partition, offset]) => ({
            partition,
            offset: BigInt(offset),
          })),
        })),
      });
    } catch (error) {
      if (hasBrokerError(error, 'UNKNOWN_MEMBER_ID', 'ILLEGAL_GENERATION', 'REBALANCE_IN_PROGRESS')) {
        throw new ConflictError(
          `Cannot commit offsets for group '${group}' from outside it while it has live members: commit through its consumers`,
          { cause: error, details: { group } },
        );
      }
      throw translateKafkaError(error, `Cannot commit offsets for group '${group}'`, { group });
    }
  }

  async committedOffsets(group: string, topic: string): Promise<Map<number, number>> {
    this.#assertOpen();
    validateGroupName(group);
    validateTopicName(topic);
    const partitions = await this.#partitionCount(topic, false);
    const { admin } = await this.#ready();
    const offsets = new Map<number, number>();
    try {
      const listed = await admin.listConsumerGroupOffsets({
        groups: [
          { groupId: group, topics: [{ name: topic, partitionIndexes: [...Array(partitions).keys()] }] },
        ],
      });
      for (const entry of listed[0]?.topics ?? []) {
        if (entry.name !== topic) continue;
        for (const { partitionIndex, committedOffset } of entry.partitions) {
          if (committedOffset >= 0n) offsets.set(partitionIndex, Number(committedOffset));
        }
      }
      if (offsets.size > 0) return offsets;
      // No offsets for this topic: an unknown group ('Dead' to Kafka) is an error, a known one is not.
      const described = await admin.describeGroups({ groups: [group] });
      const state = described.get(group)?.state;
      if (state === undefined || state === 'Dead' || state === 'DEAD') {
        throw new NotFoundError(
          `Consumer group '${group}' is unknown: it has no committed offsets and no members`,
          {
            details: { group },
          },
        );
      }
      return offsets;
    } catch (error) {
      throw translateKafkaError(error, `Cannot read the committed offsets of group '${group}'`, {
        group,
        topic,
      });
    }
  }

  consumer(options: ConsumerOptions): Consumer {
    this.#assertOpen();
    const consumer = new KafkaConsumer(this.#consumerHost, normalizeConsumerOptions(options));
    this.#consumers.add(consumer);
    return consumer;
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#consumers].map((consumer) => consumer.close()));
    const clients = this.#clients;
    if (clients === undefined) return;
    const { admin, producer, reader } = await clients.catch(() => ({}) as Partial<Clients>);
    await Promise.allSettled([admin?.close(), producer?.close(), reader?.close()]);
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError('This Kafka log is closed');
  }

  #clientOptions(role: string) {
    const options = this.#options;
    return {
      clientId: `${options.clientId}-${role}`,
      bootstrapBrokers: options.brokers,
      timeout: options.requestTimeoutMs,
      requestTimeout: options.requestTimeoutMs,
      connectTimeout: options.connectTimeoutMs,
      retries: options.retries,
      retryDelay: options.retryDelayMs,
    };
  }

  /** Loads the client and creates the log's own clients on first use. */
  #ready(): Promise<Clients> {
    if (this.#closed) return Promise.reject(new ClosedError('This Kafka log is closed'));
    this.#clients ??= loadKafkaClient().then((module) => ({
      module,
      admin: new module.Admin(this.#clientOptions('admin')),
      producer: new module.Producer({
        ...this.#clientOptions('producer'),
        // The idempotent producer numbers each partition's batches, so a send retried after a
        // lost acknowledgement is not written twice; acks=all waits for every in-sync replica.
        idempotent: true,
        acks: module.ProduceAcks.ALL,
      }),
      reader: new module.Consumer({
        ...this.#clientOptions('reader'),
        groupId: `${this.#options.clientId}-reader`,
      }),
    }));
    return this.#clients;
  }

  /** Drops cached metadata and policy of a topic after it was created or deleted here. */
  #forget(topic: string): void {
    this.#policies.delete(topic);
    void this.#clients?.then(
      ({ admin, producer, reader }) => {
        admin.clearMetadata();
        producer.clearMetadata();
        reader.clearMetadata();
      },
      // Clients that failed to load have no metadata to drop; the failure surfaces on use.
      () => undefined,
    );
  }

  async #metadata(
    client: Admin | ClientConsumer,
    topic: string,
    forceUpdate = false,
  ): Promise<ClusterMetadata> {
    // The client retries "unknown topic" as if it might pass (it may, right after a create
    // elsewhere); for this log it is an answer. One attempt first, retries only for other errors.
    try {
      return await client.metadata({ topics: [topic], forceUpdate, retries: 0 });
    } catch (error) {
      if (isUnknownTopic(error)) throw topicNotFound(topic, error);
    }
    try {
      return await client.metadata({ topics: [topic], forceUpdate: true });
    } catch (error) {
      if (isUnknownTopic(error)) throw topicNotFound(topic, error);
      throw translateKafkaError(error, `Cannot look up topic '${topic}'`, { topic });
    }
  }

  async #partitionCount(topic: string, forceUpdate: boolean): Promise<number> {
    const { admin } = await this.#ready();
    const metadata = await this.#metadata(admin, topic, forceUpdate);
    const count = metadata.topics.get(topic)?.partitionsCount;
    if (count === undefined) throw topicNotFound(topic);
    return count;
  }

  async #cleanupPolicy(topic: string): Promise<CleanupPolicy> {
    const known = this.#policies.get(topic);
    if (known !== undefined) return known;
    return (await this.describeTopic(topic)).cleanupPolicy;
  }

  async #listOffset(topic: string, partition: number, timestamp: bigint): Promise<number> {
    const { reader } = await this.#ready();
    try {
      const listed = await reader.listOffsets({
        topics: [topic],
        partitions: { [topic]: [partition] },
        timestamp,
      });
      const offset = listed.get(topic)?.[partition];
      assert(offset !== undefined, `ListOffsets answered for partition ${partition} of '${topic}'`);
      return Number(offset);
    } catch (error) {
      if (isUnknownTopic(error)) throw topicNotFound(topic, error);
      throw translateKafkaError(error, `Cannot list offsets of topic '${topic}' partition ${partition}`, {
        topic,
        partition,
      });
    }
  }

  #serializedRead<T>(read: () => Promise<T>): Promise<T> {
    const result = this.#readQueue.then(read, read);
    this.#readQueue = result.catch(() => undefined);
    return result;
  }

  /**
   * Waits (bounded by topicPropagationTimeoutMs) until the cluster's metadata shows a topic
   * change made here, so the next call on this log sees it: Kafka applies creates and deletes
   * asynchronously.
   */
  async #awaitTopicMetadata(
    topic: string,
    done: (
      metadata: ClusterMetadata['topics'] extends Map<string, infer T> ? T | undefined : never,
    ) => boolean,
  ): Promise<void> {
    const { admin } = await this.#ready();
    const { clock, timers, topicPropagationTimeoutMs } = this.#options;
    const deadlineMs = clock.monotonicNow() + topicPropagationTimeoutMs;
    let lastError: unknown;
    for (;;) {
      try {
        const metadata = await admin.metadata({ topics: [topic], forceUpdate: true, retries: 0 });
        if (done(metadata.topics.get(topic))) return;
      } catch (error) {
        if (!isUnknownTopic(error)) lastError = error;
        else if (done(undefined)) return;
      }
      if (clock.monotonicNow() >= deadlineMs) {
        throw translateKafkaError(
          lastError ??
            new Error(
              `the cluster's metadata did not show the change within ${topicPropagationTimeoutMs} ms`,
            ),
          `Topic '${topic}' did not settle`,
          { topic },
        );
      }
      await new Promise<void>((resolve) => timers.setTimeout(resolve, propagationPollMs));
    }
  }

  /** Validates and places every record before anything is sent: a bad record appends nothing. */
  #prepare(
    topic: string,
    records: readonly ProducerRecord[],
    partitions: number,
    cleanupPolicy: CleanupPolicy,
  ): OutgoingRecord[] {
    const nowMs = Math.floor(this.#options.clock.now());
    const out: OutgoingRecord[] = [];
    for (let index = 0; index < records.length; index++) {
      const record = records[index]!;
      const at = `Cannot append to topic '${topic}' as records[${index}]`;
      if (typeof record !== 'object' || record === null)
        throw new ValidationError(`${at} is not a record object`);
      const value = record.value;
      if (value !== null && !(value instanceof Uint8Array)) {
        throw new ValidationError(
          `${at}.value must be a Uint8Array or null (use jsonValue() for JSON): current value is ${value === undefined ? 'undefined' : `a ${typeof value}`}`,
        );
      }
      let key: Uint8Array | null;
      try {
        key = keyBytes(record.key);
      } catch (error) {
        throw new ValidationError(`${at}.key is invalid`, { cause: error });
      }
      if (key === null && cleanupPolicy === 'compact') {
        throw new ValidationError(
          `${at} has no key, and the topic is compacted: compaction keeps the newest record per key`,
        );
      }
      let bytes = (key?.byteLength ?? 0) + (value?.byteLength ?? 0);
      let headers: Map<Buffer, Buffer> | undefined;
      if (record.headers !== undefined) {
        if (typeof record.headers !== 'object' || record.headers === null || Array.isArray(record.headers)) {
          throw new ValidationError(`${at}.headers must be an object of strings`);
        }
        for (const [name, text] of Object.entries(record.headers)) {
          if (typeof text !== 'string') {
            throw new ValidationError(
              `${at} header '${name}' must be a string: current value is a ${typeof text}`,
            );
          }
          const nameBytes = Buffer.from(name, 'utf8');
          const valueBytes = Buffer.from(text, 'utf8');
          headers ??= new Map();
          headers.set(nameBytes, valueBytes);
          bytes += nameBytes.byteLength + valueBytes.byteLength;
        }
      }
      const timestamp =
        record.timestamp === undefined
          ? nowMs
          : validateTimestamp(record.timestamp, `records[${index}].timestamp`);
      if (bytes > this.#options.maxRecordBytes) {
        throw new RecordTooLargeError(
          `${at} is ${bytes} bytes (key + value + headers), more than 'maxRecordBytes' ${this.#options.maxRecordBytes}`,
          { details: { topic, index, recordBytes: bytes, maxRecordBytes: this.#options.maxRecordBytes } },
        );
      }
      let partition: number;
      if (record.partition === undefined) {
        partition = this.#partitioner.partition(topic, partitions, key, bytes);
      } else {
        partition = checkInteger(`records[${index}].partition`, record.partition, 0, maxPartitions - 1);
        if (partition >= partitions) throw partitionNotFound(topic, partitions, partition);
      }
      out.push({
        index,
        partition,
        key: key === null ? undefined : toBuffer(key),
        value: value === null ? null : toBuffer(value),
        headers,
        timestamp,
        bytes,
      });
    }
    return out;
  }

  /**
   * Splits a batch into sends (rounds) so that each partition's share of one send is a Kafka
   * record batch the broker and client handle correctly. Most appends are one round. A new
   * round starts for a partition when
   * - its share would exceed maxRecordBytes (the topic's max.message.bytes allows one record of
   *   that size plus headers, not more), or
   * - a record's timestamp is 2^31 ms (24.8 days) or more away from the first timestamp of its
   *   batch: @platformatic/dynamic-buffer 0.3 encodes varlongs with a 32-bit zigzag shift and
   *   mask, so a larger timestampDelta would be stored wrong (seen: +14 ms on a 3-year delta).
   */
  *#rounds(records: readonly OutgoingRecord[]): Generator<OutgoingRecord[]> {
    const limit = this.#options.maxRecordBytes;
    const rounds: OutgoingRecord[][] = [];
    const placed = new Map<number, { round: number; bytes: number; firstTimestamp: number }>();
    for (const record of records) {
      let state = placed.get(record.partition);
      if (state === undefined) {
        state = { round: 0, bytes: 0, firstTimestamp: record.timestamp };
        placed.set(record.partition, state);
      } else if (
        state.bytes + record.bytes > limit ||
        Math.abs(record.timestamp - state.firstTimestamp) >= maxTimestampDeltaMs
      ) {
        state.round++;
        state.bytes = 0;
        state.firstTimestamp = record.timestamp;
      }
      state.bytes += record.bytes;
      const round = rounds[state.round] ?? [];
      round.push(record);
      rounds[state.round] = round;
    }
    yield* rounds;
  }
}

/** Creates a KafkaLog and checks that its brokers answer. */
export async function createKafkaLog(options: KafkaLogOptions): Promise<KafkaLog> {
  const log = new KafkaLog(options);
  try {
    await log.connect();
  } catch (error) {
    await log.close();
    throw error;
  }
  return log;
}
