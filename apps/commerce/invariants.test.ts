// The commerce invariants under stress: contention for the last units, one key sent many times,
// and a payment gateway that fails, hangs and loses responses.
import { afterEach, describe, expect, it } from 'vitest';
import { auditCommerce, collectAudit } from './invariants.ts';
import { openTestCommerce, type TestCommerce } from './test-fixture.ts';

describe('commerce invariants', () => {
  let shop: TestCommerce | undefined;
  afterEach(async () => {
    await shop?.close();
    shop = undefined;
  });

  it('sells exactly 50 units to 200 concurrent orders for them; available never goes negative; every order ends', async () => {
    shop = await openTestCommerce();
    const open = shop;
    await open.request('PUT', '/inventory/last-units', { available: 50, price: 10 });

    let sampling = true;
    let lowest = Number.POSITIVE_INFINITY;
    const sampler = (async () => {
      while (sampling) {
        const stock = await open.request('GET', '/inventory/last-units');
        lowest = Math.min(lowest, stock.body.available, stock.body.reserved, stock.body.sold);
      }
    })();
    const placed = await Promise.all(
      Array.from({ length: 200 }, (_, index) =>
        open.request(
          'POST',
          '/orders',
          { customerId: `c${index}`, items: [{ sku: 'last-units', qty: 1 }] },
          { 'idempotency-key': `rush-${index}` },
        ),
      ),
    );
    expect(placed.map((response) => response.status)).toEqual(Array(200).fill(202));
    await open.settle(placed.map((response) => response.body.orderId));
    sampling = false;
    await sampler;

    const snapshot = await collectAudit(open.url, ['last-units'], open.operatorHeaders);
    const report = auditCommerce({ ...snapshot, initialStock: { 'last-units': 50 } });
    expect(report.violations).toEqual([]);
    expect(lowest).toBeGreaterThanOrEqual(0);
    expect(snapshot.stock[0]).toEqual({ sku: 'last-units', available: 0, reserved: 0, sold: 50, price: 10 });
    expect(report).toMatchObject({ confirmed: 50, cancelled: 150, pending: 0, charges: 50 });
  });

  it('places one order and charges once for one key sent many times, concurrently and after', async () => {
    shop = await openTestCommerce();
    const open = shop;
    await open.request('PUT', '/inventory/gadget', { available: 100, price: 7 });
    const body = { customerId: 'ada', items: [{ sku: 'gadget', qty: 3 }] };
    const send = () => open.request('POST', '/orders', body, { 'idempotency-key': 'checkout-42' });

    const burst = await Promise.all(Array.from({ length: 30 }, send));
    // The first reserves the key; the rest see it in flight (409) or its stored answer (202).
    expect(burst.every((response) => response.status === 202 || response.status === 409)).toBe(true);
    const accepted = burst.filter((response) => response.status === 202);
    expect(accepted.length).toBeGreaterThanOrEqual(1);
    const orderId = accepted[0]!.body.orderId;
    expect(new Set(accepted.map((response) => response.body.orderId))).toEqual(new Set([orderId]));
    await open.settle([orderId]);
    for (let retry = 0; retry < 10; retry++) {
      const again = await send();
      expect(again.status).toBe(202);
      expect(again.body.orderId).toBe(orderId);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
    }

    const snapshot = await collectAudit(open.url, ['gadget'], open.operatorHeaders);
    expect(auditCommerce({ ...snapshot, initialStock: { gadget: 100 } }).violations).toEqual([]);
    expect(snapshot.orders.map((order) => order.orderId)).toEqual([orderId]);
    expect(snapshot.charges).toEqual([
      { chargeId: expect.any(String), orderId, amount: 21, status: 'charged' },
    ]);
    expect(snapshot.stock[0]).toMatchObject({ available: 97, sold: 3 });
  });

  it('never charges an order twice, refunds every cancelled charge and charges every confirmed order once, whatever the gateway does', async () => {
    shop = await openTestCommerce({
      paymentSeed: 7,
      payment: { failureRate: 0.3, lostResponseRate: 0.3, timeoutRate: 0.05 },
    });
    const open = shop;
    const skus = ['bolt', 'nut', 'gear', 'rare'];
    const initialStock: Record<string, number> = { bolt: 1000, nut: 1000, gear: 1000, rare: 15 };
    for (const sku of skus) {
      await open.request('PUT', `/inventory/${sku}`, {
        available: initialStock[sku],
        price: 1 + skus.indexOf(sku),
      });
    }
    const placed = await Promise.all(
      Array.from({ length: 150 }, (_, index) =>
        open.request(
          'POST',
          '/orders',
          {
            customerId: `c${index % 17}`,
            items: [
              { sku: skus[index % 3]!, qty: 1 + (index % 2) },
              { sku: index % 5 === 0 ? 'rare' : skus[(index + 1) % 3]!, qty: 1 },
            ],
          },
          { 'idempotency-key': `faulty-${index}` },
        ),
      ),
    );
    expect(placed.every((response) => response.status === 202)).toBe(true);
    await open.settle(placed.map((response) => response.body.orderId));

    const snapshot = await collectAudit(open.url, skus, open.operatorHeaders);
    const report = auditCommerce({ ...snapshot, initialStock });
    expect(report.violations).toEqual([]);
    expect(report.confirmed + report.cancelled).toBe(150);
    // The faults did bite: some payments failed for good, and some charges whose response was
    // lost on every attempt were found by the lookup and refunded.
    expect(report.cancelled).toBeGreaterThan(0);
    expect(report.refunded).toBeGreaterThan(0);
    const refunds = (await (
      await fetch(`${open.server.paymentUrl}/refunds?limit=1000`, {
        headers: { authorization: `Bearer ${open.server.paymentApiKey}` },
      })
    ).json()) as unknown[];
    expect(refunds.length).toBe(report.refunded);
  });
  it("refunds charges that land after every attempt timed out, by settling them with the charge's own key", async () => {
    // The gateway answers after 400 ms, the app gives up on a call after 150 ms: every charge
    // attempt times out, and the gateway records the charge later anyway. A lookup right after
    // the failure finds nothing; only the key can settle it.
    shop = await openTestCommerce({
      payment: { latencyMs: 400 },
      app: {
        orders: {
          chargeRetry: { maxAttempts: 2, initialDelayMs: 1, maxDelayMs: 5 },
          paymentCallTimeoutMs: 150,
        },
      },
    });
    const open = shop;
    await open.request('PUT', '/inventory/slow', { available: 100, price: 3 });
    const placed = await Promise.all(
      Array.from({ length: 8 }, (_, index) =>
        open.request(
          'POST',
          '/orders',
          { customerId: `c${index}`, items: [{ sku: 'slow', qty: 1 }] },
          { 'idempotency-key': `slow-${index}` },
        ),
      ),
    );
    const orderIds: string[] = placed.map((response) => response.body.orderId);
    // Wait until every charge step gave up, then heal the gateway so the settling can end. No
    // poll budget: healing early lets a retry succeed and fails the test for the wrong reason, so
    // only the test's own timeout bounds this.
    for (const orderId of orderIds) {
      for (;;) {
        const order = await open.request('GET', `/orders/${orderId}`);
        if (order.body.history.some((entry: { event: string }) => entry.event === 'payment failed')) break;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    }
    await open.request('PUT', '/payments/settings', { latencyMs: 0 });
    await open.settle(orderIds);

    const snapshot = await collectAudit(open.url, ['slow'], open.operatorHeaders);
    const report = auditCommerce({ ...snapshot, initialStock: { slow: 100 } });
    expect(report.violations).toEqual([]);
    expect(report).toMatchObject({ confirmed: 0, cancelled: 8, charges: 8, refunded: 8 });
    const order = await open.request('GET', `/orders/${orderIds[0]}`);
    expect(order.body.payment.status).toBe('refunded');
    // Settled by the key (or found by a later lookup, once the late charge had landed), then refunded.
    expect(order.body.history.map((entry: { event: string }) => entry.event)).toContain('payment refunded');
  });
});

describe('the invariant checker', () => {
  const order = (orderId: string, status: 'pending' | 'confirmed' | 'cancelled', qty = 1) => ({
    orderId,
    status,
    total: qty * 2,
    items: [{ sku: 's', qty }],
  });

  it('reports a double charge, an unrefunded cancellation, an uncharged confirmation and oversold stock', () => {
    const report = auditCommerce({
      orders: [
        order('a', 'confirmed'),
        order('b', 'cancelled'),
        order('c', 'confirmed'),
        order('d', 'pending'),
      ],
      charges: [
        { chargeId: 'ch1', orderId: 'a', amount: 2, status: 'charged' },
        { chargeId: 'ch2', orderId: 'a', amount: 2, status: 'charged' },
        { chargeId: 'ch3', orderId: 'b', amount: 2, status: 'charged' },
        { chargeId: 'ch4', orderId: 'zz', amount: 2, status: 'refunded' },
      ],
      stock: [{ sku: 's', available: -1, reserved: 0, sold: 2 }],
      initialStock: { s: 5 },
    });
    expect(report.violations).toEqual([
      'order a was charged 2 times: ch1, ch2',
      'confirmed order a has 2 charge(s), 2 not refunded (expected exactly one)',
      'cancelled order b has an unrefunded charge: ch3',
      'confirmed order c has 0 charge(s), 0 not refunded (expected exactly one)',
      'order d is still pending',
      'charge ch4 is for unknown order zz',
      'SKU s has available -1',
      'SKU s accounts for 1 units (available -1 + reserved 0 + sold 2) of the 5 it was stocked with',
    ]);
  });

  it('checks sold units against confirmed orders once nothing is pending', () => {
    const report = auditCommerce({
      orders: [order('a', 'confirmed', 2)],
      charges: [{ chargeId: 'ch1', orderId: 'a', amount: 4, status: 'charged' }],
      stock: [{ sku: 's', available: 3, reserved: 1, sold: 1 }],
    });
    expect(report.violations).toEqual([
      'SKU s sold 1 units but its confirmed orders hold 2',
      'SKU s still has 1 units reserved with no order pending',
    ]);
  });
});
