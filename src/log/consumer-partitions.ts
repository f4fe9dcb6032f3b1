import { ConflictError, ValidationError } from '../errors.ts';
import { commitsFor, partitionKey } from './consumer-commits.ts';
import { AssignmentListenerError } from './errors.ts';
import type { AssignmentChange, LogRecord, OffsetCommit, TopicPartition } from './types.ts';
import { validateOffset } from './validation.ts';

/**
 * The partitions a consumer owns and its position in each: the bookkeeping every backend's
 * consumer shares (assignment, seek, what commit commits, the ownership fence on commits, and
 * telling the `onAssignment` listener about every change).
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
  readonly #listener: ((change: AssignmentChange) => void) | undefined;
  /** Changes not yet delivered: a change made while the listener runs waits for it to return. */
  readonly #changes: AssignmentChange[] = [];
  #delivering = false;
  /** The first listener failure not yet surfaced by a poll. */
  #listenerError: AssignmentListenerError | undefined;

  constructor(group: string, member: string, listener?: (change: AssignmentChange) => void) {
    this.#group = group;
    this.#member = member;
    this.#listener = listener;
  }

  /** The owned partitions, frozen, in the order last assigned. */
  get assignment(): readonly TopicPartition[] {
    return this.#assignment;
  }

  /** Whether the partition with this partitionKey is owned. */
  owns(key: string): boolean {
    return this.#owned.has(key);
  }

  /**
   * Takes a new assignment, in the order given: positions of kept partitions stay, revoked ones
   * go. When it differs from the last one the listener is told (after the change is in effect).
   */
  assign(partitions: readonly TopicPartition[]): void {
    const owned = new Set(partitions.map((tp) => partitionKey(tp.topic, tp.partition)));
    for (const key of this.positions.keys()) if (!owned.has(key)) this.positions.delete(key);
    const previous = this.#assignment;
    const before = this.#owned;
    this.#assignment = Object.freeze(partitions.map((tp) => Object.freeze({ ...tp })));
    this.#owned = owned;
    if (this.#listener === undefined) return;
    const revoked = previous.filter((tp) => !owned.has(partitionKey(tp.topic, tp.partition)));
    const assigned = this.#assignment.filter((tp) => !before.has(partitionKey(tp.topic, tp.partition)));
    if (revoked.length === 0 && assigned.length === 0) return;
    this.#changes.push(
      Object.freeze({
        assigned: Object.freeze(assigned),
        revoked: Object.freeze(revoked),
        assignment: this.#assignment,
      }),
    );
    this.#deliver();
  }

  /** The listener's first failure since the last call, cleared; the consumer's next poll throws it. */
  takeListenerError(): AssignmentListenerError | undefined {
    const error = this.#listenerError;
    this.#listenerError = undefined;
    return error;
  }

  /** Delivers queued changes in order; a nested call (from inside the listener) leaves them to the outer one. */
  #deliver(): void {
    const listener = this.#listener;
    if (this.#delivering || listener === undefined) return;
    this.#delivering = true;
    try {
      for (let change = this.#changes.shift(); change !== undefined; change = this.#changes.shift()) {
        try {
          const result: unknown = listener(change);
          if (typeof (result as PromiseLike<unknown> | undefined)?.then === 'function') {
            (result as PromiseLike<unknown>).then(undefined, (error: unknown) => this.#failed(error));
          }
        } catch (error) {
          this.#failed(error);
        }
      }
    } finally {
      this.#delivering = false;
    }
  }

  #failed(error: unknown): void {
    const text = error instanceof Error ? error.message : String(error);
    this.#listenerError ??= new AssignmentListenerError(
      `The onAssignment listener of ${this.#member} of group '${this.#group}' failed: ${text.length > 200 ? `${text.slice(0, 200)}…` : text}. The assignment change stands; fix the listener (it must not throw)`,
      { cause: error, details: { group: this.#group } },
    );
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
