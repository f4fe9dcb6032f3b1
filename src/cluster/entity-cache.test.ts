import { describe, expect, it } from 'vitest';
import type { EntityRecord } from '../store/types.ts';
import { EntityCache, EntityOverlay, entityCacheKey } from './entity-cache.ts';

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
});
