import { describe, expect, it } from 'vitest';
import type { EntityRecord } from '../store/types.ts';
import { EntityCache, EntityOverlay, entityCacheKey } from './entity-cache.ts';
import { prefetchEntities } from './fenced-transaction.ts';

const record = (id: string, version: number, state: unknown = { v: version }): EntityRecord =>
  ({ type: 'T', id, state, version, updatedAt: 7 }) as EntityRecord;

function overlayOf(...entries: Array<[string, EntityRecord | null]>): EntityOverlay {
  const overlay = new EntityOverlay();
  for (const [id, value] of entries) overlay.set(entityCacheKey('T', id), { record: value, partition: 0 });
  return overlay;
}

describe('EntityCache', () => {
  it('answers only under the epoch it learnt a record in, with a copy each time', () => {
    const cache = new EntityCache(10);
    cache.apply(overlayOf(['a', record('a', 3)], ['gone', null]), () => 5);
    const first = cache.get(entityCacheKey('T', 'a'), 5)?.record;
    expect(first).toEqual(record('a', 3));
    (first?.state as { v: number }).v = 99; // a handler mutating what it read changes nothing cached
    expect(cache.get(entityCacheKey('T', 'a'), 5)?.record?.state).toEqual({ v: 3 });
    expect(cache.get(entityCacheKey('T', 'gone'), 5)).toEqual({ record: null });
    // The partition moved away and came back (a new epoch): what was known then counts no more.
    expect(cache.get(entityCacheKey('T', 'a'), 6)).toBeUndefined();
    expect(cache.get(entityCacheKey('T', 'a'), 5)).toBeUndefined();
  });

  it('skips partitions no longer owned when a transaction commits, and keeps at most its size', () => {
    const cache = new EntityCache(2);
    cache.apply(overlayOf(['a', record('a', 1)]), () => undefined);
    expect(cache.size).toBe(0);
    cache.apply(overlayOf(['a', record('a', 1)], ['b', record('b', 1)]), () => 1);
    cache.get(entityCacheKey('T', 'a'), 1); // a is now the most recently used
    cache.apply(overlayOf(['c', record('c', 1)]), () => 1);
    expect(cache.size).toBe(2);
    expect(cache.get(entityCacheKey('T', 'b'), 1)).toBeUndefined();
    expect(cache.get(entityCacheKey('T', 'a'), 1)).toBeDefined();
    cache.clear();
    expect(cache.size).toBe(0);
  });

  it("a nested overlay sees its parent's entries and hands its own over only when released", () => {
    const parent = overlayOf(['a', record('a', 1)]);
    const kept = new EntityOverlay(parent);
    kept.set(entityCacheKey('T', 'b'), { record: record('b', 1), partition: 0 });
    expect(kept.get(entityCacheKey('T', 'a'))?.record?.version).toBe(1);
    const dropped = new EntityOverlay(parent);
    dropped.set(entityCacheKey('T', 'c'), { record: record('c', 1), partition: 0 });
    kept.release();
    expect([...parent.entries()].map(([key]) => key)).toEqual([
      entityCacheKey('T', 'a'),
      entityCacheKey('T', 'b'),
    ]);
  });

  it('reading ahead loads only what neither the overlay nor the cache holds, for owned partitions', async () => {
    const cache = new EntityCache(10);
    const overlay = new EntityOverlay();
    // Partition = the id's last character: '1' is owned (epoch 1), '9' is not.
    const ownership = {
      partitionOf: (id: string) => Number(id.at(-1)),
      epochOf: (partition: number) => (partition === 1 ? 1 : undefined),
    };
    const asked: string[][] = [];
    const store = {
      getMany: async (_type: string, ids: readonly string[]) => {
        asked.push([...ids]);
        return new Map([[ids[0]!, record(ids[0]!, 1)]]);
      },
    };
    const keyed = (id: string) => entityCacheKey('T', id);
    cache.apply(overlayOf(['cached1', record('cached1', 2)]), () => 1);
    overlay.set(keyed('written1'), { record: record('written1', 4), partition: 1 });
    const cached = { cache, overlay, clock: { now: () => 0 } } as never;
    await prefetchEntities(store, ownership, cached, 'T', [
      'cached1',
      'written1',
      'new1',
      'gone1',
      'theirs9',
    ]);
    expect(asked).toEqual([['new1', 'gone1']]);
    expect(overlay.get(keyed('new1'))?.record?.id).toBe('new1');
    expect(overlay.get(keyed('gone1'))).toEqual({ record: null, partition: 1 });
    expect(overlay.get(keyed('theirs9'))).toBeUndefined();
    // All known now: nothing more is read.
    await prefetchEntities(store, ownership, cached, 'T', ['cached1', 'written1', 'new1', 'gone1']);
    expect(asked).toHaveLength(1);
  });
});
