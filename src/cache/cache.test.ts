// The in-process behaviour the contract suite does not cover: bounds and eviction events,
// option validation, repair after missed invalidations, and the bus's handling of bad messages.
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { ManualClock } from '../time.ts';
import { createCache } from './cache.ts';
import type { EvictEvent, HitEvent, MissEvent } from './events.ts';
import { MemoryInvalidationHub, parseMessage } from './invalidation.ts';

describe('cache bounds', () => {
  it('keeps at most maxEntries, dropping the least recently used first, and reports each eviction', async () => {
    const cache = createCache<string>({
      name: 'bounded',
      ttlMs: 60_000,
      l1: { maxEntries: 2 },
      loader: (key) => key,
    });
    const evictions: EvictEvent[] = [];
    cache.onEvict((event) => evictions.push(event));
    await cache.get('a');
    await cache.get('b');
    await cache.get('a'); // a is now the most recently used
    await cache.get('c');
    expect(evictions).toEqual([{ cache: 'bounded', key: 'b', reason: 'capacity' }]);
    expect(cache.peek('a')).toBe('a');
    expect(cache.peek('b')).toBeUndefined();
    expect(cache.snapshot()).toMatchObject({ entries: 2, evictions: 1 });
  });

  it('keeps at most maxBytes, and never stores an entry larger than the bound', async () => {
    const cache = createCache<string>({
      name: 'bytes',
      ttlMs: 60_000,
      l1: { maxBytes: 1024 },
      sizeOf: (value) => value.length,
      loader: (key) => 'x'.repeat(Number(key)),
    });
    const evictions: EvictEvent[] = [];
    cache.onEvict((event) => evictions.push(event));
    await cache.get('600');
    await cache.get('400');
    expect(cache.snapshot().bytes).toBe(1000);
    await cache.get('300');
    expect(evictions.map((event) => event.key)).toEqual(['600']);
    expect(await cache.get('2000')).toHaveLength(2000);
    expect(evictions.at(-1)).toEqual({ cache: 'bytes', key: '2000', reason: 'too-large' });
    expect(cache.snapshot().bytes).toBeLessThanOrEqual(1024);
  });
});

describe('cache events and metrics', () => {
  it('reports hits and misses as disposable subscriptions, and counts them in the snapshot', async () => {
    const cache = createCache<number>({ name: 'events', ttlMs: 1000, loader: () => 1 });
    const hits: HitEvent[] = [];
    const misses: MissEvent[] = [];
    const subscription = cache.onHit((event) => hits.push(event));
    cache.onMiss((event) => misses.push(event));
    await cache.get('k');
    await cache.get('k');
    subscription.dispose();
    await cache.get('k');
    expect(misses).toEqual([{ cache: 'events', key: 'k' }]);
    expect(hits).toEqual([{ cache: 'events', key: 'k', tier: 'l1' }]);
    expect(cache.snapshot()).toMatchObject({ hitsL1: 2, misses: 1, loads: 1 });
  });
});

describe('cache options', () => {
  it('requires a name and a TTL, and names the option, the rule and the value when one is wrong', () => {
    expect(() => createCache({ name: 'x' } as never)).toThrow(ValidationError);
    expect(() => createCache({ name: 'Bad Name', ttlMs: 1 })).toThrow(/'name' must be matching/);
    expect(() => createCache({ name: 'x', ttlMs: 0 })).toThrow("'ttlMs' must be >= 1: current value is 0");
    expect(() => createCache({ name: 'x', ttlMs: 1, l1: { maxEntries: 0 } })).toThrow(
      "'l1.maxEntries' must be >= 1: current value is 0",
    );
    expect(() => createCache({ name: 'x', ttlMs: 1, l1: false })).toThrow(/a cache needs at least one tier/);
  });

  it('a miss without any loader is a clear error; a hit needs none', async () => {
    const cache = createCache<string>({ name: 'aside', ttlMs: 1000 });
    await expect(cache.get('k')).rejects.toThrow("Cache 'aside' has no loader");
    await cache.set('k', 'v');
    expect(await cache.get('k')).toBe('v');
  });

  it('a versionOf that returns a non-integer is reported to the caller', async () => {
    const cache = createCache<{ v: number }>({
      name: 'versions',
      ttlMs: 1000,
      versionOf: (value) => value.v,
      loader: () => ({ v: 1.5 }),
    });
    await expect(cache.get('k')).rejects.toThrow(/must be a safe integer >= 0: current value is 1.5/);
  });
});

describe('invalidation across nodes', () => {
  it('a node that missed messages while disconnected drops its whole L1 when it reconnects (repair)', async () => {
    const hub = new MemoryInvalidationHub();
    const clock = new ManualClock(0);
    let version = 1;
    const options = { name: 'repair', ttlMs: 60_000, clock, loader: () => version };
    const a = createCache<number>({ ...options, invalidation: hub.connect('a') });
    const b = createCache<number>({ ...options, invalidation: hub.connect('b') });
    expect(await b.get('k')).toBe(1);
    hub.disconnect('b');
    version = 2;
    await a.delete('k');
    // b missed the message: until it reconnects, its copy is as stale as its TTL allows.
    expect(await b.get('k')).toBe(1);
    hub.reconnect('b');
    expect(b.peek('k')).toBeUndefined();
    expect(await b.get('k')).toBe(2);
    expect(b.snapshot().repairs).toBe(1);
  });

  it('messages off the wire are checked: malformed or oversized ones are dropped', () => {
    expect(parseMessage('{"origin":"n","cache":"c","key":"k","version":3}')).toEqual({
      origin: 'n',
      cache: 'c',
      key: 'k',
      version: 3,
    });
    expect(parseMessage('{"origin":"n","cache":"c","key":null,"version":null}')?.key).toBeNull();
    expect(parseMessage('not json')).toBeUndefined();
    expect(parseMessage('{"origin":"n","cache":"c","key":5,"version":null}')).toBeUndefined();
    expect(parseMessage('{"origin":"n","cache":"c","key":"k","version":"3"}')).toBeUndefined();
    expect(
      parseMessage(`{"origin":"n","cache":"c","key":"${'k'.repeat(9000)}","version":null}`),
    ).toBeUndefined();
  });

  it('clear() drops every key on every node', async () => {
    const hub = new MemoryInvalidationHub();
    const options = { name: 'clear', ttlMs: 60_000, loader: (key: string) => key };
    const a = createCache<string>({ ...options, invalidation: hub.connect() });
    const b = createCache<string>({ ...options, invalidation: hub.connect() });
    await b.get('x');
    await b.get('y');
    a.clear();
    expect(b.snapshot().entries).toBe(0);
  });
});
