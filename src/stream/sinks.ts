import type { Cache } from '../cache/index.ts';
import { ValidationError } from '../errors.ts';
import type { ProducerRecord } from '../log/types.ts';
import { requireName } from '../store/limits.ts';
import type { Json, StoreTransaction } from '../store/types.ts';

/** What a sink may do inside the commit: write the store, publish records. Both commit with the input offsets. */
export interface SinkScope {
  readonly tx: StoreTransaction;
  /** Appends records to `topic` if and only if this transaction commits. */
  publish(topic: string, records: readonly ProducerRecord[]): void;
}

/**
 * Where a stream's values go. `write` runs inside the transaction that also commits the window
 * state and the input offsets, so what it writes exists exactly once. `committed` runs after
 * that transaction committed, for what cannot join it (a cache, a live feed): at least once,
 * and never for values that did not commit.
 */
export interface Sink<T> {
  readonly name: string;
  write?(values: readonly T[], scope: SinkScope): Promise<void>;
  committed?(values: readonly T[]): void | Promise<void>;
}

/** Appends each value to `topic`, encoded by `encode` (its key, value bytes, event time). */
export function topicSink<T>(topic: string, encode: (value: T) => ProducerRecord): Sink<T> {
  requireName('topic', topic);
  return {
    name: `topic:${topic}`,
    async write(values, scope) {
      const records = new Array<ProducerRecord>(values.length);
      for (let index = 0; index < values.length; index++) records[index] = encode(values[index]!);
      scope.publish(topic, records);
    },
  };
}

export interface ReadModelSinkOptions<T> {
  /** The entity type the rows live under (read them with `store.read(tx => tx.entities...)`). */
  readonly type: string;
  /** The row a value writes: a later value with the same id replaces it. */
  readonly id: (value: T) => string;
  readonly state: (value: T) => Json;
}

/**
 * Upserts a row per value into the store, in the commit: a read model queryable with the
 * store's own reads (`entities.get`, `entities.list` by id order, so ids like `AAPL/000001234`
 * give time ranges). Several values for one id in one commit leave the last.
 */
export function readModelSink<T>(options: ReadModelSinkOptions<T>): Sink<T> {
  const type = requireName('type', options.type);
  if (type.startsWith('$')) {
    throw new ValidationError(
      `A read model's 'type' cannot start with '$' (reserved): current value is '${type}'`,
    );
  }
  return {
    name: `read-model:${type}`,
    async write(values, scope) {
      const latest = new Map<string, Json>();
      for (const value of values) latest.set(options.id(value), options.state(value));
      for (const [id, state] of latest) {
        const current = await scope.tx.entities.get(type, id);
        await scope.tx.entities.put(type, id, state, current?.version ?? 0);
      }
    },
  };
}

/**
 * Sets each value in a cache once it committed (a cache cannot join the transaction): readers
 * of the cache see a result at most one commit after the store has it, never before.
 */
export function cacheSink<T, V>(options: {
  cache: Cache<V>;
  key: (value: T) => string;
  value: (value: T) => V;
}): Sink<T> {
  return {
    name: `cache:${options.cache.name}`,
    async committed(values) {
      const latest = new Map<string, V>();
      for (const value of values) latest.set(options.key(value), options.value(value));
      await Promise.all([...latest].map(([key, value]) => options.cache.set(key, value)));
    },
  };
}

/** Calls `listener` with the values of each commit after it committed (a live feed, a test). */
export function callbackSink<T>(
  name: string,
  listener: (values: readonly T[]) => void | Promise<void>,
): Sink<T> {
  return { name, committed: listener };
}
