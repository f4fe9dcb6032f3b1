import type { Consumer, LogRecord, ProducerRecord } from '../log/types.ts';
import type { StoreTransaction } from '../store/types.ts';

/**
 * The runtime's only way to change durable state. Every effect of a command, a saga step or a
 * consumed record goes through a `UnitScope`, so the same runtime code runs on both shapes:
 *
 * | effect                  | embedded (SQLite log + store, one file) | cluster (Kafka + PostgreSQL)            |
 * |-------------------------|-----------------------------------------|-----------------------------------------|
 * | state, journal, timers  | store tables, same transaction          | store tables, same transaction          |
 * | publish records         | log append, same transaction            | outbox row, same transaction; a relay   |
 * |                         |                                         | publishes it (idempotent producer)      |
 * | consume a record        | nothing to check: offsets are exact     | inbox row; a duplicate is skipped       |
 * | commit consumer offsets | log offset commit, same transaction     | Kafka commit after the transaction      |
 * | ownership fence         | owner epoch row checked per transaction | per-partition epoch checked per tx      |
 *
 * The cluster shape is a later issue; this interface is what it implements.
 */
export interface UnitScope {
  readonly tx: StoreTransaction;
  /** Appends records so that they exist if and only if this transaction commits. */
  publish(topic: string, records: readonly ProducerRecord[]): Promise<void>;
  /**
   * Claims `record` for the consumer `group` inside this transaction. False means its effects
   * were applied before (a redelivery): skip it. Rolled back with the scope.
   */
  consume(group: string, record: LogRecord): Promise<boolean>;
  /**
   * Commits the consumer's offsets past `records` (those handled or dead-lettered): inside this
   * transaction on the embedded shape (so the offsets and the effects are one commit, fenced by
   * the consumer's partition ownership); after it on the cluster shape, where the inbox dedupes.
   */
  commitConsumed(consumer: Consumer, records: readonly LogRecord[]): Promise<void>;
  /**
   * Makes this transaction depend on owning work partition `partition` (cluster shape: it
   * commits only while this node holds the partition's epoch; NotOwnedError at once when it does
   * not hold it). The embedded shape owns every partition: nothing to do. For writes that name
   * no entity or saga, such as a singleton's, fenced by partition 0.
   */
  fence(partition: number): void;
  /** Runs `fn` in a nested scope (a savepoint): if it throws, only its own changes roll back. */
  isolate<T>(fn: (scope: UnitScope) => Promise<T>): Promise<T>;
  /**
   * A hint that the units about to run read these entities: the cluster shape reads those its
   * cache does not hold in one statement per type, instead of one round trip per unit; the
   * embedded shape has nothing to gain (SQLite runs in process). Reads nothing it cannot use.
   */
  prefetch(reads: readonly EntityRead[]): Promise<void>;
}

/** An entity a unit will read: its type's name and id. */
export interface EntityRead {
  readonly entity: string;
  readonly id: string;
}

export interface CommitPath {
  readonly shape: 'embedded' | 'cluster';
  /**
   * Claims ownership before the runtime writes anything: a new fencing epoch, after which any
   * transaction of an earlier owner fails with a FencedError.
   */
  open(): Promise<void>;
  /**
   * Runs `fn` in one transaction, after checking the fence; commits when it resolves. With
   * `batched`, the path may defer writes to the end of the transaction (TransactionOptions
   * .batchWrites), so a write that fails its condition fails the whole transaction with a
   * BatchedWriteConflictError instead of the unit that made it.
   */
  transaction<T>(fn: (scope: UnitScope) => Promise<T>, options?: { batched?: boolean }): Promise<T>;
}
