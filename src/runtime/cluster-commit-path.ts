import { EntityCache, EntityOverlay } from '../cluster/entity-cache.ts';
import { type CachedEntities, fencedTransaction, prefetchEntities } from '../cluster/fenced-transaction.ts';
import type { Ownership } from '../cluster/ownership.ts';
import { messageIdOf } from '../cluster/relay.ts';
import { isMeridianError, ValidationError } from '../errors.ts';
import type { Consumer, Log, LogRecord, ProducerRecord } from '../log/types.ts';
import { integerOption } from '../resilience/options.ts';
import { storeLimits } from '../store/limits.ts';
import type { NewOutboxMessage, Store, StoreTransaction } from '../store/types.ts';
import type { Clock } from '../time.ts';
import type { CommitPath, EntityRead, UnitScope } from './commit-path.ts';
import { headers } from './entity-command.ts';
import { FencedError } from './errors.ts';
import { PublishCheck } from './publishable.ts';

export interface ClusterCommitPathOptions {
  /** The PostgreSQL store every node shares. */
  store: Store;
  /** The Kafka log. */
  log: Log;
  ownership: Ownership;
  clock: Clock;
  /** The largest record (key + value + headers bytes) a unit may publish. 1 to 67108864. @default 1048576 */
  maxRecordBytes?: number;
  /** Told after a commit that wrote outbox rows, with their work partitions (wakes the relay). */
  onOutbox?: (partitions: ReadonlySet<number>) => void;
  /**
   * Entities of owned partitions whose last committed state this node keeps in memory, so a
   * command reads none of them from PostgreSQL (see EntityCache). 0 keeps none. @default 10000
   */
  entityCacheSize?: number;
}

type Outgoing = NewOutboxMessage[];

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface TransactionState {
  readonly written: Set<number>;
  readonly outgoing: Outgoing;
  readonly afterCommit: Array<() => Promise<void>>;
  /** Entities read and written, for the entity cache (batched transactions only). */
  readonly overlay: EntityOverlay | undefined;
}

/** A transaction's state; `overlay` when it uses the entity cache (a nested scope's sees its parent's). */
function newState(overlay: EntityOverlay | undefined): TransactionState {
  return { written: new Set(), outgoing: [], afterCommit: [], overlay };
}

/** Rows one outbox insert takes at most (the store's batch limit). */
const maxRowsPerAdd = 1000;

/**
 * Reads `reads` the cache does not hold into the transaction's overlay, one statement per type
 * and thousand ids. A type or id the store refuses is left to the unit that names it, which then
 * fails alone (the refusal comes before any statement, so the transaction is intact).
 */
async function readAhead(
  tx: StoreTransaction,
  ownership: Ownership,
  cached: CachedEntities,
  reads: readonly EntityRead[],
): Promise<void> {
  const byType = Map.groupBy(reads, (read) => read.entity);
  for (const [type, typed] of byType) {
    const ids = [...new Set(typed.map((read) => read.id))];
    for (let from = 0; from < ids.length; from += storeLimits.maxPageSize) {
      try {
        await prefetchEntities(
          tx.entities,
          ownership,
          cached,
          type,
          ids.slice(from, from + storeLimits.maxPageSize),
        );
      } catch (error) {
        if (!(error instanceof ValidationError)) throw error;
      }
    }
  }
}

/**
 * The cluster shape's commit path: one PostgreSQL transaction per group commit holds the units'
 * state, journal entries and timers, the records they publish (as outbox rows, which a relay
 * sends to Kafka), and the inbox rows of the records they consumed. Kafka offsets are committed
 * after the transaction: a record redelivered before that commit finds its inbox row and is
 * skipped.
 *
 * Fencing: every write names a work partition (the partition of the entity or saga id it is
 * for). Just before COMMIT the transaction checks in PostgreSQL, FOR SHARE, that those
 * partitions' epochs are the ones this node claimed; a difference aborts it there, and is a
 * FencedError: nothing commits. So a node that lost a partition — however late it finds out —
 * never writes for it again.
 */
export class ClusterCommitPath implements CommitPath {
  readonly shape = 'cluster' as const;
  readonly #store: Store;
  readonly #ownership: Ownership;
  readonly #clock: Clock;
  readonly #publishable: PublishCheck;
  readonly #onOutbox: ((partitions: ReadonlySet<number>) => void) | undefined;
  readonly #entities: EntityCache | undefined;

  constructor(options: ClusterCommitPathOptions) {
    if (options.store.dialect !== 'postgres') {
      throw new ValidationError(
        `The cluster commit path needs the PostgreSQL store: current value is store '${options.store.dialect}'`,
      );
    }
    this.#store = options.store;
    this.#ownership = options.ownership;
    this.#clock = options.clock;
    this.#publishable = new PublishCheck(options.log, options.maxRecordBytes);
    this.#onOutbox = options.onOutbox;
    const cacheSize = integerOption('entityCacheSize', options.entityCacheSize, 10_000, 0, 10_000_000);
    this.#entities = cacheSize === 0 ? undefined : new EntityCache(cacheSize);
  }

  /** Ownership is claimed per partition as the group assigns them, not at open. */
  async open(): Promise<void> {}

  async transaction<T>(
    fn: (scope: UnitScope) => Promise<T>,
    options: { batched?: boolean } = {},
  ): Promise<T> {
    const batched = options.batched === true;
    // The cache serves batched transactions only: their unbatched retry reads the store.
    const state = newState(batched && this.#entities !== undefined ? new EntityOverlay() : undefined);
    let result: T;
    let fencing: Promise<void> | undefined;
    try {
      result = await this.#store.transaction(
        async (tx) => {
          const value = await fn(this.#scope(tx, state));
          await this.#addOutbox(tx, state.outgoing);
          fencing = this.#fence(tx, state.written);
          fencing.catch(() => undefined);
          return value;
        },
        { batchWrites: batched },
      );
    } catch (error) {
      // Whatever it wrote may or may not have committed (a lost COMMIT): forget everything.
      this.#entities?.clear();
      const fenced = await fencing?.then(
        () => undefined,
        (failure: unknown) => failure,
      );
      if (isMeridianError(fenced) && fenced.code === 'FENCED')
        throw await this.#fencedError(state.written, fenced);
      throw error;
    }
    if (state.overlay !== undefined) {
      this.#entities?.apply(state.overlay, (partition) => this.#ownership.epochOf(partition));
    }
    if (state.outgoing.length > 0) {
      this.#onOutbox?.(new Set(state.outgoing.map((message) => message.partition ?? 0)));
    }
    for (const action of state.afterCommit) await action();
    return result;
  }

  /**
   * The fence: the epochs of the partitions `written` must still be the ones this node claimed.
   * One not held any more fails the unit at once. Otherwise the check is issued and not awaited:
   * it travels with the transaction's deferred writes, and PostgreSQL aborts the transaction
   * itself when an epoch moved (its FOR SHARE locks make a concurrent claim wait), so COMMIT can
   * only roll back after it. That saves a round trip per transaction.
   */
  #fence(tx: StoreTransaction, written: ReadonlySet<number>): Promise<void> {
    const held = new Map<number, number>();
    for (const partition of written) {
      const epoch = this.#ownership.epochOf(partition);
      if (epoch === undefined) {
        throw new FencedError(
          `Node '${this.#ownership.node}' no longer owns work partition ${partition}: nothing of this transaction was written`,
          { details: { node: this.#ownership.node, partitions: [partition] } },
        );
      }
      held.set(partition, epoch);
    }
    return tx.partitions.requireEpochs(held);
  }

  /** The FencedError of a transaction the fence refused, naming the epochs held and stored now. */
  async #fencedError(written: ReadonlySet<number>, cause: unknown): Promise<FencedError> {
    const list = [...written];
    const stored = await this.#store
      .read(
        async (tx) => new Map((await tx.partitions.list()).map((claim) => [claim.partition, claim.epoch])),
      )
      .catch(() => new Map<number, number>());
    const stale = list
      .map((partition) => ({
        partition,
        held: this.#ownership.epochOf(partition) ?? 0,
        current: stored.get(partition) ?? 0,
      }))
      .filter((entry) => entry.held !== entry.current);
    const first = stale[0];
    return new FencedError(
      `Node '${this.#ownership.node}' no longer owns work partition(s) ${
        stale
          .map((entry) => entry.partition)
          .slice(0, 10)
          .join(', ') || list.slice(0, 10).join(', ')
      }: another node claimed them${first === undefined ? '' : ` (epoch ${first.held} held, ${first.current} stored)`}; nothing of this transaction was written`,
      {
        cause,
        details: { node: this.#ownership.node, partitions: list.slice(0, 10), stale: stale.slice(0, 10) },
      },
    );
  }

  async #addOutbox(tx: StoreTransaction, outgoing: Outgoing): Promise<void> {
    for (let from = 0; from < outgoing.length; from += maxRowsPerAdd) {
      await tx.outbox.add(outgoing.slice(from, from + maxRowsPerAdd));
    }
  }

  #scope(raw: StoreTransaction, state: TransactionState): UnitScope {
    const cached =
      state.overlay === undefined || this.#entities === undefined
        ? undefined
        : { cache: this.#entities, overlay: state.overlay, clock: this.#clock };
    const tx = fencedTransaction(raw, this.#ownership, state.written, cached);
    return {
      tx,
      publish: async (topic: string, records: readonly ProducerRecord[]) => {
        await this.#publishable.check(topic, records);
        for (const record of records) state.outgoing.push(this.#toOutbox(topic, record, state.written));
      },
      consume: (group: string, record: LogRecord) =>
        raw.inbox.markApplied(group, messageIdOf(record), this.#clock.now()),
      commitConsumed: async (consumer: Consumer, records: readonly LogRecord[]) => {
        if (records.length === 0) return;
        // After the commit, and not awaited: a record redelivered before the offset moves is
        // skipped by its inbox row, so the group commit (and every unit in it) need not wait a
        // Kafka round trip for the offsets.
        state.afterCommit.push(async () => {
          consumer.commit(records).catch(() => undefined);
        });
      },
      fence: (partition: number) => {
        this.#ownership.requireOwned(partition, `partition ${partition}`);
        state.written.add(partition);
      },
      // Only with the cache: the reads land in the transaction's overlay, where the units find them.
      prefetch: (reads) =>
        cached === undefined ? Promise.resolve() : readAhead(raw, this.#ownership, cached, reads),
      isolate: async <T>(fn: (scope: UnitScope) => Promise<T>) => {
        const own = newState(state.overlay === undefined ? undefined : new EntityOverlay(state.overlay));
        const value = await this.#store.transaction((inner) => fn(this.#scope(inner, own)));
        // Reached only if the savepoint was released: a rolled-back unit leaves nothing behind.
        for (const partition of own.written) state.written.add(partition);
        state.outgoing.push(...own.outgoing);
        state.afterCommit.push(...own.afterCommit);
        own.overlay?.release();
        return value;
      },
    };
  }

  /**
   * An outbox row for `record`. Its work partition decides which node's relay publishes it: the
   * partition of the entity or saga that wrote it, else of its key, when this node owns that
   * partition (so one writer's records go out in the order it committed them); otherwise the
   * lowest partition this node owns, so that its own relay sends it at once.
   */
  #toOutbox(topic: string, record: ProducerRecord, written: ReadonlySet<number>): NewOutboxMessage {
    const recordHeaders = record.headers ?? {};
    const owner = recordHeaders[headers.entityId] ?? recordHeaders[headers.saga];
    const key = record.key;
    const keyText =
      typeof key === 'string' ? key : key instanceof Uint8Array ? decoder.decode(key) : undefined;
    const natural =
      owner !== undefined
        ? this.#ownership.partitionOf(owner)
        : keyText !== undefined
          ? this.#ownership.partitionOf(keyText)
          : written.values().next().value;
    const partition =
      natural !== undefined && this.#ownership.owns(natural)
        ? natural
        : (this.#ownership.owned()[0] ?? natural ?? 0);
    return {
      topic,
      key: typeof key === 'string' ? encoder.encode(key) : (key ?? null),
      value: record.value,
      headers: recordHeaders,
      timestamp: record.timestamp ?? this.#clock.now(),
      partition,
    };
  }
}
