// The cache contract against every tier layout: L1 alone (nodes joined by an in-memory bus),
// L1 in front of Redis, Redis alone, and L1 in front of a real Redis Cluster.
import { randomUUID } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { describe } from 'vitest';
import { type CacheLayout, cacheContract } from './contract.ts';
import { MemoryInvalidationHub, RedisInvalidationBus } from './invalidation.ts';
import { RedisTier } from './redis-tier.ts';

const redisUrl = process.env.MERIDIAN_TEST_REDIS_URL;
const clusterNodes = process.env.MERIDIAN_TEST_REDIS_CLUSTER_NODES;

cacheContract('L1 alone', () => {
  const hub = new MemoryInvalidationHub();
  return { node: async () => ({ invalidation: hub.connect() }), close: async () => {} };
});

/** Each node gets its own client, tier and bus, as a separate process would. */
function redisLayout(connect: () => Redis | Cluster, withL1: boolean): () => CacheLayout {
  return () => {
    const keyPrefix = `meridian:test:cache:${randomUUID()}:`;
    const channel = `meridian:test:invalidations:${randomUUID()}`;
    const closers: (() => unknown)[] = [];
    return {
      async node(_index, clock) {
        const redis = connect();
        const bus = new RedisInvalidationBus({ redis, channel });
        closers.push(
          () => bus.close(),
          () => redis.disconnect(),
        );
        await bus.ready();
        return {
          l2: new RedisTier({ redis, keyPrefix, clock }),
          invalidation: bus,
          ...(withL1 ? {} : { l1: false as const }),
        };
      },
      async close() {
        for (const close of closers.splice(0)) await close();
      },
    };
  };
}

if (redisUrl === undefined) {
  describe.skip('cache contract: Redis (skipped: MERIDIAN_TEST_REDIS_URL is not set)', () => {});
} else {
  cacheContract(
    'L1 + Redis',
    redisLayout(() => new Redis(redisUrl), true),
  );
  cacheContract(
    'Redis alone',
    redisLayout(() => new Redis(redisUrl), false),
  );
}

if (clusterNodes === undefined) {
  describe.skip('cache contract: Redis Cluster (skipped: MERIDIAN_TEST_REDIS_CLUSTER_NODES is not set; scripts/redis/cluster.sh env)', () => {});
} else {
  const startup = clusterNodes.split(',').map((node) => {
    const [host, port] = node.split(':');
    return { host: host!, port: Number(port) };
  });
  cacheContract(
    'L1 + Redis Cluster',
    redisLayout(() => new Cluster(startup), true),
  );
}
