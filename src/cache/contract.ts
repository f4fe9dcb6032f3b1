/**
 * The cache's contract, written once and run against every tier layout: L1 alone, L1 in front
 * of Redis, Redis alone, and L1 in front of a Redis Cluster. A layout may skip a case only with a
 * written reason; an unknown case name fails the suite. Each case uses two nodes (two caches
 * sharing the layout's tiers and invalidation bus, as two processes would) and a manual clock;
 * deliveries across nodes are awaited with bounded polls, never sleeps.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock, systemTimers } from '../time.ts';
import { type Cache, createCache } from './cache.ts';
import type { CacheOptions } from './options.ts';

export interface CacheLayout {
  /** Options a node's cache adds to the case's own (tiers, bus), for node `index` of the case. */
  node(index: number, clock: ManualClock): Promise<Partial<CacheOptions<never>>>;
  /** Closes what `node` opened. */
  close(): Promise<void>;
}

export interface CacheContractOptions {
  skip?: Readonly<Record<string, string>>;
}

interface Nodes {
  clock: ManualClock;
  open<V>(options: Omit<CacheOptions<V>, 'name'> & { name?: string }): Promise<[Cache<V>, Cache<V>]>;
}

type Case = (nodes: Nodes) => Promise<void>;

/** A loader whose calls wait until the test releases them, so a race can be staged step by step. */
function gatedLoader<V>() {
  const calls: { key: string; release: (value: V) => void; fail: (error: Error) => void }[] = [];
  const loader = (key: string) =>
    new Promise<V>((release, fail) => {
      calls.push({ key, release, fail });
    });
  return { loader, calls };
}

/** Polls `condition` (awaited) every 5 ms until it holds, failing after 5 s. */
async function until(condition: () => unknown): Promise<void> {
  for (let attempt = 0; attempt < 1000; attempt++) {
    if (await condition()) return;
    await new Promise<void>((resolve) => systemTimers.setTimeout(resolve, 5));
  }
  throw new Error(`Condition not met within 5 s: ${condition}`);
}

const cases: Record<string, Case> = {
  'read-through loads once, then serves hits until the TTL ends': async ({ clock, open }) => {
    let loads = 0;
    const [cache] = await open<string>({ ttlMs: 1000, loader: (key) => `${key}#${++loads}` });
    expect(await cache.get('a')).toBe('a#1');
    expect(await cache.get('a')).toBe('a#1');
    clock.advance(1000);
    expect(await cache.get('a')).toBe('a#2');
    expect(loads).toBe(2);
  },

  'a stampede of misses on one key runs the loader once': async ({ open }) => {
    const gate = gatedLoader<number>();
    const [cache] = await open<number>({ ttlMs: 1000, loader: gate.loader });
    const readers = Array.from({ length: 200 }, () => cache.get('hot'));
    await until(() => gate.calls.length === 1);
    gate.calls[0]!.release(42);
    expect(new Set(await Promise.all(readers))).toEqual(new Set([42]));
    expect(gate.calls).toHaveLength(1);
  },

  'cache-aside: get(key, loader) uses the given loader, and set writes through': async ({ open }) => {
    const [cache] = await open<string>({ ttlMs: 10_000 });
    expect(await cache.get('k', () => 'loaded')).toBe('loaded');
    expect(await cache.set('k', 'written')).toBe(true);
    expect(await cache.get('k', () => 'not called')).toBe('written');
  },

  'absences are cached for negativeTtlMs': async ({ clock, open }) => {
    let loads = 0;
    const [cache] = await open<string | null>({
      ttlMs: 10_000,
      negativeTtlMs: 100,
      loader: () => {
        loads++;
        return null;
      },
    });
    expect(await cache.get('missing')).toBeNull();
    expect(await cache.get('missing')).toBeNull();
    expect(loads).toBe(1);
    clock.advance(100);
    expect(await cache.get('missing')).toBeNull();
    expect(loads).toBe(2);
  },

  'stale-while-revalidate serves the old value at once and refreshes it in the background': async ({
    clock,
    open,
  }) => {
    let version = 1;
    const [cache] = await open<string>({
      ttlMs: 100,
      staleWhileRevalidateMs: 1000,
      loader: () => `v${version}`,
    });
    expect(await cache.get('k')).toBe('v1');
    version = 2;
    clock.advance(150);
    const stale: string[] = [];
    cache.onStaleServed((event) => stale.push(event.reason));
    expect(await cache.get('k')).toBe('v1');
    expect(stale).toEqual(['revalidating']);
    await until(async () => (await cache.get('k')) === 'v2');
  },

  'a failing load serves the stale value within staleIfErrorMs, and the error after it': async ({
    clock,
    open,
  }) => {
    let fail = false;
    const [cache] = await open<string>({
      ttlMs: 100,
      staleIfErrorMs: 500,
      loader: () => {
        if (fail) throw new Error('source down');
        return 'good';
      },
    });
    expect(await cache.get('k')).toBe('good');
    fail = true;
    clock.advance(300);
    const failures: boolean[] = [];
    cache.onLoadFailed((event) => failures.push(event.staleServed));
    expect(await cache.get('k')).toBe('good');
    clock.advance(400);
    await expect(cache.get('k')).rejects.toThrow('source down');
    expect(failures).toEqual([true, false]);
  },

  'a load that read old data before a delete never stores it (delete-then-late-set)': async ({ open }) => {
    let source = 'old';
    const gate = gatedLoader<string>();
    const [a, b] = await open<string>({ ttlMs: 60_000 });
    const late = a.get('k', gate.loader);
    await until(() => gate.calls.length === 1);
    // The source changes and the writer invalidates, while the load still holds the old value.
    source = 'new';
    await b.delete('k');
    gate.calls[0]!.release('old');
    expect(await late).toBe('old');
    await until(async () => (await a.get('k', () => source)) === 'new');
    expect(await b.get('k', () => source)).toBe('new');
    expect(await a.get('k', () => 'unused')).toBe('new');
  },

  'a read racing a delete does not leave the old value cached': async ({ open }) => {
    let source = 'old';
    const [cache] = await open<string>({ ttlMs: 60_000, loader: () => source });
    expect(await cache.set('k', 'old')).toBe(true);
    source = 'new';
    // The read may find the old entry before the delete's tombstone lands; once the delete has
    // returned, nothing of the old value may be left.
    const deleted = cache.delete('k');
    const racing = cache.get('k');
    await deleted;
    expect(['old', 'new']).toContain(await racing);
    expect(cache.peek('k')).not.toBe('old');
    expect(await cache.get('k')).toBe('new');
  },

  'a delete on one node reaches the other node': async ({ open }) => {
    let source = 'v1';
    const [a, b] = await open<string>({ ttlMs: 60_000, loader: () => source });
    expect(await a.get('k')).toBe('v1');
    expect(await b.get('k')).toBe('v1');
    source = 'v2';
    await a.delete('k');
    await until(async () => (await b.get('k')) === 'v2');
    expect(await a.get('k')).toBe('v2');
  },

  'a write older than the version a tier holds is refused': async ({ open }) => {
    const [cache] = await open<{ v: number }>({ ttlMs: 60_000, versionOf: (value) => value.v });
    expect(await cache.set('k', { v: 5 })).toBe(true);
    expect(await cache.set('k', { v: 3 })).toBe(false);
    expect(await cache.get('k', () => ({ v: 1 }))).toEqual({ v: 5 });
    expect(await cache.set('k', { v: 6 })).toBe(true);
    expect(await cache.get('k', () => ({ v: 1 }))).toEqual({ v: 6 });
  },

  'a delete at a version keeps copies at that version and refuses loads of older ones': async ({ open }) => {
    const [a, b] = await open<{ v: number }>({ ttlMs: 60_000, versionOf: (value) => value.v });
    const gate = gatedLoader<{ v: number }>();
    const late = a.get('k', gate.loader);
    await until(() => gate.calls.length === 1);
    await b.delete('k', { version: 7 });
    gate.calls[0]!.release({ v: 6 });
    expect(await late).toEqual({ v: 6 });
    expect(await b.get('k', () => ({ v: 7 }))).toEqual({ v: 7 });
    await until(async () => (await a.get('k', () => ({ v: 7 }))).v === 7);
  },

  'a load error is not cached': async ({ open }) => {
    let calls = 0;
    const [cache] = await open<string>({
      ttlMs: 1000,
      loader: () => {
        calls++;
        if (calls === 1) throw new Error('first fails');
        return 'second';
      },
    });
    await expect(cache.get('k')).rejects.toThrow('first fails');
    expect(await cache.get('k')).toBe('second');
  },

  'bad keys are refused with a clear error': async ({ open }) => {
    const [cache] = await open<string>({ ttlMs: 1000, loader: () => 'x' });
    await expect(cache.get('')).rejects.toThrow(/1 to 1024 characters/);
    await expect(cache.get('x'.repeat(1025))).rejects.toThrow(/1025 characters long/);
    await expect(cache.delete(7 as never)).rejects.toThrow(/current value is number/);
  },
};

/** Runs every case against `layout`, except the skipped ones (each with its reason). */
export function cacheContract(
  name: string,
  layout: () => CacheLayout,
  options: CacheContractOptions = {},
): void {
  const skip = options.skip ?? {};
  describe(`cache contract: ${name}`, () => {
    it('skips only cases that exist', () => {
      expect(Object.keys(skip).filter((label) => !(label in cases))).toEqual([]);
    });
    let run = 0;
    for (const [label, body] of Object.entries(cases)) {
      const reason = skip[label];
      if (reason !== undefined) {
        it.skip(`${label} (skipped: ${reason})`, () => {});
        continue;
      }
      it(label, async () => {
        const current = layout();
        const clock = new ManualClock(1_800_000_000_000);
        const opened: Cache<never>[] = [];
        run++;
        try {
          await body({
            clock,
            open: async (caseOptions) => {
              const nodes = await Promise.all(
                [0, 1].map(async (index) => {
                  const cache = createCache({
                    name: `contract-${run}`,
                    ...(await current.node(index, clock)),
                    ...caseOptions,
                    clock,
                  } as CacheOptions<never>);
                  opened.push(cache);
                  return cache;
                }),
              );
              return nodes as never;
            },
          });
        } finally {
          for (const cache of opened) cache.close();
          await current.close();
        }
      });
    }
  });
}
