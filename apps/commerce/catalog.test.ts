// The catalog read model as two nodes of the cluster shape see it: each node's catalog has its
// own Redis client and invalidation bus on one Redis, as `commerce node --redis` sets them up. A
// price change committed reaches both nodes' in-process copies at once, and what one node loaded
// the other reads from Redis instead of the store.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisInvalidationBus, redisTier } from '../../src/cache/index.ts';
import { Catalog } from './catalog.ts';
import { Inventory } from './inventory.ts';
import { openTestCommerce, type TestCommerce } from './test-fixture.ts';

const redisUrl = process.env.MERIDIAN_TEST_REDIS_URL;

describe.skipIf(redisUrl === undefined)('commerce catalog shared in Redis by two nodes', () => {
  let shop: TestCommerce;
  const closers: (() => unknown)[] = [];

  beforeAll(async () => {
    shop = await openTestCommerce();
  });
  afterAll(async () => {
    for (const close of closers.splice(0)) await close();
    await shop?.close();
  });

  async function node(keyPrefix: string, channel: string): Promise<Catalog> {
    const redis = new Redis(redisUrl!);
    const invalidation = redisInvalidationBus({ redis, channel });
    await invalidation.ready();
    const catalog = new Catalog(shop.server.app.runtime, {
      ttlMs: 60_000,
      l2: redisTier({ redis, keyPrefix }),
      invalidation,
    });
    closers.push(
      () => catalog.close(),
      () => invalidation.close(),
      () => redis.disconnect(),
    );
    return catalog;
  }

  it('a price change through one node reaches the other at once; a load on one serves both', async () => {
    const keyPrefix = `meridian:test:catalog:${randomUUID()}:`;
    const channel = `meridian:test:catalog:${randomUUID()}`;
    const [a, b] = [await node(keyPrefix, channel), await node(keyPrefix, channel)];
    const runtime = shop.server.app.runtime;
    const probe = new Redis(redisUrl!);
    closers.push(() => probe.disconnect());
    const kind = () => probe.hget(`${keyPrefix}catalog-entries:shared-1`, 'k');
    await runtime.send(Inventory, 'shared-1', 'set', { available: 5, price: 10 });
    // Listing the SKU is a change the catalog shows: the commit left a tombstone in Redis.
    await expect.poll(kind).toBe('t');

    expect(await a.entry('shared-1')).toMatchObject({ price: 10 });
    // a's load reaches Redis just behind its answer; then b finds it there: no second store read.
    await expect.poll(kind).toBe('v');
    expect((await b.entry('shared-1'))?.price).toBe(10);
    expect(b.stats.entries.hitsL2).toBeGreaterThanOrEqual(1);
    expect(b.stats.entries.loads).toBe(0);

    // The price changes: the commit invalidates the entry (the catalogs are bound to the
    // runtime's committed changes) before the send resolves, and tells the other node through
    // Redis. (Both catalogs here share one runtime; src/cache/entity-binding.cluster.test.ts has
    // two cluster nodes, where only the entity's owner reports the change.)
    await runtime.send(Inventory, 'shared-1', 'set', { available: 5, price: 12 });
    expect((await a.entry('shared-1'))?.price).toBe(12);
    expect((await b.entry('shared-1'))?.price).toBe(12);
    await expect
      .poll(() => b.stats.entries.invalidationsReceived, { timeout: 5000 })
      .toBeGreaterThanOrEqual(1);
  });
});
