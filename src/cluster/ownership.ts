import { MeridianError } from '../errors.ts';
import type { Store, StoreTransaction } from '../store/types.ts';
import type { Clock } from '../time.ts';
import { requireWorkPartitions, workPartitionOf } from './partitions.ts';

/**
 * A write for a work partition this node does not hold. The runtime routes such work to the
 * owner before it gets here; meeting it means the partition moved away meanwhile.
 */
export class NotOwnedError extends MeridianError {
  constructor(message: string, options: ConstructorParameters<typeof MeridianError>[2] = {}) {
    super('NOT_OWNED', message, options);
  }
}

export interface OwnershipOptions {
  store: Store;
  /** This node's name, recorded beside each epoch it claims. */
  node: string;
  /** How many work partitions the cluster has. 1 to 1024. */
  partitions: number;
  clock: Clock;
}

/** A partition this node wrote for whose epoch moved on: another node claimed it since. */
export interface StaleEpoch {
  readonly partition: number;
  readonly held: number;
  readonly current: number;
}

/**
 * The work partitions this node owns, each with the fencing epoch it claimed in the store.
 *
 * Claiming a partition bumps its epoch in the store; every transaction of this node then checks,
 * just before it commits, that the epochs of the partitions it wrote for are still the ones it
 * holds (`stale`). On PostgreSQL that read takes `FOR SHARE` locks, so a concurrent claim waits
 * until the transaction ends: a write either precedes the new owner's claim entirely, or it is
 * refused. A node that was paused, partitioned away or slow to hear of a rebalance therefore
 * cannot write for a partition another node has claimed, whatever it still believes.
 */
export class Ownership {
  readonly node: string;
  readonly partitions: number;
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #epochs = new Map<number, number>();

  constructor(options: OwnershipOptions) {
    this.node = options.node;
    this.partitions = requireWorkPartitions(options.partitions);
    this.#store = options.store;
    this.#clock = options.clock;
  }

  /** The work partition of an entity id or saga id. */
  partitionOf(id: string): number {
    return workPartitionOf(id, this.partitions);
  }

  owns(partition: number): boolean {
    return this.#epochs.has(partition);
  }

  /** The partitions this node holds an epoch for, ascending. */
  owned(): number[] {
    return [...this.#epochs.keys()].sort((a, b) => a - b);
  }

  /**
   * Throws NotOwnedError unless this node holds `partition`: a write for an id owned elsewhere
   * must travel to its owner instead.
   */
  requireOwned(partition: number, id: string): void {
    if (this.#epochs.has(partition)) return;
    throw new NotOwnedError(
      `Node '${this.node}' does not own work partition ${partition} (of '${id.slice(0, 200)}'): the write must be sent to the partition's owner`,
      { details: { node: this.node, partition } },
    );
  }

  epochOf(partition: number): number | undefined {
    return this.#epochs.get(partition);
  }

  /**
   * Claims `partitions`: a new epoch each, one transaction per partition (so a claim that waits
   * for an earlier owner's last transaction never holds another partition's lock meanwhile).
   * Returns the epochs claimed.
   */
  async claim(partitions: readonly number[]): Promise<Map<number, number>> {
    const claimed = new Map<number, number>();
    for (const partition of partitions) {
      const epoch = await this.#store.transaction((tx) =>
        tx.partitions.claim(partition, this.node, this.#clock.now()),
      );
      this.#epochs.set(partition, epoch);
      claimed.set(partition, epoch);
    }
    return claimed;
  }

  /** Forgets `partitions`: this node writes nothing more for them. */
  release(partitions: readonly number[]): void {
    for (const partition of partitions) this.#epochs.delete(partition);
  }

  /**
   * The partitions among `written` whose stored epoch is not the one held (a partition never
   * held counts as stale with `held` 0). Reads with share locks, inside `tx`.
   */
  async stale(tx: StoreTransaction, written: ReadonlySet<number>): Promise<StaleEpoch[]> {
    if (written.size === 0) return [];
    const list = [...written];
    const current = await tx.partitions.epochs(list, { lock: true });
    const stale: StaleEpoch[] = [];
    for (const partition of list) {
      const held = this.#epochs.get(partition) ?? 0;
      const now = current.get(partition) ?? 0;
      if (held === 0 || held !== now) stale.push({ partition, held, current: now });
    }
    return stale;
  }
}
