/**
 * Entity changes invalidate their cached reads by themselves: `bindEntityChanges` listens to a
 * runtime's committed entity changes (`runtime.onEntityChanges`) and deletes the cache keys that
 * hold reads of the changed entities, on every tier and, through the cache's invalidation bus,
 * on every node. The cache layer sits below the runtime, so the runtime is described here by the
 * one method the binding needs.
 */
import { ValidationError } from '../errors.ts';
import type { Subscription } from '../resilience/events.ts';
import { type Cache, MAX_KEY_CHARS } from './cache.ts';

/** One entity's committed change, as `runtime.onEntityChanges` reports it. */
export interface CommittedEntityChange<S> {
  readonly entity: string;
  readonly id: string;
  /** The version after the transaction; 0 when it deleted the entity. */
  readonly version: number;
  /** The version before; 0 when the entity did not exist. */
  readonly previousVersion: number;
  readonly state: S | undefined;
  readonly previousState: S | undefined;
}

/** What reports committed entity changes: a Meridian runtime. */
export interface EntityChangeSource {
  onEntityChanges(listener: (changes: readonly CommittedEntityChange<unknown>[]) => void): Subscription;
}

export interface EntityBindingOptions<S> {
  /** The entity type whose changes invalidate (its definition: `Inventory`). Required. */
  entity: { readonly name: string; initialState(id: string): S };
  /**
   * What the cached reads show of the state. With it, a change invalidates only when the
   * projection differs before and after (compared as JSON): hot fields the cache does not show
   * (a stock count changing on every order) do not thrash it. @default the whole state
   */
  project?: (state: S | undefined) => unknown;
  /**
   * The keys holding reads of the changed entity; an empty array invalidates nothing.
   * @default [change.id]
   */
  keys?: (change: CommittedEntityChange<S>) => string | readonly string[];
}

function checkedKeys(cache: string, keys: unknown): readonly string[] {
  const list = typeof keys === 'string' ? [keys] : keys;
  if (!Array.isArray(list)) {
    throw new ValidationError(
      `The 'keys' function of the entity binding of cache '${cache}' must return a string or an array of strings: current value is ${typeof keys}`,
    );
  }
  for (const key of list) {
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_CHARS) {
      throw new ValidationError(
        `The 'keys' function of the entity binding of cache '${cache}' returned a key that is not a string of 1 to ${MAX_KEY_CHARS} characters: ${typeof key === 'string' ? `${key.length} characters long` : typeof key}`,
      );
    }
  }
  return list as readonly string[];
}

/** True when the change shows in what the cache holds (always without a projection). */
function visible<S>(
  change: CommittedEntityChange<S>,
  project: ((state: S | undefined) => unknown) | undefined,
) {
  if (project === undefined) return true;
  return JSON.stringify(project(change.previousState)) !== JSON.stringify(project(change.state));
}

/**
 * The version a change invalidates at, for a cache whose values carry their entity's version
 * (`versionOf`, with an absent entity at version 0): copies older than the change are dropped and
 * loads that read older data are refused, while a copy that already holds the change is kept.
 * Versions start again at 1 after a deletion, so a deletion invalidates one above the deleted
 * version: a re-created entity's reads are then refused until that tombstone ends (Redis) and its
 * first invalidation (version 1) drops a cached absence (version 0).
 */
function versionOfChange(change: CommittedEntityChange<unknown>): number {
  return change.version === 0 ? change.previousVersion + 1 : change.version;
}

/**
 * Invalidates `cache` when entities of `options.entity` change: after each committed transaction
 * of `source` (on the cluster shape, of the node that owns the entity), the keys holding the
 * changed entities' reads are deleted on every tier and every node. A cache with `versionOf`
 * is invalidated at the change's version, so its values must carry the version of the entity
 * they were read from (`runtime.state(...).version`, 0 when absent); a cache without it gets
 * fresh stamps above anything it holds. Either way a load that read the old state and finishes
 * after the invalidation stores nothing. Dispose the returned subscription to stop.
 *
 * What it cannot do: a node killed between its commit and the invalidation leaves the cached
 * copies as they were until their TTL ends, as for any lost invalidation.
 */
export function bindEntityChanges<V, S>(
  source: EntityChangeSource,
  cache: Cache<V>,
  options: EntityBindingOptions<S>,
): Subscription {
  const entity = options?.entity?.name;
  if (typeof entity !== 'string' || entity.length === 0) {
    throw new ValidationError(
      `bindEntityChanges needs 'entity': the entity definition whose changes invalidate cache '${cache?.name}'`,
    );
  }
  if (typeof source?.onEntityChanges !== 'function') {
    throw new ValidationError(
      `bindEntityChanges needs a source with onEntityChanges (a runtime): cache '${cache.name}'`,
    );
  }
  const { project, keys } = options;
  const versioned = cache.versioned;
  return source.onEntityChanges((changes) => {
    for (const change of changes as readonly CommittedEntityChange<S>[]) {
      if (change.entity !== entity || !visible(change, project)) continue;
      const version = versioned ? { version: versionOfChange(change) } : {};
      for (const key of keys === undefined ? [change.id] : checkedKeys(cache.name, keys(change))) {
        // Never rejects: keys are checked above and Redis failures are kept for replay.
        void cache.delete(key, version);
      }
    }
  });
}
