import type { Consumer as ClientConsumer, fetchV17 } from '@platformatic/kafka';
import { assert } from '../../assert.ts';
import { ClosedError, ValidationError } from '../../errors.ts';
import type { TimerHandle } from '../../time.ts';
import { partitionKey } from '../consumer-commits.ts';
import { OwnedPartitions } from '../consumer-partitions.ts';
import type { Consumer, LogRecord, PollOptions, TopicPartition } from '../types.ts';
import { type NormalizedConsumerOptions, normalizePollTimeoutMs } from '../validation.ts';
import { hasBrokerError, translateKafkaError } from './kafka-errors.ts';
import type { NormalizedKafkaLogOptions } from './options.ts';
import { readBatches } from './records.ts';

type FetchResponse = fetchV17.FetchResponse;

/** What a consumer needs from its KafkaLog; kept off the public API. */
export interface KafkaConsumerHost {
  readonly options: NormalizedKafkaLogOptions;
  /** A new client for one group member (its own connections, heartbeats and fetch sessions). */
  createClient(group: string): Promise<ClientConsumer>;
  /** Forgets a closed consumer. */
  released(consumer: KafkaConsumer): void;
}

/** Fetched records of one partition not yet returned by poll, contiguous from the position. */
interface Buffered {
  records: LogRecord[];
  /** The next record to return. */
  index: number;
  /** The position once every buffered record is returned (may skip compacted offsets). */
  nextOffset: number;
}

interface Requested {
  topic: string;
  partition: number;
  offset: number;
}

/** The fetch response a failed fetch still carries (partitions that did not fail have records in it). */
function responseOf(error: unknown): FetchResponse | undefined {
  const queue: unknown[] = [error];
  for (let seen = 0; queue.length > 0 && seen < 50; seen++) {
    const current = queue.shift() as { response?: unknown; errors?: unknown } | null | undefined;
    if (typeof current !== 'object' || current === null) continue;
    const response = current.response as FetchResponse | undefined;
    if (typeof response === 'object' && response !== null && Array.isArray(response.responses))
      return response;
    if (Array.isArray(current.errors)) queue.push(...current.errors);
  }
  return undefined;
}

/**
 * A member of a Kafka consumer group. Membership (join, heartbeats, rebalances, leaving) is the
 * client's classic group protocol with the cooperative-sticky assignor (see docs/kafka.md,
 * "Consumer groups and failover"): a rebalance revokes only the partitions that move, in a
 * first round, and hands them to their new owner in a second. The client's assignment is
 * mirrored into this member's on every group event and poll round, and the `onAssignment`
 * listener hears each change. Fetching is this class's: it keeps a position per owned
 * partition, starting from the group's committed offset or `autoOffsetReset`, and long-polls
 * the partition leaders, so a waiting poll is woken by the broker as soon as a record arrives.
 * One fetch per leader is in flight at a time; records it brings beyond `maxPollRecords` wait
 * in a per-partition buffer for the next poll.
 */
export class KafkaConsumer implements Consumer {
  readonly group: string;
  readonly #host: KafkaConsumerHost;
  readonly #options: NormalizedConsumerOptions;
  #client: ClientConsumer | undefined;
  /** The current join attempt; undefined when none runs. */
  #joining: Promise<void> | undefined;
  #joined = false;
  /** A rejoin scheduled after the client left the group on an error (see #rejoinLater). */
  #rejoin: TimerHandle | undefined;
  /** The reason the last join or a background rejoin failed, surfaced by the next poll. */
  #groupError: unknown;
  readonly #partitions: OwnedPartitions;
  /** Bumped on every assignment: a fetch or offset lookup begun under an older one is stale. */
  #generation = 0;
  /** The next offset to read per owned partition: #partitions' map, which assign and seek keep. */
  readonly #positions: Map<string, number>;
  readonly #buffers = new Map<string, Buffered>();
  readonly #inflight = new Map<number, Promise<void>>();
  #fetchError: unknown;
  #closed = false;
  #closing: Promise<void> | undefined;
  #polling = false;
  #wake: (() => void) | undefined;
  #woken = false;
  #rotation = 0;

  constructor(host: KafkaConsumerHost, options: NormalizedConsumerOptions) {
    this.#host = host;
    this.#options = options;
    this.group = options.group;
    this.#partitions = new OwnedPartitions(options.group, 'this consumer', options.onAssignment);
    this.#positions = this.#partitions.positions;
    // Joining takes a few round trips and possibly a rebalance: start at once, so the member is
    // usually in the group by the first poll.
    this.#join();
  }

  assignment(): readonly TopicPartition[] {
    return this.#partitions.assignment;
  }

  async poll(options?: PollOptions): Promise<LogRecord[]> {
    this.#assertOpen();
    const timeoutMs = normalizePollTimeoutMs(options);
    if (this.#polling) {
      throw new ValidationError(
        `A consumer of group '${this.group}' is already polling: a consumer polls one call at a time`,
      );
    }
    const signal = options?.signal;
    const { timers, clock, fetchMaxWaitMs, retryDelayMs } = this.#host.options;
    const deadlineMs = clock.monotonicNow() + timeoutMs;
    this.#polling = true;
    const onAbort = () => this.#wakeUp();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for (let round = 0; ; round++) {
        if (this.#closed || signal?.aborted) return [];
        this.#throwPendingError();
        this.#woken = false;
        const remainingMs = timeoutMs === 0 ? 0 : deadlineMs - clock.monotonicNow();
        let waitMs = remainingMs;
        if (!this.#joined) {
          this.#join();
          if (remainingMs <= 0) return [];
        } else {
          // The client may also have dropped its partitions without an event (a heartbeat told it
          // the group no longer knows it): it rejoins on its own; this member stops fetching them now.
          this.#syncAssignment();
          await this.#resolvePositions();
          if (this.#closed) return [];
          const records = this.#drain();
          if (records.length > 0) return records;
          // With no time left, one round of fetches still runs: a record already in the log is
          // returned, a record not yet there is not waited for.
          if (remainingMs <= 0 && round > 0) return [];
          await this.#startFetches(Math.min(Math.max(0, remainingMs), fetchMaxWaitMs));
          if (remainingMs <= 0) {
            await Promise.all(this.#inflight.values());
            continue;
          }
          // Nothing in flight (no leader elected yet, positions still unknown): look again soon
          // rather than sleeping to the deadline.
          if (this.#inflight.size === 0) waitMs = Math.min(remainingMs, Math.max(retryDelayMs, 10));
        }
        if (this.#woken) continue;
        // Woken early by a fetch that completed, a join or rebalance, close or abort.
        await new Promise<void>((resolve) => {
          const timer: TimerHandle = timers.setTimeout(() => this.#wakeUp(), waitMs);
          this.#wake = () => {
            timer.cancel();
            resolve();
          };
          if (this.#closed || signal?.aborted) this.#wakeUp();
        });
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.#wake = undefined;
      this.#polling = false;
    }
  }

  seek(topic: string, partition: number, offset: number): void {
    this.#assertOpen();
    const key = this.#partitions.seek(topic, partition, offset);
    // A fetch in flight for the old position is dropped when it lands: its offset no longer matches.
    this.#buffers.delete(key);
  }

  async commit(records?: readonly LogRecord[]): Promise<void> {
    this.#assertOpen();
    const commits = this.#partitions.commitsFor(records);
    if (commits.length === 0) return;
    this.#partitions.assertOwns(commits);
    const client = this.#client;
    assert(client !== undefined, 'a consumer that owns partitions has a client');
    try {
      await client.commit({
        offsets: commits.map((commit) => ({
          topic: commit.topic,
          partition: commit.partition,
          offset: BigInt(commit.offset),
          leaderEpoch: -1,
        })),
      });
    } catch (error) {
      throw translateKafkaError(error, `Cannot commit offsets for group '${this.group}'`, {
        group: this.group,
      });
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Marks the consumer closed and leaves the group (the log is closing, or close() was called). */
  async #close(): Promise<void> {
    this.#closed = true;
    this.#rejoin?.cancel();
    this.#assign([]);
    this.#wakeUp();
    this.#host.released(this);
    // A client still being created is closed by #performJoin when it sees #closed.
    const client = this.#client;
    if (client === undefined) return;
    try {
      await client.close();
    } catch {
      // Leaving the group failed (its coordinator is unreachable): the broker removes this
      // member when its session times out. Close the connections anyway.
      await client.close(true).catch(() => undefined);
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError(`This consumer of group '${this.group}' is closed`);
  }

  #throwPendingError(): void {
    const listenerError = this.#partitions.takeListenerError();
    if (listenerError !== undefined) throw listenerError;
    const error = this.#groupError ?? this.#fetchError;
    if (error === undefined) return;
    this.#groupError = undefined;
    this.#fetchError = undefined;
    throw translateKafkaError(error, `Consumer of group '${this.group}' failed`, {
      group: this.group,
      topics: this.#options.topics,
    });
  }

  /** Wakes a waiting poll; when none waits, the next wait is skipped so the event is not lost. */
  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    if (wake === undefined) this.#woken = true;
    else wake();
  }

  /** Starts joining the group unless a join runs already. */
  #join(): void {
    if (this.#joining !== undefined || this.#closed) return;
    this.#joining = this.#performJoin()
      .catch((error: unknown) => {
        if (!this.#closed) this.#groupError = error;
      })
      .finally(() => {
        this.#joining = undefined;
        this.#wakeUp();
        if (!this.#joined) this.#rejoinLater();
      });
  }

  async #performJoin(): Promise<void> {
    if (this.#client === undefined) {
      const client = await this.#host.createClient(this.group);
      if (this.#closed) {
        await client.close().catch(() => undefined);
        return;
      }
      this.#client = client;
      // The client changes its assignment in place and then emits one of these: 'join' when a
      // (re)join completes, 'rebalance' when a cooperative round revoked partitions (emitted
      // before it rejoins, so they are revoked here before the group can give them to another
      // member), 'leave' when it left the group.
      const sync = () => this.#syncAssignment();
      client.on('consumer:group:join', sync);
      client.on('consumer:group:rebalance', sync);
      client.on('consumer:group:leave', sync);
      // A background rejoin that failed for good: the member is out of the group until the next
      // poll joins again. (An 'error' event without a listener would crash the process.)
      client.on('error', (error: unknown) => {
        this.#joined = false;
        this.#assign([]);
        if (!this.#closed) this.#groupError = error;
        this.#wakeUp();
        this.#rejoinLater();
      });
      client.topics.trackAll(...this.#options.topics);
    }
    await this.#client.joinGroup({});
    if (!this.#closed) this.#joined = true;
  }

  /**
   * Joins again after the retry delay: a member that polls rarely, or never (one kept only for
   * its assignment, such as a partitioned stream job's), must not stay out of the group until
   * its next poll. A poll in between joins at once (and reports the error).
   */
  #rejoinLater(): void {
    if (this.#closed || this.#rejoin !== undefined) return;
    this.#rejoin = this.#host.options.timers.setTimeout(
      () => {
        this.#rejoin = undefined;
        if (!this.#joined) this.#join();
      },
      Math.max(this.#host.options.retryDelayMs, 10),
    );
  }

  /** Takes the client's assignment when it differs from this member's. */
  #syncAssignment(): void {
    const client = this.#client;
    if (client === undefined || this.#closed) return;
    const current: TopicPartition[] = [];
    for (const { topic, partitions } of client.assignments ?? []) {
      for (const partition of partitions) current.push({ topic, partition });
    }
    const owned = this.#partitions.assignment;
    const same =
      current.length === owned.length &&
      current.every((tp) => this.#partitions.owns(partitionKey(tp.topic, tp.partition)));
    if (!same) this.#assign(current);
  }

  /** Takes a new assignment: positions and buffers of kept partitions stay, revoked ones go. */
  #assign(partitions: readonly TopicPartition[]): void {
    const sorted = [...partitions].sort((a, b) =>
      a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1,
    );
    this.#partitions.assign(sorted);
    for (const key of this.#buffers.keys()) if (!this.#partitions.owns(key)) this.#buffers.delete(key);
    this.#generation++;
    this.#wakeUp();
  }

  /**
   * Gives every owned partition without a position one: the group's committed offset, or the
   * start or end of the partition (autoOffsetReset) when the group has none.
   */
  async #resolvePositions(): Promise<void> {
    const missing = this.#partitions.assignment.filter(
      (tp) => !this.#positions.has(partitionKey(tp.topic, tp.partition)),
    );
    if (missing.length === 0) return;
    const client = this.#client;
    assert(client !== undefined, 'a consumer that owns partitions has a client');
    const generation = this.#generation;
    const byTopic = new Map<string, number[]>();
    for (const { topic, partition } of missing) {
      const list = byTopic.get(topic) ?? [];
      list.push(partition);
      byTopic.set(topic, list);
    }
    let committed: Map<string, bigint[]>;
    try {
      committed = await client.listCommittedOffsets({
        topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })),
      });
    } catch (error) {
      throw translateKafkaError(error, `Cannot read the committed offsets of group '${this.group}'`);
    }
    const unset: TopicPartition[] = [];
    const found = new Map<string, number>();
    for (const { topic, partition } of missing) {
      const offset = committed.get(topic)?.[partition];
      if (offset === undefined || offset < 0n) unset.push({ topic, partition });
      else found.set(partitionKey(topic, partition), Number(offset));
    }
    if (unset.length > 0) {
      for (const [key, offset] of await this.#resetOffsets(unset)) found.set(key, offset);
    }
    if (generation !== this.#generation) return;
    for (const [key, offset] of found) {
      if (this.#partitions.owns(key) && !this.#positions.has(key)) this.#positions.set(key, offset);
    }
  }

  /** The start or end offsets (per autoOffsetReset) of the given partitions. */
  async #resetOffsets(partitions: readonly TopicPartition[]): Promise<Map<string, number>> {
    const client = this.#client;
    assert(client !== undefined, 'a consumer that owns partitions has a client');
    const byTopic: Record<string, number[]> = {};
    for (const { topic, partition } of partitions) {
      const list = byTopic[topic] ?? [];
      list.push(partition);
      byTopic[topic] = list;
    }
    let listed: Map<string, bigint[]>;
    try {
      listed = await client.listOffsets({
        topics: Object.keys(byTopic),
        partitions: byTopic,
        timestamp: this.#options.autoOffsetReset === 'earliest' ? -2n : -1n,
      });
    } catch (error) {
      throw translateKafkaError(error, `Cannot find where group '${this.group}' starts reading`);
    }
    const out = new Map<string, number>();
    for (const { topic, partition } of partitions) {
      const offset = listed.get(topic)?.[partition];
      if (offset !== undefined && offset >= 0n) out.set(partitionKey(topic, partition), Number(offset));
    }
    return out;
  }

  /** Up to maxPollRecords buffered records, fairly: the first partition rotates on each poll. */
  #drain(): LogRecord[] {
    const out: LogRecord[] = [];
    const assignment = this.#partitions.assignment;
    const count = assignment.length;
    if (count === 0) return out;
    const first = this.#rotation++ % count;
    for (let i = 0; i < count && out.length < this.#options.maxPollRecords; i++) {
      const { topic, partition } = assignment[(first + i) % count]!;
      const key = partitionKey(topic, partition);
      const buffered = this.#buffers.get(key);
      if (buffered === undefined) continue;
      const take = Math.min(
        this.#options.maxPollRecords - out.length,
        buffered.records.length - buffered.index,
      );
      for (let j = 0; j < take; j++) out.push(buffered.records[buffered.index + j]!);
      buffered.index += take;
      if (buffered.index === buffered.records.length) {
        this.#buffers.delete(key);
        this.#positions.set(key, buffered.nextOffset);
      } else {
        this.#positions.set(key, buffered.records[buffered.index]!.offset);
      }
    }
    return out;
  }

  /**
   * Starts one fetch per leader broker that has no fetch in flight, for the owned partitions
   * with a position and nothing buffered. The broker answers as soon as a record arrives, or
   * after `maxWaitMs` with nothing.
   */
  async #startFetches(maxWaitMs: number): Promise<void> {
    const client = this.#client;
    if (client === undefined) return;
    const wanted = this.#partitions.assignment.filter((tp) => {
      const key = partitionKey(tp.topic, tp.partition);
      return this.#positions.has(key) && !this.#buffers.has(key);
    });
    if (wanted.length === 0) return;
    let metadata: Awaited<ReturnType<ClientConsumer['metadata']>>;
    try {
      metadata = await client.metadata({ topics: [...new Set(wanted.map((tp) => tp.topic))] });
    } catch (error) {
      throw translateKafkaError(
        error,
        `Consumer of group '${this.group}' cannot find its partitions' leaders`,
      );
    }
    const byNode = new Map<number, Requested[]>();
    for (const { topic, partition } of wanted) {
      const leader = metadata.topics.get(topic)?.partitions[partition]?.leader;
      const offset = this.#positions.get(partitionKey(topic, partition));
      // No leader right now (an election is running): try again on the next round.
      if (leader === undefined || leader < 0 || offset === undefined || this.#inflight.has(leader)) continue;
      const list = byNode.get(leader) ?? [];
      list.push({ topic, partition, offset });
      byNode.set(leader, list);
    }
    for (const [node, requested] of byNode) {
      const topicIds = new Map<string, string>();
      for (const { topic } of requested) {
        const id = metadata.topics.get(topic)?.id;
        if (id !== undefined) topicIds.set(topic, id);
      }
      const fetching = this.#fetch(client, node, requested, topicIds, maxWaitMs).finally(() => {
        this.#inflight.delete(node);
        this.#wakeUp();
      });
      this.#inflight.set(node, fetching);
    }
  }

  async #fetch(
    client: ClientConsumer,
    node: number,
    requested: readonly Requested[],
    topicIds: ReadonlyMap<string, string>,
    maxWaitMs: number,
  ): Promise<void> {
    const generation = this.#generation;
    const partitionMaxBytes = this.#host.options.fetchMaxPartitionBytes;
    const topics = new Map<string, fetchV17.FetchRequestPartition[]>();
    for (const { topic, partition, offset } of requested) {
      const id = topicIds.get(topic);
      if (id === undefined) continue;
      const list = topics.get(id) ?? [];
      list.push({
        partition,
        fetchOffset: BigInt(offset),
        partitionMaxBytes,
        currentLeaderEpoch: -1,
        lastFetchedEpoch: -1,
      });
      topics.set(id, list);
    }
    if (topics.size === 0) return;
    let response: FetchResponse | undefined;
    try {
      response = await client.fetch({
        node,
        maxWaitTime: maxWaitMs,
        minBytes: 1,
        maxBytes: partitionMaxBytes * requested.length,
        topics: [...topics].map(([topicId, partitions]) => ({ topicId, partitions })),
      });
    } catch (error) {
      if (this.#closed) return;
      // Partitions that did not fail still brought records; the failed ones are handled below.
      response = responseOf(error);
      if (hasBrokerError(error, 'OFFSET_OUT_OF_RANGE')) {
        await this.#resetOutOfRange(response, requested, topicIds, generation);
      } else if (response === undefined) {
        // Leader moved, broker restarting, connection lost: the client retried already. Refresh
        // the metadata so the next round asks the new leader; give up only on errors that cannot pass.
        client.clearMetadata();
        if (translateKafkaError(error, '').code !== 'RETRYABLE') this.#fetchError = error;
        return;
      } else {
        client.clearMetadata();
      }
    }
    if (response === undefined || generation !== this.#generation || this.#closed) return;
    const byId = new Map<string, string>();
    for (const [topic, id] of topicIds) byId.set(id, topic);
    for (const topicResponse of response.responses) {
      const topic = byId.get(topicResponse.topicId);
      if (topic === undefined) continue;
      for (const partitionResponse of topicResponse.partitions) {
        if (partitionResponse.errorCode !== 0) continue;
        const key = partitionKey(topic, partitionResponse.partitionIndex);
        const asked = requested.find(
          (r) => r.topic === topic && r.partition === partitionResponse.partitionIndex,
        );
        // Stale: the partition was revoked, seeked, or not part of this request (an incremental
        // fetch session may return partitions it still holds).
        if (asked === undefined || this.#positions.get(key) !== asked.offset || this.#buffers.has(key))
          continue;
        const records: LogRecord[] = [];
        const read = readBatches(
          topic,
          asked.partition,
          partitionResponse.records,
          asked.offset,
          Number.MAX_SAFE_INTEGER,
          Number.MAX_SAFE_INTEGER,
          records,
        );
        if (records.length > 0) {
          this.#buffers.set(key, { records, index: 0, nextOffset: read.nextOffset });
        } else if (read.nextOffset > asked.offset) {
          // Only transaction markers or compacted-away offsets: step over them.
          this.#positions.set(key, read.nextOffset);
        }
      }
    }
  }

  /** Kafka's auto.offset.reset: a position outside the log (retention passed it) restarts per policy. */
  async #resetOutOfRange(
    response: FetchResponse | undefined,
    requested: readonly Requested[],
    topicIds: ReadonlyMap<string, string>,
    generation: number,
  ): Promise<void> {
    const outOfRange: TopicPartition[] = [];
    if (response === undefined) {
      outOfRange.push(...requested);
    } else {
      const byId = new Map<string, string>();
      for (const [topic, id] of topicIds) byId.set(id, topic);
      for (const topicResponse of response.responses) {
        const topic = byId.get(topicResponse.topicId);
        if (topic === undefined) continue;
        for (const { partitionIndex, errorCode } of topicResponse.partitions) {
          // 1 is OFFSET_OUT_OF_RANGE in Kafka's protocol.
          if (errorCode === 1) outOfRange.push({ topic, partition: partitionIndex });
        }
      }
    }
    if (outOfRange.length === 0) return;
    let reset: Map<string, number>;
    try {
      reset = await this.#resetOffsets(outOfRange);
    } catch (error) {
      this.#fetchError = error;
      return;
    }
    if (generation !== this.#generation) return;
    for (const { topic, partition } of outOfRange) {
      const key = partitionKey(topic, partition);
      const asked = requested.find((r) => r.topic === topic && r.partition === partition);
      const offset = reset.get(key);
      if (offset !== undefined && asked !== undefined && this.#positions.get(key) === asked.offset) {
        this.#positions.set(key, offset);
      }
    }
  }
}
