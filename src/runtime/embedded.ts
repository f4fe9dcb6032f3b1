import { ValidationError } from '../errors.ts';
import type { Consumer, Log, LogRecord, ProducerRecord } from '../log/types.ts';
import { plantedBug } from '../planted-bugs.ts';
import type { Store, StoreTransaction } from '../store/types.ts';
import type { Clock } from '../time.ts';
import type { CommitPath, UnitScope } from './commit-path.ts';
import { FencedError } from './errors.ts';
import { PublishCheck } from './publishable.ts';

/**
 * The embedded shape's commit path: the SQLite log and store share one database file and one
 * write transaction, so a unit's state changes, journal entries, appended records and consumer
 * offsets commit together or not at all. A nested `store.transaction` is a savepoint, and the
 * log's append and offset commit join whatever transaction is open.
 *
 * Records a unit publishes are appended at the end of the transaction, one append per topic for
 * all its units (an append costs several journal inserts; most units publish one record). A
 * unit whose savepoint rolls back drops its records with it. What the final append could refuse
 * — a missing topic, a malformed or oversized record — is checked when the unit publishes, so it
 * fails that unit alone.
 *
 * Ownership: the whole database has one owner at a time. `open` bumps the version of an owner
 * row; every transaction first checks that the version is still ours, so a runtime that was
 * superseded (another process opened the same file) cannot write any more.
 */
export interface EmbeddedCommitPathOptions {
  store: Store;
  log: Log;
  clock: Clock;
  /**
   * The largest record (key + value + headers bytes) a unit may publish; must not exceed the
   * log's own `maxRecordBytes`. 1 to 67108864. @default 1048576
   */
  maxRecordBytes?: number;
}

/** The entity type and id of the owner row. Entity names cannot start with '$'. */
const ownerType = '$meridian.runtime';
const ownerId = 'owner';
/** Records one append call takes at most (the SQLite log accepts 10,000). */
const maxRecordsPerAppend = 5000;

type Outgoing = Array<readonly [topic: string, record: ProducerRecord]>;

export class EmbeddedCommitPath implements CommitPath {
  readonly shape = 'embedded' as const;
  readonly #store: Store;
  readonly #log: Log;
  readonly #clock: Clock;
  readonly #publishable: PublishCheck;
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
    this.#publishable = new PublishCheck(options.log, options.maxRecordBytes);
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
      // Planted bug (tests only, src/planted-bugs.ts): a superseded runtime goes on writing.
      const fenced = plantedBug !== 'unfenced-write' && (this.#epoch === 0 || owner?.version !== this.#epoch);
      if (fenced) {
        throw new FencedError(
          `This runtime's ownership (epoch ${this.#epoch}) was taken over (epoch ${owner?.version ?? 0}): another runtime opened the same database`,
          { details: { epoch: this.#epoch, currentEpoch: owner?.version ?? 0 } },
        );
      }
      const outgoing: Outgoing = [];
      const result = await fn(this.#scope(tx, outgoing));
      await this.#flush(outgoing);
      return result;
    });
  }

  #scope(tx: StoreTransaction, outgoing: Outgoing): UnitScope {
    return {
      tx,
      publish: async (topic: string, records: readonly ProducerRecord[]) => {
        await this.#publishable.check(topic, records);
        for (const record of records) outgoing.push([topic, record]);
      },
      // Offsets are committed in the same transaction as the effects, so a record past the
      // committed offset was never applied: there is nothing to deduplicate.
      consume: async (_group: string, _record: LogRecord) => true,
      // The SQLite consumer's commit joins the open write, and refuses partitions it lost.
      commitConsumed: async (consumer: Consumer, records: readonly LogRecord[]) => {
        if (records.length > 0) await consumer.commit(records);
      },
      // One owner holds the whole database: the transaction's own check fences every partition.
      fence: () => undefined,
      // SQLite runs in process: a read per unit costs no round trip.
      prefetch: async () => undefined,
      isolate: async <T>(fn: (scope: UnitScope) => Promise<T>) => {
        const own: Outgoing = [];
        const result = await this.#store.transaction((inner) => fn(this.#scope(inner, own)));
        // Reached only if the savepoint was released: a rolled-back unit's records are dropped.
        for (const entry of own) outgoing.push(entry);
        return result;
      },
    };
  }

  /** Appends the transaction's records, per topic in publishing order (so per key in order). */
  async #flush(outgoing: Outgoing): Promise<void> {
    if (outgoing.length === 0) return;
    const byTopic = new Map<string, ProducerRecord[]>();
    for (const [topic, record] of outgoing) {
      const records = byTopic.get(topic);
      if (records === undefined) byTopic.set(topic, [record]);
      else records.push(record);
    }
    for (const [topic, records] of byTopic) {
      for (let from = 0; from < records.length; from += maxRecordsPerAppend) {
        await this.#log.append(topic, records.slice(from, from + maxRecordsPerAppend));
      }
    }
  }
}
