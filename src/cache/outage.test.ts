// Redis slow or down: reads fall through to the loader within the tier's timeout, then not even
// that once the breaker opens; writes are skipped; invalidations are kept and replayed; and when
// Redis answers again the cache uses it by itself, without serving what it missed.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../time.ts';
import { createCache } from './cache.ts';
import { RedisServer } from './redis-server.fixture.ts';
import { RedisTier } from './redis-tier.ts';

const server = new RedisServer(17010);

beforeAll(() => server.start());
afterAll(() => server.kill());

function setup(clock: ManualClock) {
  const redis = new Redis(server.url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: () => 20,
  });
  redis.on('error', () => {});
  const l2 = new RedisTier({
    redis,
    keyPrefix: `outage:${clock.now()}:`,
    timeoutMs: 100,
    clock,
    timers: clock,
  });
  let version = 1;
  let loads = 0;
  const cache = createCache<string>({
    name: 'outage',
    ttlMs: 60_000,
    l1: false,
    l2,
    clock,
    loader: (key) => {
      loads++;
      return `${key}@${version}`;
    },
  });
  return {
    redis,
    l2,
    cache,
    bump: () => version++,
    get loads() {
      return loads;
    },
  };
}

async function connected(redis: Redis): Promise<void> {
  for (let attempt = 0; attempt < 500 && redis.status !== 'ready'; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  expect(redis.status).toBe('ready');
}

describe('cache when Redis is slow or down', () => {
  it('a frozen Redis costs each read one timeout until the breaker opens, then nothing; it recovers by itself', async () => {
    const clock = new ManualClock(1_800_000_000_000);
    const fixture = setup(clock);
    const { cache, l2 } = fixture;
    await connected(fixture.redis);
    expect(await cache.get('a')).toBe('a@1');
    // The value reaches Redis behind the first reader's answer; a later reader is served from it.
    await vi.waitFor(async () => {
      expect(await cache.get('a')).toBe('a@1');
      expect(cache.snapshot().hitsL2).toBeGreaterThan(0);
    });

    server.freeze();
    try {
      // Each read waits one timeout for Redis (the write behind it another, unseen by callers);
      // five failures in a row open the breaker.
      for (let attempt = 0; attempt < 5 && l2.breaker.state === 'closed'; attempt++) {
        let settled = false;
        const read = cache.get(`x${attempt}`).finally(() => {
          settled = true;
        });
        await clock.advanceAsync(99);
        expect(settled).toBe(false);
        await clock.advanceAsync(1);
        // The timeout fired: the read went to the loader.
        expect(await read).toBe(`x${attempt}@1`);
      }
      expect(l2.breaker.state).toBe('open');
      // Open: reads go straight to the loader, writes are skipped, nothing waits.
      fixture.bump();
      expect(await cache.get('a')).toBe('a@2');
      expect(await cache.set('b', 'written while down')).toBe(true);
      await cache.delete('a');
      expect(cache.snapshot().pendingInvalidations).toBe(1);
    } finally {
      server.thaw();
    }

    // After the open duration a probe goes through, closes the breaker and replays the delete,
    // so Redis's old 'a@1' is never served again.
    await clock.advanceAsync(1000);
    expect(await cache.get('c')).toBe('c@2');
    expect(l2.breaker.state).toBe('closed');
    // The replayed delete is a real Redis round trip: waited for, not counted in turns.
    await vi.waitFor(async () => {
      await clock.advanceAsync(0);
      expect(cache.snapshot().pendingInvalidations).toBe(0);
    });
    const hits = cache.snapshot().hitsL2;
    await vi.waitFor(async () => {
      expect(await cache.get('a')).toBe('a@2');
      expect(cache.snapshot().hitsL2).toBeGreaterThan(hits);
    });
    fixture.redis.disconnect();
  });

  it('a killed Redis fails reads over to the loader at once, and a restarted one is used again', async () => {
    const clock = new ManualClock(1_900_000_000_000);
    const fixture = setup(clock);
    const { cache, l2 } = fixture;
    await connected(fixture.redis);
    expect(await cache.get('k')).toBe('k@1');
    await server.kill();
    try {
      fixture.bump();
      // Refused connections fail fast: no clock needs to move for these reads to answer.
      for (let attempt = 0; attempt < 3; attempt++)
        expect(await cache.get(`k${attempt}`)).toBe(`k${attempt}@2`);
      expect(l2.breaker.state).toBe('open');
    } finally {
      await server.start();
    }
    await connected(fixture.redis);
    await clock.advanceAsync(1000);
    expect(await cache.get('after')).toBe('after@2');
    expect(l2.breaker.state).toBe('closed');
    // Stored in the restarted Redis: read back from it without loading again.
    await vi.waitFor(async () => {
      expect(await cache.get('after')).toBe('after@2');
      expect(cache.snapshot().hitsL2).toBeGreaterThan(0);
    });
    expect(fixture.loads).toBe(5);
    fixture.redis.disconnect();
  });
});
