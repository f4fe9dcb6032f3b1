import { ValidationError } from '../errors.ts';
import type { Consumer, Log, LogRecord, ProducerRecord } from '../log/types.ts';
import type { Store, StoreTransaction } from '../store/types.ts';
import type { Clock } from '../time.ts';
import type { CommitPath, UnitScope } from './commit-path.ts';
import { FencedError } from './errors.ts';

/**
 * The embedded shape's commit path: the SQLite log and store share one database file and one
 * write transaction, so a unit's state changes, journal entries, appended records and consumer
 * offsets commit together or not at all. A nested `store.transaction` is a savepoint, and the
 * log's append and offset commit join whatever transaction is open.
 *
 * Ownership: the whole database has one owner at a time. `open` bumps the version of an owner
 * row; every transaction first checks that the version is still ours, so a runtime that was
 * superseded (another process opened the same file) cannot write any more.
 */
export interface EmbeddedCommitPathOptions {
  store: Store;
  log: Log;
  clock: Clock;
}

/** The entity type and id of the owner row. Entity names cannot start with '$'. */
const ownerType = '$meridian.runtime';
const ownerId = 'owner';

export class EmbeddedCommitPath implements CommitPath {
  readonly shape = 'embedded' as const;
  readonly #store: Store;
  readonly #log: Log;
  readonly #clock: Clock;
  #epoch = 0;

  constructor(options: EmbeddedCommitPathOptions) {
    if (options.store.dialect !== 'sqlite' || options.log.backend !== 'sqlite') {
      throw new ValidationError(
        `The embedded commit path needs the SQLite store and the SQLite log on one database: current values are store '${options.store.dialect}', log '${options.log.backend}'`,
      );
    }
    this.#store = options.store;
    this.#log = options.log;
    this.#clock = options.clock;
  }

  /** This runtime's fencing epoch (0 before `open`). */
  get epoch(): number {
    return this.#epoch;
  }

  async open(): Promise<void> {
    this.#epoch = await this.#store.transaction(async (tx) => {
      const current = await tx.entities.get(ownerType, ownerId);
      return tx.entities.put(ownerType, ownerId, { claimedAt: this.#clock.now() }, current?.version ?? 0);
    });
  }

  transaction<T>(fn: (scope: UnitScope) => Promise<T>): Promise<T> {
    return this.#store.transaction(async (tx) => {
      const owner = await tx.entities.get(ownerType, ownerId);
      if (this.#epoch === 0 || owner?.version !== this.#epoch) {
        throw new FencedError(
          `This runtime's ownership (epoch ${this.#epoch}) was taken over (epoch ${owner?.version ?? 0}): another runtime opened the same database`,
          { details: { epoch: this.#epoch, currentEpoch: owner?.version ?? 0 } },
        );
      }
      return fn(this.#scope(tx));
    });
  }

  #scope(tx: StoreTransaction): UnitScope {
    return {
      tx,
      publish: async (topic: string, records: readonly ProducerRecord[]) => {
        if (records.length > 0) await this.#log.append(topic, records);
      },
      // Offsets are committed in the same transaction as the effects, so a record past the
      // committed offset was never applied: there is nothing to deduplicate.
      consume: async (_group: string, _record: LogRecord) => true,
      // The SQLite consumer's commit joins the open write, and refuses partitions it lost.
      commitConsumed: async (consumer: Consumer, records: readonly LogRecord[]) => {
        if (records.length > 0) await consumer.commit(records);
      },
      isolate: <T>(fn: (scope: UnitScope) => Promise<T>) =>
        this.#store.transaction((inner) => fn(this.#scope(inner))),
    };
  }
}
