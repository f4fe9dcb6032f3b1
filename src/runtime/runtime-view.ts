import type { StoreReader } from '../store/types.ts';
import type { AnyEntityDefinition, EntityState } from './definitions.ts';
import { requireRuntimeId } from './options.ts';
import { type SagaProgress, sagaProgress } from './saga-progress.ts';

/** An entity instance as `list` returns it. */
export interface EntityInstance<E extends AnyEntityDefinition> {
  readonly id: string;
  readonly state: EntityState<E>;
  readonly version: number;
  readonly updatedAt: number;
}

/**
 * Typed reads of committed state — entities and sagas' progress — all on one snapshot when made
 * through `runtime.read((tx, view) => …)`, so a page that shows an entity and a saga shows them
 * as they were at one moment. `runtime.state`, `runtime.list` and `runtime.progress` are the same
 * reads, each on a snapshot of its own.
 */
export interface RuntimeView {
  /** An entity's state, version and last write (runtime clock, ms), or null when it was never written. */
  state<E extends AnyEntityDefinition>(
    entity: E,
    id: string,
  ): Promise<{ state: EntityState<E>; version: number; updatedAt: number } | null>;
  /** A page of an entity type's instances ordered by id, after `afterId`; `limit` 1 to 1000, default 100. */
  list<E extends AnyEntityDefinition>(
    entity: E,
    options?: { afterId?: string; limit?: number },
  ): Promise<Array<EntityInstance<E>>>;
  /** A saga's progress (status, output or failure, finished calls), or null when there is no such saga. */
  progress(id: string): Promise<SagaProgress | null>;
}

/** The view over `tx`; `entity` resolves a definition to the registered one (or throws). */
export function runtimeView(
  tx: StoreReader,
  entity: (definition: AnyEntityDefinition) => AnyEntityDefinition,
  entities: ReadonlyMap<string, AnyEntityDefinition>,
): RuntimeView {
  return {
    async state(definition, id) {
      const record = await tx.entities.get(entity(definition).name, id);
      if (record === null) return null;
      return { state: record.state as never, version: record.version, updatedAt: record.updatedAt };
    },
    async list(definition, options = {}) {
      const records = await tx.entities.list(entity(definition).name, options);
      return records.map(({ id, state, version, updatedAt }) => ({
        id,
        state: state as never,
        version,
        updatedAt,
      }));
    },
    async progress(id) {
      requireRuntimeId('A saga id', id);
      const record = await tx.sagas.get(id);
      return record === null ? null : sagaProgress(record, await tx.sagas.journal(id), entities);
    },
  };
}
