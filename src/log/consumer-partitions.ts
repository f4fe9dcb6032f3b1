import { ConflictError, ValidationError } from '../errors.ts';
import { commitsFor, partitionKey } from './consumer-commits.ts';
import type { LogRecord, OffsetCommit, TopicPartition } from './types.ts';
import { validateOffset } from './validation.ts';

/**
 * The partitions a consumer owns and its position in each: the bookkeeping every backend's
 * consumer shares (assignment, seek, what commit commits, the ownership fence on commits).
 * Membership, fetching, the poll loop and closing stay with the backend, whose lifecycles differ.
 */
export class OwnedPartitions {
  /**
   * The next offset to read of owned partitions, by partitionKey. A partition has none until the
   * backend resolves it (committed offset or autoOffsetReset); revoked partitions lose theirs.
   */
  readonly positions = new Map<string, number>();
  readonly #group: string;
  /** How error messages name the member ('consumer 3', 'this consumer'). */
  readonly #member: string;
  #assignment: readonly TopicPartition[] = [];
  #owned = new Set<string>();

  constructor(group: string, member: string) {
    this.#group = group;
    this.#member = member;
  }

  /** The owned partitions, frozen, in the order last assigned. */
  get assignment(): readonly TopicPartition[] {
    return this.#assignment;
  }

  /** Whether the partition with this partitionKey is owned. */
  owns(key: string): boolean {
    return this.#owned.has(key);
  }

  /** Takes a new assignment, in the order given: positions of kept partitions stay, revoked ones go. */
  assign(partitions: readonly TopicPartition[]): void {
    const owned = new Set(partitions.map((tp) => partitionKey(tp.topic, tp.partition)));
    for (const key of this.positions.keys()) if (!owned.has(key)) this.positions.delete(key);
    this.#assignment = Object.freeze(partitions.map((tp) => Object.freeze({ ...tp })));
    this.#owned = owned;
  }

  /**
   * Moves the position of an owned partition and returns its partitionKey. ValidationError for
   * a bad offset or a partition the member does not own.
   */
  seek(topic: string, partition: number, offset: number): string {
    validateOffset(offset);
    const key = partitionKey(topic, partition);
    if (!this.#owned.has(key)) {
      throw new ValidationError(
        `Cannot seek topic '${topic}' partition ${partition}: ${this.#member} of group '${this.#group}' does not own it (it owns ${this.#describe()})`,
      );
    }
    this.positions.set(key, offset);
    return key;
  }

  /** What `commit(records?)` commits: see commitsFor. */
  commitsFor(records: readonly LogRecord[] | undefined): OffsetCommit[] {
    return commitsFor(this.#assignment, this.positions, records);
  }

  /**
   * ConflictError unless every commit is for an owned partition: one a rebalance moved away
   * belongs to another member now, whose progress must not be overwritten.
   */
  assertOwns(commits: readonly OffsetCommit[]): void {
    for (const commit of commits) {
      if (!this.#owned.has(partitionKey(commit.topic, commit.partition))) {
        throw new ConflictError(
          `Cannot commit topic '${commit.topic}' partition ${commit.partition} for group '${this.#group}': ${this.#member} no longer owns it (a rebalance moved it)`,
          { details: { group: this.#group, topic: commit.topic, partition: commit.partition } },
        );
      }
    }
  }

  #describe(): string {
    if (this.#assignment.length === 0) return 'no partitions';
    return this.#assignment.map((tp) => `${tp.topic}/${tp.partition}`).join(', ');
  }
}
