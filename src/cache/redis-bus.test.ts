// The Redis invalidation bus across a Redis crash: after the server is SIGKILLed and restarted,
// each bus subscribes again by itself (ioredis's own resubscription is off: it leaves a failed
// SUBSCRIBE as an unhandled rejection, which ends a Node process), asks its caches to repair,
// and messages flow again.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { RedisInvalidationBus } from './invalidation.ts';
import { RedisServer } from './redis-server.fixture.ts';

const server = new RedisServer(17008);
beforeAll(() => server.start());
afterAll(() => server.kill());

function openBus(channel: string) {
  const redis = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 20 });
  redis.on('error', () => {});
  const bus = new RedisInvalidationBus({ redis, channel });
  const received: string[] = [];
  let repairs = 0;
  bus.join('items', {
    invalidate: (key) => void received.push(key ?? '*'),
    repair: () => void repairs++,
  });
  return {
    bus,
    received,
    repairs: () => repairs,
    close: async () => {
      await bus.close();
      redis.disconnect();
    },
  };
}

describe('Redis invalidation bus', () => {
  it('subscribes again after Redis restarts, repairs its caches, and delivers what is published then', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    const a = openBus('bus-test');
    const b = openBus('bus-test');
    try {
      await Promise.all([a.bus.ready(), b.bus.ready()]);
      a.bus.publish({ cache: 'items', key: 'k1', version: 1 });
      await vi.waitFor(() => expect(b.received).toEqual(['k1']));
      for (let restart = 1; restart <= 3; restart++) {
        await server.kill();
        await server.start();
        await vi.waitFor(
          () => expect([a.bus.stats.repairs, b.bus.stats.repairs]).toEqual([restart + 1, restart + 1]),
          {
            timeout: 10_000,
          },
        );
      }
      // The first subscription counts as a repair too: a bus cannot know what it missed before it.
      expect(b.repairs()).toBe(4);
      a.bus.publish({ cache: 'items', key: 'k2', version: 2 });
      await vi.waitFor(() => expect(b.received).toEqual(['k1', 'k2']));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await Promise.all([a.close(), b.close()]);
    }
  }, 60_000);
});
