import { describe, expect, it } from 'vitest';
import type { RuntimeView } from '../../src/index.ts';
import { listOrders, maxOrdersScanned, orderIdFor } from './order-view.ts';

/** Orders in id order, as the Order entities list: `customers[i]` placed the i-th. */
function view(customers: readonly string[]): Pick<RuntimeView, 'list'> {
  const start = Date.UTC(2026, 11, 7);
  const orders = customers.map((customerId, index) => ({
    // Several orders share a millisecond, as under load.
    id: orderIdFor('p', `k${index}`, start + Math.floor(index / 4)),
    version: 1,
    updatedAt: start,
    state: { customerId, status: 'confirmed', total: 1, items: [], placedAt: start, reason: null },
  }));
  orders.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return {
    list: (async (_entity: unknown, options: { limit: number; afterId?: string }) =>
      orders
        .filter((order) => options.afterId === undefined || order.id > options.afterId)
        .slice(0, options.limit)) as never,
  };
}

describe('listOrders', () => {
  it("a customer's next page goes on from where the bound stopped without naming another customer's order", async () => {
    // Ada's orders are far apart: a request reads its bound of orders between two of them.
    const customers = Array.from({ length: maxOrdersScanned * 2 + 10 }, (_, index) =>
      index === 3 || index === maxOrdersScanned * 2 + 5 ? 'ada' : 'bob',
    );
    const orders = view(customers);
    const all = (await orders.list(null as never, { limit: 100_000 })) as unknown as Array<{ id: string }>;
    const others = new Set(all.filter((_, index) => customers[index] !== 'ada').map((order) => order.id));
    const seen: string[] = [];
    let after: string | undefined;
    for (let request = 0; request < 10; request++) {
      const page = await listOrders(orders, {
        customerId: 'ada',
        limit: 50,
        ...(after === undefined ? {} : { after }),
      });
      seen.push(...page.orders.map((order) => order.orderId));
      if (page.next === null) break;
      expect(others.has(page.next)).toBe(false);
      after = page.next;
    }
    // Both of Ada's orders, once each, and the listing ended.
    expect(seen).toHaveLength(2);
    expect(new Set(seen).size).toBe(2);
  });

  it("an operator's listing goes on from the last order read", async () => {
    const orders = view(Array.from({ length: maxOrdersScanned + 10 }, () => 'bob'));
    const page = await listOrders(orders, { status: 'cancelled', limit: 10 });
    expect(page.orders).toEqual([]);
    expect(page.next).toMatch(/^ord-[0-9a-f]{24}$/);
  });
});
