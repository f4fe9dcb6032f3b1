// Redis Cluster failover: a master is SIGKILLed (scripts/redis/cluster.sh kill-node), its replica
// is promoted, and the cache's L2 and the shared rate limiter keep answering throughout — reads
// fall through to the loader while the shard is gone, and both use Redis again after promotion.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { Cluster } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import { redisRateLimiter } from '../resilience/redis-rate-limiter.ts';
import { createCache } from './cache.ts';
import { RedisTier } from './redis-tier.ts';

const clusterNodes = process.env.MERIDIAN_TEST_REDIS_CLUSTER_NODES;
// Killing a master would break the other suites using the cluster at the same time (test files run
// in parallel), so this one runs only when asked for: CI runs it in a step of its own.
const failover = process.env.MERIDIAN_TEST_REDIS_CLUSTER_FAILOVER === '1';
const script = resolve(import.meta.dirname, '../../scripts/redis/cluster.sh');

function clusterScript(...args: string[]): void {
  execFileSync('bash', [script, ...args], { stdio: 'pipe', timeout: 60_000 });
}

describe.skipIf(clusterNodes === undefined || !failover)(
  'cache and rate limiter on Redis Cluster under failover (MERIDIAN_TEST_REDIS_CLUSTER_FAILOVER=1)',
  () => {
    it('keep answering while a master is killed and use the promoted replica afterwards', async () => {
      const startup = clusterNodes!.split(',').map((node) => {
        const [host, port] = node.split(':');
        return { host: host!, port: Number(port) };
      });
      const redis = new Cluster(startup, { redisOptions: { maxRetriesPerRequest: 1 } });
      redis.on('error', () => {});
      const keyPrefix = `meridian:test:failover:${randomUUID()}:`;
      const l2 = new RedisTier({ redis, keyPrefix, timeoutMs: 200 });
      let loads = 0;
      const cache = createCache<string>({
        name: 'failover',
        ttlMs: 60_000,
        l1: false,
        l2,
        loader: () => `v${++loads}`,
      });
      const limiter = redisRateLimiter({
        redis,
        ratePerSecond: 1000,
        burst: 1000,
        onRedisError: 'fail-open',
        keyPrefix,
        redisTimeoutMs: 200,
      });
      const limiterErrors: unknown[] = [];
      limiter.onRedisError((event) => limiterErrors.push(event.error));
      try {
        expect(await cache.get('k')).toBe('v1');
        expect(await cache.get('k')).toBe('v1');
        expect((await limiter.consume('user')).allowed).toBe(true);
        expect(limiterErrors).toEqual([]);

        // The master holding the key's slot (the cache key and the limiter key are on their shards).
        const slot = Number(await redis.cluster('KEYSLOT', `${keyPrefix}failover:k`));
        const master = (redis.slots[slot] as string[])[0]!;
        const port = master.split(':')[1]!;
        clusterScript('kill-node', port);

        // While the shard is gone and until its replica is promoted, every read still answers
        // (from the loader), within the tier's timeout.
        await vi.waitFor(
          async () => {
            const value = await cache.get('k');
            expect(value).toMatch(/^v\d+$/);
            // Promoted: a value written now is read back from Redis, not loaded again.
            await cache.set('k', 'after');
            expect(await cache.get('k')).toBe('after');
            expect(cache.l2?.breaker.state).toBe('closed');
          },
          { timeout: 30_000, interval: 200 },
        );
        const errorsAfterFailover = limiterErrors.length;
        expect((await limiter.consume('user')).allowed).toBe(true);
        expect(limiterErrors.length).toBe(errorsAfterFailover);
      } finally {
        redis.disconnect();
        // Bring the killed node back (it rejoins as a replica) so later suites see a whole cluster.
        clusterScript('start');
      }
    }, 90_000);
  },
);
