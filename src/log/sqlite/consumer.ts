import { ClosedError, ValidationError } from '../../errors.ts';
import type { TimerHandle, Timers } from '../../time.ts';
import { partitionKey } from '../consumer-commits.ts';
import { OwnedPartitions } from '../consumer-partitions.ts';
import type { Consumer, LogRecord, OffsetCommit, PollOptions, TopicPartition } from '../types.ts';
import { type NormalizedConsumerOptions, normalizePollTimeoutMs } from '../validation.ts';

/** Start and end offsets of one partition, as a poll sees them. */
export interface PartitionRange {
  start: number;
  end: number;
}

/** What a consumer needs from its log; implemented by SqliteLog, kept off the public API. */
export interface ConsumerHost {
  readonly timers: Timers;
  /** The offsets of every partition of a topic (index = partition), or undefined when it does not exist. */
  partitionRanges(topic: string): readonly PartitionRange[] | undefined;
  /** The group's committed offsets of a topic, by partition (empty when none). */
  committedOffsetsOf(group: string, topic: string): Map<number, number>;
  /** Reads records of one partition from `from` into `out` (bounded per partition); returns how many it added. */
  readPartition(topic: string, partition: number, from: number, maxRecords: number, out: LogRecord[]): number;
  /** Commits in one transaction; `fence` runs inside it and may throw to abort the commit. */
  commitOffsets(group: string, commits: readonly OffsetCommit[], fence: () => void): Promise<void>;
  /** Removes the member from its group and rebalances the rest. */
  leave(consumer: SqliteConsumer): void;
}

/**
 * A member of an in-process consumer group of a SqliteLog. The log assigns it partitions (and
 * reassigns them when members join or leave); it keeps a position per owned partition, starting
 * from the group's committed offset or `autoOffsetReset`. Positions of revoked partitions are
 * dropped: their new owner starts from the committed offset, as in Kafka (at-least-once).
 */
export class SqliteConsumer implements Consumer {
  readonly group: string;
  readonly topics: readonly string[];
  /** Join order in the log; orders members for the range assignment. */
  readonly memberId: number;
  readonly #host: ConsumerHost;
  readonly #autoOffsetReset: 'earliest' | 'latest';
  readonly #maxPollRecords: number;
  readonly #partitions: OwnedPartitions;
  #closed = false;
  #polling = false;
  #wake: (() => void) | undefined;
  #rotation = 0;

  constructor(host: ConsumerHost, options: NormalizedConsumerOptions, memberId: number) {
    this.#host = host;
    this.group = options.group;
    this.topics = options.topics;
    this.#autoOffsetReset = options.autoOffsetReset;
    this.#maxPollRecords = options.maxPollRecords;
    this.memberId = memberId;
    this.#partitions = new OwnedPartitions(options.group, `consumer ${memberId}`, options.onAssignment);
  }

  get closed(): boolean {
    return this.#closed;
  }

  assignment(): readonly TopicPartition[] {
    return this.#partitions.assignment;
  }

  /** Called by the log on every rebalance: keeps positions of kept partitions, drops revoked ones. */
  assign(partitions: readonly TopicPartition[]): void {
    // A listener may close this member in the middle of a rebalance: it keeps owning nothing.
    if (this.#closed) return;
    this.#partitions.assign(partitions);
    // A waiting poll may now own partitions that already hold records.
    this.wake();
  }

  /** Wakes a waiting poll so it looks again (records committed, assignment changed, closing). */
  wake(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async poll(options?: PollOptions): Promise<LogRecord[]> {
    this.#assertOpen();
    const timeoutMs = normalizePollTimeoutMs(options);
    if (this.#polling) {
      throw new ValidationError(
        `Consumer ${this.memberId} of group '${this.group}' is already polling: a consumer polls one call at a time`,
      );
    }
    const signal = options?.signal;
    this.#polling = true;
    let timedOut = timeoutMs === 0;
    let timer: TimerHandle | undefined;
    const onAbort = () => this.wake();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        if (this.#closed || signal?.aborted) return [];
        const listenerError = this.#partitions.takeListenerError();
        if (listenerError !== undefined) throw listenerError;
        const records = this.#fetch();
        if (records.length > 0 || timedOut) return records;
        timer ??= this.#host.timers.setTimeout(() => {
          timedOut = true;
          this.wake();
        }, timeoutMs);
        // Registered in the same synchronous step as the fetch that found nothing, so a commit
        // cannot slip in between unnoticed: its afterCommit wake-up finds this resolver.
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
      }
    } finally {
      timer?.cancel();
      signal?.removeEventListener('abort', onAbort);
      this.#wake = undefined;
      this.#polling = false;
    }
  }

  seek(topic: string, partition: number, offset: number): void {
    this.#assertOpen();
    this.#partitions.seek(topic, partition, offset);
  }

  async commit(records?: readonly LogRecord[]): Promise<void> {
    this.#assertOpen();
    const commits = this.#partitions.commitsFor(records);
    if (commits.length === 0) return;
    // Checked inside the commit's transaction: a partition revoked by a rebalance since these
    // records were polled now belongs to another member, whose progress must not be overwritten.
    await this.#host.commitOffsets(this.group, commits, () => {
      this.#assertOpen();
      this.#partitions.assertOwns(commits);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // Revoked here first, then handed to the others: the old owner hears of it before a new one.
    this.closeByLog();
    this.#host.leave(this);
  }

  /** Marks the consumer closed without rebalancing (the log is closing, or it left already). */
  closeByLog(): void {
    this.#closed = true;
    this.#partitions.assign([]);
    this.wake();
  }

  /** Records from owned partitions with data, fairly: the first partition rotates on each poll. */
  #fetch(): LogRecord[] {
    const out: LogRecord[] = [];
    const { assignment, positions } = this.#partitions;
    const count = assignment.length;
    if (count === 0) return out;
    const first = this.#rotation++ % count;
    const ranges = new Map<string, readonly PartitionRange[] | undefined>();
    const committed = new Map<string, Map<number, number>>();
    let budget = this.#maxPollRecords;
    for (let i = 0; i < count && budget > 0; i++) {
      const { topic, partition } = assignment[(first + i) % count]!;
      if (!ranges.has(topic)) ranges.set(topic, this.#host.partitionRanges(topic));
      const range = ranges.get(topic)?.[partition];
      if (range === undefined) continue;
      const key = partitionKey(topic, partition);
      let position = positions.get(key);
      if (position === undefined) {
        let offsets = committed.get(topic);
        if (offsets === undefined) {
          offsets = this.#host.committedOffsetsOf(this.group, topic);
          committed.set(topic, offsets);
        }
        position = offsets.get(partition);
      }
      // No committed offset, or one retention has passed (or a seek beyond the end): reset as
      // Kafka does on OFFSET_OUT_OF_RANGE.
      if (position === undefined || position < range.start || position > range.end) {
        position = this.#autoOffsetReset === 'earliest' ? range.start : range.end;
      }
      if (position < range.end) {
        const added = this.#host.readPartition(topic, partition, position, budget, out);
        // Nothing at or after the position although the end lies beyond it: the records between
        // were compacted away, so the next record (if any) is at the end seen before the read.
        position = added > 0 ? out[out.length - 1]!.offset + 1 : range.end;
        budget -= added;
      }
      positions.set(key, position);
    }
    return out;
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError(`Consumer ${this.memberId} of group '${this.group}' is closed`);
  }
}
