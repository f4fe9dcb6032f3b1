import { ValidationError } from '../errors.ts';
import { Emitter, type Subscription } from '../resilience/events.ts';
import type { Json } from '../store/types.ts';
import type { UnitScope } from './commit-path.ts';

/**
 * One entity's change in a committed transaction, as `runtime.onEntityChanges` reports it: its
 * version and state before the transaction and after it. An entity changed by several commands
 * of one transaction is reported once, from its state before the first to its state after the
 * last.
 */
export interface EntityChange<S = Json> {
  /** The entity type's name (`Inventory`). */
  readonly entity: string;
  readonly id: string;
  /** The version after the transaction; 0 when the transaction deleted the entity. */
  readonly version: number;
  /** The version before the transaction; 0 when the entity did not exist. */
  readonly previousVersion: number;
  /** The state after the transaction; undefined when it was deleted. */
  readonly state: S | undefined;
  /** The state before the transaction; undefined when the entity did not exist. */
  readonly previousState: S | undefined;
}

/** Told the entity changes of each committed transaction, in commit order. Must not throw or block. */
export type EntityChangeListener = (changes: readonly EntityChange[]) => void;

/** Where each scope's changes are collected; scopes nobody tracks have no entry (noting is free). */
const collectors = new WeakMap<UnitScope, EntityChange[]>();

/** Notes a change made in `scope`: reported after commit if and only if the scope's work commits. */
export function noteEntityChange(scope: UnitScope, change: EntityChange): void {
  collectors.get(scope)?.push(change);
}

/**
 * `scope`, collecting the changes noted in it into `into`. A nested scope (a savepoint) collects
 * its own and adds them only once it is released, so a unit rolled back to its savepoint reports
 * nothing, as it wrote nothing.
 */
export function trackingScope(scope: UnitScope, into: EntityChange[]): UnitScope {
  const tracked: UnitScope = {
    tx: scope.tx,
    publish: (topic, records) => scope.publish(topic, records),
    consume: (group, record) => scope.consume(group, record),
    commitConsumed: (consumer, records) => scope.commitConsumed(consumer, records),
    fence: (partition) => scope.fence(partition),
    prefetch: (reads) => scope.prefetch(reads),
    isolate: async (fn) => {
      const own: EntityChange[] = [];
      const result = await scope.isolate((inner) => fn(trackingScope(inner, own)));
      into.push(...own);
      return result;
    },
  };
  collectors.set(tracked, into);
  return tracked;
}

/** One change per entity: from its state before the first change to its state after the last. */
export function mergeChanges(changes: readonly EntityChange[]): EntityChange[] {
  if (changes.length < 2) return [...changes];
  const byEntity = new Map<string, EntityChange>();
  for (const change of changes) {
    const key = `${change.entity}\u0000${change.id}`;
    const first = byEntity.get(key);
    byEntity.set(
      key,
      first === undefined
        ? change
        : { ...change, previousVersion: first.previousVersion, previousState: first.previousState },
    );
  }
  // Created and deleted within the transaction: it neither existed before nor exists now.
  return [...byEntity.values()].filter((change) => change.previousVersion !== 0 || change.version !== 0);
}

/**
 * The listeners of `runtime.onEntityChanges`. The committer collects changes only while someone
 * listens, and a listener that throws is reported, never allowed to fail the commit it follows.
 */
export class EntityChangeFeed {
  readonly #emitter: Emitter<readonly EntityChange[]>;

  constructor(report: (error: unknown) => void) {
    this.#emitter = new Emitter(report);
  }

  get active(): boolean {
    return this.#emitter.hasListeners;
  }

  subscribe(listener: EntityChangeListener): Subscription {
    if (typeof listener !== 'function') {
      throw new ValidationError('onEntityChanges needs a listener function: (changes) => void');
    }
    return this.#emitter.subscribe(listener);
  }

  /** Tells every listener; called once a transaction committed, before its units' callers resume. */
  committed(changes: readonly EntityChange[]): void {
    const merged = mergeChanges(changes);
    if (merged.length === 0) return;
    this.#emitter.emit(Object.freeze(merged));
  }
}
