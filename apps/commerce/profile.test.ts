// Customer profiles and the catalog read through the cache with automatic invalidation (issue
// 17): a profile update is what the next read answers, on the embedded shape, without the route
// invalidating anything itself; a customer reads and writes only its own profile; and the
// catalog's entries survive the reservations that only move the available count, but not a
// sell-out or a price change.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Inventory } from './inventory.ts';
import { openTestCommerce, type TestCommerce } from './test-fixture.ts';

describe('commerce profiles and catalog through the bound caches', () => {
  let shop: TestCommerce;
  let ada: Record<string, string>;
  let bob: Record<string, string>;
  beforeAll(async () => {
    shop = await openTestCommerce();
    ada = { authorization: `Bearer ${await shop.token('ada', 'customer')}` };
    bob = { authorization: `Bearer ${await shop.token('bob', 'customer')}` };
  });
  afterAll(async () => {
    await shop?.close();
  });

  it('serves a profile from the cache and never an old one after an update', async () => {
    const profiles = shop.server.app.profiles.cache;
    expect((await shop.request('GET', '/customers/ada/profile', undefined, ada)).status).toBe(404);
    const first = await shop.request(
      'PUT',
      '/customers/ada/profile',
      { name: 'Ada', email: 'ada@example.com' },
      ada,
    );
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ customerId: 'ada', name: 'Ada', email: 'ada@example.com', version: 1 });
    const hits = profiles.snapshot().hitsL1;
    for (let read = 0; read < 3; read++) {
      expect((await shop.request('GET', '/customers/ada/profile', undefined, ada)).body.name).toBe('Ada');
    }
    expect(profiles.snapshot().hitsL1).toBe(hits + 3);
    for (let update = 2; update <= 5; update++) {
      const name = `Ada ${update}`;
      expect(
        (await shop.request('PUT', '/customers/ada/profile', { name, email: 'ada@example.com' }, ada)).body,
      ).toMatchObject({ name, version: update });
      expect((await shop.request('GET', '/customers/ada/profile', undefined, ada)).body).toMatchObject({
        name,
        version: update,
      });
    }
  });

  it("keeps another customer's profile hidden and unwritable, and refuses bad input", async () => {
    await shop.request('PUT', '/customers/ada/profile', { name: 'Ada', email: 'ada@example.com' }, ada);
    expect((await shop.request('GET', '/customers/ada/profile', undefined, bob)).status).toBe(404);
    const write = await shop.request(
      'PUT',
      '/customers/ada/profile',
      { name: 'Mallory', email: 'm@example.com' },
      bob,
    );
    expect(write.status).toBe(403);
    expect(write.body.detail).toContain("the path names customer 'ada'");
    const bad = await shop.request(
      'PUT',
      '/customers/bob/profile',
      { name: 'Bob', email: 'no-at-sign' },
      bob,
    );
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain('/email');
    expect((await shop.request('GET', '/customers/ada/profile', undefined, ada)).body.name).toBe('Ada');
  });

  it('keeps a catalog entry through reservations that leave the SKU in stock, and drops it on a sell-out or a price change', async () => {
    const { runtime, catalog } = shop.server.app;
    expect((await shop.request('PUT', '/inventory/bound-1', { available: 3, price: 4 })).status).toBe(200);
    expect(await catalog.entry('bound-1')).toMatchObject({ price: 4, available: 3, inStock: true });
    await runtime.send(Inventory, 'bound-1', 'reserve', { orderId: 'o-1', qty: 1 });
    await runtime.send(Inventory, 'bound-1', 'reserve', { orderId: 'o-2', qty: 1 });
    // Still in stock: the entry stays (its available count lags, as documented).
    expect(catalog.entries.peek('bound-1')).toMatchObject({ available: 3, inStock: true });
    await runtime.send(Inventory, 'bound-1', 'reserve', { orderId: 'o-3', qty: 1 });
    expect(catalog.entries.peek('bound-1')).toBeUndefined();
    expect(await catalog.entry('bound-1')).toMatchObject({ available: 0, inStock: false });
    const page = await catalog.page(100);
    expect(page.find((entry) => entry.sku === 'bound-1')).toMatchObject({ inStock: false });
    await shop.request('PUT', '/inventory/bound-1', { available: 3, price: 5 });
    expect(catalog.entries.peek('bound-1')).toBeUndefined();
    expect((await catalog.page(100)).find((entry) => entry.sku === 'bound-1')).toMatchObject({ price: 5 });
  });
});
