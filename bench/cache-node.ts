/**
 * The second node of `bench/cache.ts`: a cache on the same Redis invalidation channel, reporting
 * to its parent the wall-clock time each invalidation reached it.
 */
import { Redis } from 'ioredis';
import { createCache, RedisInvalidationBus } from '../src/cache/index.ts';

const [redisUrl, channel] = process.argv.slice(2);
if (redisUrl === undefined || channel === undefined)
  throw new Error('usage: cache-node.ts REDIS_URL CHANNEL');
const send = (message: object) => process.send?.(message);
const redis = new Redis(redisUrl);
const bus = new RedisInvalidationBus({ redis, channel });
await bus.ready();
const cache = createCache<object>({ name: 'bench-nodes', ttlMs: 60_000, invalidation: bus });
// A second member of the same cache on this node's bus sees each message as the cache does.
bus.join(cache.name, {
  invalidate: () => send({ receivedAtMs: performance.timeOrigin + performance.now() }),
  repair: () => {},
});
send({ ready: true });
