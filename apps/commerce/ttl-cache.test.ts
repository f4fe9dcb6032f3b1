// The catalog's cache: values expire after their TTL, concurrent misses share one load, a load
// racing an invalidation never stores a stale value, and the size stays bounded.
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/index.ts';
import { ManualClock } from '../../src/testing/index.ts';
import { TtlCache } from './ttl-cache.ts';

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

describe('TtlCache', () => {
  it('serves a loaded value until its TTL passes, then loads again', async () => {
    const clock = new ManualClock(0);
    const cache = new TtlCache<number>({ ttlMs: 100, clock });
    let loads = 0;
    const load = async () => ++loads;
    expect(await cache.get('k', load)).toBe(1);
    clock.advance(99);
    expect(await cache.get('k', load)).toBe(1);
    clock.advance(1);
    expect(await cache.get('k', load)).toBe(2);
    expect(cache.stats).toMatchObject({ hits: 1, misses: 2, loads: 2, size: 1 });
  });

  it('runs one load for concurrent misses of a key (single flight)', async () => {
    const cache = new TtlCache<string>({ clock: new ManualClock(0) });
    const gate = deferred<string>();
    let loads = 0;
    const load = () => {
      loads += 1;
      return gate.promise;
    };
    const readers = Promise.all([cache.get('k', load), cache.get('k', load), cache.get('k', load)]);
    gate.resolve('v');
    expect(await readers).toEqual(['v', 'v', 'v']);
    expect(loads).toBe(1);
  });

  it('does not store what a load started before an invalidation returns', async () => {
    const cache = new TtlCache<string>({ clock: new ManualClock(0) });
    const old = deferred<string>();
    const first = cache.get('price', () => old.promise);
    cache.invalidate('price');
    // A reader after the invalidation does not join the stale load.
    const fresh = cache.get('price', async () => 'new');
    old.resolve('old');
    expect(await first).toBe('old');
    expect(await fresh).toBe('new');
    expect(await cache.get('price', async () => 'unused')).toBe('new');
  });

  it('does not cache a failed load', async () => {
    const cache = new TtlCache<string>({ clock: new ManualClock(0) });
    await expect(cache.get('k', async () => Promise.reject(new Error('down')))).rejects.toThrow('down');
    expect(await cache.get('k', async () => 'up')).toBe('up');
  });

  it('keeps at most maxEntries, dropping the least recently used', async () => {
    const cache = new TtlCache<string>({ maxEntries: 2, clock: new ManualClock(0) });
    await cache.get('a', async () => 'a1');
    await cache.get('b', async () => 'b1');
    await cache.get('a', async () => 'a2');
    await cache.get('c', async () => 'c1');
    expect(cache.stats.size).toBe(2);
    expect(await cache.get('a', async () => 'a3')).toBe('a1');
    expect(await cache.get('b', async () => 'b2')).toBe('b2');
  });

  it('validates its options', () => {
    expect(() => new TtlCache({ ttlMs: 0 })).toThrow(ValidationError);
    expect(() => new TtlCache({ maxEntries: 1.5 })).toThrow(
      "'maxEntries' must be an integer in [1, 1000000]",
    );
  });
});
