// The commerce HTTP contract of issue 5, request by request, against a real server on a real port.

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../src/testing/index.ts';
import { fetchCharges } from './invariants.ts';
import { Order } from './order.ts';
import { openTestCommerce, type TestCommerce } from './test-fixture.ts';

describe('commerce HTTP contract', () => {
  let shop: TestCommerce;
  let keys = 0;
  const key = () => `contract-${++keys}`;

  beforeAll(async () => {
    shop = await openTestCommerce();
  });
  afterAll(async () => {
    await shop?.close();
  });

  async function place(body: unknown, idempotencyKey = key()) {
    return shop.request('POST', '/orders', body, { 'idempotency-key': idempotencyKey });
  }

  it('PUT /inventory/{sku} sets stock and price; GET reads available, reserved, sold and price', async () => {
    const put = await shop.request('PUT', '/inventory/apple', { available: 10, price: 2.5 });
    expect(put.status).toBe(200);
    expect(put.body).toEqual({ sku: 'apple', available: 10, reserved: 0, sold: 0, price: 2.5 });
    const get = await shop.request('GET', '/inventory/apple');
    expect(get.status).toBe(200);
    expect(get.body).toEqual({ sku: 'apple', available: 10, reserved: 0, sold: 0, price: 2.5 });
  });

  it('refuses invalid stock with problem details naming every invalid field', async () => {
    const bad = await shop.request('PUT', '/inventory/apple', { available: -1, price: 0 });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('content-type')).toContain('application/problem+json');
    expect(bad.body.type).toBe('urn:meridian:problem:validation-failed');
    expect(bad.body.errors.map((error: { pointer: string }) => error.pointer).sort()).toEqual([
      '/available',
      '/price',
    ]);
    const badSku = await shop.request('PUT', '/inventory/bad%20sku', { available: 1, price: 1 });
    expect(badSku.status).toBe(400);
    const unknown = await shop.request('GET', '/inventory/never-listed');
    expect(unknown.status).toBe(404);
    expect(unknown.body.detail).toContain('never-listed');
  });

  it('prices come from the cached catalog, and a price change reaches the next order at once', async () => {
    await shop.request('PUT', '/inventory/quince', { available: 9, price: 3 });
    const first = await place({ customerId: 'ada', items: [{ sku: 'quince', qty: 1 }] });
    const catalog = await shop.request('GET', '/catalog');
    expect(catalog.body).toEqual(
      expect.arrayContaining([expect.objectContaining({ sku: 'quince', price: 3 })]),
    );
    const before = (await shop.request('GET', '/policies')).body.policies['catalog-entries'];
    // Served from the cache: a second order for the SKU does not read the store again.
    await place({ customerId: 'ada', items: [{ sku: 'quince', qty: 1 }] });
    const after = (await shop.request('GET', '/policies')).body.policies['catalog-entries'];
    expect(after.hitsL1).toBeGreaterThan(before.hitsL1);
    expect(after.loads).toBe(before.loads);

    await shop.request('PUT', '/inventory/quince', { available: 9, price: 4 });
    const repriced = await place({ customerId: 'ada', items: [{ sku: 'quince', qty: 1 }] });
    await shop.settle([first.body.orderId, repriced.body.orderId]);
    expect((await shop.request('GET', `/orders/${repriced.body.orderId}`)).body.items).toEqual([
      { sku: 'quince', qty: 1, price: 4 },
    ]);
    expect((await shop.request('GET', '/catalog')).body).toEqual(
      expect.arrayContaining([expect.objectContaining({ sku: 'quince', price: 4 })]),
    );
  });

  it('POST /orders answers 202 pending at once; the order then confirms, charged once, and the customer is told', async () => {
    await shop.request('PUT', '/inventory/pear', { available: 5, price: 3 });
    const placed = await place({ customerId: 'ada', items: [{ sku: 'pear', qty: 2 }] });
    expect(placed.status).toBe(202);
    expect(placed.body).toEqual({ orderId: expect.stringMatching(/^ord-[0-9a-f]{24}$/), status: 'pending' });
    const { orderId } = placed.body;
    expect(placed.headers.get('location')).toBe(`/orders/${orderId}`);
    await shop.settle([orderId]);

    const order = await shop.request('GET', `/orders/${orderId}`);
    expect(order.status).toBe(200);
    expect(order.body).toMatchObject({
      orderId,
      customerId: 'ada',
      items: [{ sku: 'pear', qty: 2, price: 3 }],
      total: 6,
      status: 'confirmed',
      payment: { status: 'charged', chargeId: expect.any(String) },
    });
    expect(order.body.reason).toBeUndefined();
    expect(order.body.history.map((entry: { event: string }) => entry.event)).toEqual([
      'accepted',
      'placed',
      'stock reserved',
      'payment charged',
      'stock sold',
      'confirmed',
    ]);

    const stock = await shop.request('GET', '/inventory/pear');
    expect(stock.body).toEqual({ sku: 'pear', available: 3, reserved: 0, sold: 2, price: 3 });
    const charges = await shop.request('GET', `/payments/charges?orderId=${orderId}`);
    expect(charges.body).toEqual([
      { chargeId: order.body.payment.chargeId, orderId, amount: 6, status: 'charged' },
    ]);
    const notified = await waitFor(
      () => shop.request('GET', `/notifications?orderId=${orderId}`),
      (response) => response.body.length > 0,
    );
    expect(notified.body).toEqual([
      expect.objectContaining({ kind: 'order-confirmed', channel: 'email', to: 'ada', orderId }),
    ]);
  });

  it('requires an Idempotency-Key, validates the body, and refuses SKUs that are not listed', async () => {
    await shop.request('PUT', '/inventory/pear', { available: 5, price: 3 });
    const noKey = await shop.request('POST', '/orders', {
      customerId: 'ada',
      items: [{ sku: 'pear', qty: 1 }],
    });
    expect(noKey.status).toBe(400);
    expect(noKey.body.type).toBe('urn:meridian:problem:idempotency-key-missing');

    const badBody = await place({ customerId: '', items: [{ sku: 'pear', qty: 0 }] });
    expect(badBody.status).toBe(400);
    expect(badBody.body.errors.map((error: { pointer: string }) => error.pointer).sort()).toEqual([
      '/customerId',
      '/items/0/qty',
    ]);
    const noItems = await place({ customerId: 'ada', items: [] });
    expect(noItems.status).toBe(400);

    const unknownSku = await place({
      customerId: 'ada',
      items: [
        { sku: 'nope', qty: 1 },
        { sku: 'pear', qty: 1 },
      ],
    });
    expect(unknownSku.status).toBe(422);
    expect(unknownSku.body).toMatchObject({
      type: 'urn:meridian:problem:unknown-sku',
      unknownSkus: ['nope'],
    });
  });

  it('replays the first answer for the same key and body, and refuses the key with another body', async () => {
    await shop.request('PUT', '/inventory/plum', { available: 5, price: 1 });
    const body = { customerId: 'bob', items: [{ sku: 'plum', qty: 1 }] };
    const first = await place(body, 'same-key');
    const again = await place(body, 'same-key');
    expect(again.status).toBe(202);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    const other = await place({ ...body, customerId: 'eve' }, 'same-key');
    expect(other.status).toBe(422);
    expect(other.body.type).toBe('urn:meridian:problem:idempotency-key-reused');
    await shop.settle([first.body.orderId]);
  });

  it('cancels an order it cannot fill, with the reason, no charge, the stock untouched and the customer told', async () => {
    await shop.request('PUT', '/inventory/fig', { available: 1, price: 4 });
    await shop.request('PUT', '/inventory/kiwi', { available: 10, price: 1 });
    const placed = await place({
      customerId: 'cy',
      items: [
        { sku: 'kiwi', qty: 2 },
        { sku: 'fig', qty: 3 },
      ],
    });
    expect(placed.status).toBe(202);
    const { orderId } = placed.body;
    await shop.settle([orderId]);
    const order = await shop.request('GET', `/orders/${orderId}`);
    expect(order.body).toMatchObject({
      status: 'cancelled',
      reason: "out of stock: 'fig' has 1 available, 3 requested",
      payment: { status: 'none' },
    });
    expect(order.body.history.map((entry: { event: string }) => entry.event)).toEqual([
      'accepted',
      'placed',
      'stock reserved',
      'stock unavailable',
      'compensating',
      'stock released',
      'cancelled',
    ]);
    expect((await shop.request('GET', '/inventory/kiwi')).body).toMatchObject({
      available: 10,
      reserved: 0,
      sold: 0,
    });
    expect((await shop.request('GET', '/inventory/fig')).body).toMatchObject({
      available: 1,
      reserved: 0,
      sold: 0,
    });
    expect((await shop.request('GET', `/payments/charges?orderId=${orderId}`)).body).toEqual([]);
    const notified = await waitFor(
      () => shop.request('GET', `/notifications?orderId=${orderId}`),
      (response) => response.body.length > 0,
    );
    expect(notified.body[0]).toMatchObject({ kind: 'order-cancelled', to: 'cy' });
    expect(notified.body[0].message).toContain('out of stock');
    // The reason is made from data the order keeps, not parsed back out of a message.
    const stored = await shop.server.app.runtime.state(Order, orderId);
    expect(stored?.state.failure).toEqual({ code: 'out-of-stock', sku: 'fig', available: 1, requested: 3 });
  });

  it('cancels and explains an order whose payment fails, after retrying the charge', async () => {
    await shop.request('PUT', '/inventory/lime', { available: 3, price: 2 });
    expect((await shop.request('PUT', '/payments/settings', { failureRate: 1 })).body.failureRate).toBe(1);
    try {
      const placed = await place({ customerId: 'dan', items: [{ sku: 'lime', qty: 1 }] });
      await shop.settle([placed.body.orderId]);
      const order = await shop.request('GET', `/orders/${placed.body.orderId}`);
      expect(order.body).toMatchObject({
        status: 'cancelled',
        reason:
          'payment failed after 4 attempts: Payment gateway POST /charges answered 503: Simulated outage',
        payment: { status: 'failed' },
      });
      expect(order.body.history.map((entry: { event: string }) => entry.event)).toEqual([
        'accepted',
        'placed',
        'stock reserved',
        'payment failed',
        'no charge made',
        'compensating',
        'stock released',
        'cancelled',
      ]);
      expect((await shop.request('GET', '/inventory/lime')).body).toMatchObject({
        available: 3,
        reserved: 0,
      });
      const stored = await shop.server.app.runtime.state(Order, placed.body.orderId);
      expect(stored?.state.failure).toEqual({
        code: 'payment-failed',
        attempts: 4,
        cause: 'Payment gateway POST /charges answered 503: Simulated outage',
        causeCode: 'RETRYABLE',
      });
    } finally {
      await shop.request('PUT', '/payments/settings', { failureRate: 0 });
    }
  });

  it('refuses payment settings out of range', async () => {
    const bad = await shop.request('PUT', '/payments/settings', { failureRate: 2 });
    expect(bad.status).toBe(400);
    expect((await shop.request('GET', '/payments/settings')).body.failureRate).toBe(0);
  });

  it('GET /orders/{id} with Prefer: wait answers once the order ends (a long poll); wait=0 answers at once', async () => {
    await shop.request('PUT', '/inventory/plum', { available: 5, price: 1 });
    // The charge waits for the test, not for a latency: the order is pending for as long as the
    // test needs, however slow the machine, and ends only when the test lets it.
    const charges = holdCharges(shop);
    try {
      const placed = await place({ customerId: 'eve', items: [{ sku: 'plum', qty: 1 }] });
      const { orderId } = placed.body;
      await charges.started;
      const now = await shop.request('GET', `/orders/${orderId}`, undefined, { prefer: 'wait=0' });
      expect(now.body.status).toBe('pending');
      expect(now.headers.get('preference-applied')).toBe('wait=0');
      const waiting = longPollWaiting(shop, orderId);
      const polled = shop.request('GET', `/orders/${orderId}`, undefined, {
        prefer: 'respond-async, wait=30',
      });
      await waiting;
      charges.release();
      const ended = await polled;
      expect(ended.status).toBe(200);
      expect(ended.body.status).toBe('confirmed');
      expect(ended.body.payment.status).toBe('charged');
      expect(ended.headers.get('preference-applied')).toBe('wait=30');
      expect(ended.headers.get('vary')).toContain('prefer');
      // An ended order is answered at once, and without Prefer nothing is applied.
      const again = await shop.request('GET', `/orders/${orderId}`, undefined, { prefer: 'wait=30' });
      expect(again.body.status).toBe('confirmed');
      expect((await shop.request('GET', `/orders/${orderId}`)).headers.get('preference-applied')).toBeNull();
      const missing = await shop.request('GET', '/orders/ord-0000000000000001', undefined, {
        prefer: 'wait=30',
      });
      expect(missing.status).toBe(404);
    } finally {
      charges.release();
      charges.restore();
    }
  });

  it('GET /orders/{id} with Prefer: wait answers pending when the wait runs out first', async () => {
    // The long poll's bound runs on a manual clock and the charge waits for the test: the poll
    // can only answer when the test moves the clock, and the order cannot end before it.
    const clock = new ManualClock();
    const slow = await openTestCommerce({ app: { timers: clock } });
    const charges = holdCharges(slow);
    try {
      await slow.request('PUT', '/inventory/fig', { available: 5, price: 1 });
      const placed = await slow.request(
        'POST',
        '/orders',
        { customerId: 'fay', items: [{ sku: 'fig', qty: 1 }] },
        { 'idempotency-key': 'slow-1' },
      );
      const { orderId } = placed.body;
      await charges.started;
      const waiting = longPollWaiting(slow, orderId);
      let answered = false;
      const polled = slow.request('GET', `/orders/${orderId}`, undefined, { prefer: 'wait=1' });
      void polled.then(() => {
        answered = true;
      });
      await waiting;
      await clock.advanceAsync(999);
      expect(answered).toBe(false);
      await clock.advanceAsync(1);
      const pending = await polled;
      expect(pending.status).toBe(200);
      expect(pending.body.status).toBe('pending');
      expect(pending.headers.get('preference-applied')).toBe('wait=1');
      // Nothing but the order's end answers this one: its 30 s never pass on the manual clock.
      charges.release();
      const ended = await slow.request('GET', `/orders/${orderId}`, undefined, { prefer: 'wait=30' });
      expect(ended.body.status).toBe('confirmed');
    } finally {
      charges.release();
      await slow.close();
    }
  });

  it('answers a long poll at once when the app starts draining, instead of holding the drain up', async () => {
    // The charge waits for the test and the poll's 60 s run on a manual clock that never moves:
    // only the drain can answer the poll.
    const clock = new ManualClock();
    const slow = await openTestCommerce({ app: { timers: clock } });
    const charges = holdCharges(slow);
    let closed: Promise<void> | undefined;
    try {
      await slow.request('PUT', '/inventory/kiwi', { available: 5, price: 1 });
      const placed = await slow.request(
        'POST',
        '/orders',
        { customerId: 'gus', items: [{ sku: 'kiwi', qty: 1 }] },
        { 'idempotency-key': 'drain-1' },
      );
      const { orderId } = placed.body;
      await charges.started;
      const waiting = longPollWaiting(slow, orderId);
      const polled = slow.request('GET', `/orders/${orderId}`, undefined, { prefer: 'wait=60' });
      await waiting;
      closed = slow.server.app.close();
      const answer = await polled;
      expect(answer.status).toBe(200);
      expect(answer.body.status).toBe('pending');
      expect(answer.headers.get('preference-applied')).toBe('wait=60');
      // The drain waits for the running charge step (on the manual clock its deadline never
      // comes): let it finish.
      charges.release();
      await closed;
    } finally {
      charges.release();
      await closed;
      await slow.close();
    }
  });

  it('GET /orders pages orders by status; an unknown order is a 404 problem', async () => {
    // Its own server: the listing counts every order, so it must not depend on what the other
    // tests placed before it (nothing at all when it runs alone).
    const own = await openTestCommerce();
    try {
      await own.request('PUT', '/inventory/pear', { available: 10, price: 1 });
      await own.request('PUT', '/inventory/fig', { available: 1, price: 1 });
      const lines = [
        { sku: 'pear', qty: 1 },
        { sku: 'pear', qty: 1 },
        { sku: 'fig', qty: 3 },
        { sku: 'pear', qty: 1 },
        { sku: 'fig', qty: 2 },
      ];
      const placed = await Promise.all(
        lines.map((line, index) =>
          own.request(
            'POST',
            '/orders',
            { customerId: 'ivy', items: [line] },
            { 'idempotency-key': `page-${index}` },
          ),
        ),
      );
      const ids = placed.map((response) => response.body.orderId as string);
      await own.settle(ids);
      const sorted = (list: string[]) => [...list].sort();
      const confirmedIds = sorted(ids.filter((_, index) => lines[index]!.sku === 'pear'));
      const cancelledIds = sorted(ids.filter((_, index) => lines[index]!.sku === 'fig'));
      const idsOf = (orders: Array<{ orderId: string }>) => orders.map((order) => order.orderId);

      const confirmed = await own.request('GET', '/orders?status=confirmed&limit=1');
      expect(confirmed.status).toBe(200);
      expect(idsOf(confirmed.body.orders)).toEqual([confirmedIds[0]]);
      expect(confirmed.body.orders[0].status).toBe('confirmed');
      expect(confirmed.body.next).toBe(confirmedIds[0]);
      const rest = await own.request(
        'GET',
        `/orders?status=confirmed&limit=1000&after=${confirmed.body.next}`,
      );
      expect(idsOf(rest.body.orders)).toEqual(confirmedIds.slice(1));
      expect(rest.body.orders.every((order: { status: string }) => order.status === 'confirmed')).toBe(true);
      expect(rest.body.next).toBeNull();
      const cancelled = await own.request('GET', '/orders?status=cancelled');
      expect(idsOf(cancelled.body.orders)).toEqual(cancelledIds);
      expect(cancelled.body.orders.every((order: { status: string }) => order.status === 'cancelled')).toBe(
        true,
      );
      const all = await own.request('GET', '/orders');
      expect(idsOf(all.body.orders)).toEqual(sorted(ids));
      expect(all.body.next).toBeNull();
      expect((await own.request('GET', '/orders?status=lost')).status).toBe(400);
      const missing = await own.request('GET', '/orders/ord-0000000000000000');
      expect(missing.status).toBe(404);
      expect(missing.headers.get('content-type')).toContain('application/problem+json');
    } finally {
      await own.close();
    }
  });

  it('serves the catalog read model, probes, metrics and the OpenAPI document', async () => {
    // What it reads it makes first: a listed SKU, and an order confirmed and notified.
    await shop.request('PUT', '/inventory/apple', { available: 10, price: 2.5 });
    await shop.request('PUT', '/inventory/quince', { available: 5, price: 1 });
    const placed = await place({ customerId: 'hal', items: [{ sku: 'quince', qty: 1 }] });
    await shop.settle([placed.body.orderId]);
    await waitFor(
      () => shop.request('GET', `/notifications?orderId=${placed.body.orderId}`),
      (response) => response.body.length > 0,
    );
    const catalog = await shop.request('GET', '/catalog');
    expect(catalog.body).toContainEqual({ sku: 'apple', price: 2.5, available: 10, inStock: true });
    const ready = await shop.request('GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(Object.keys(ready.body.checks).sort()).toEqual(['accepting', 'runtime', 'store']);
    expect((await shop.request('GET', '/healthz')).status).toBe(200);
    const metrics = await (await fetch(`${shop.url}/metrics`, { headers: shop.operatorHeaders })).text();
    expect(metrics).toContain('meridian_http_requests_total');
    // The runtime's own figures, read at the scrape: the orders above went through the group
    // commit (several units per transaction at best, never more transactions than units) and
    // the notification subscription.
    const sample = (series: string) => {
      const match = new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(metrics);
      expect(match, series).not.toBeNull();
      return Number(match![1]);
    };
    const units = sample('meridian_runtime_commit_units_total');
    const transactions = sample('meridian_runtime_commit_transactions_total');
    expect(transactions).toBeGreaterThan(0);
    expect(units).toBeGreaterThanOrEqual(transactions);
    expect(sample('meridian_runtime_commit_failed_transactions_total')).toBe(0);
    expect(sample('meridian_runtime_subscription_handled_total{subscription="notify"}')).toBeGreaterThan(0);
    expect(sample('meridian_runtime_subscription_dead_lettered_total{subscription="notify"}')).toBe(0);
    expect(sample('meridian_runtime_sagas{state="queued"}')).toBe(0);
    expect(() => shop.server.app.gateway.exposeRuntime(shop.server.app.runtime)).toThrow(
      /already exposes a runtime/,
    );
    const openapi = await shop.request('GET', '/openapi.json');
    expect(Object.keys(openapi.body.paths)).toEqual(
      expect.arrayContaining([
        '/inventory/{sku}',
        '/orders',
        '/orders/{orderId}',
        '/payments/charges',
        '/notifications',
      ]),
    );
  });

  it('turns not ready as soon as the runtime stops', async () => {
    const other = await openTestCommerce();
    try {
      await other.server.app.runtime.stop();
      const ready = await other.request('GET', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.checks.runtime.status).toBe('fail');
    } finally {
      await other.close();
    }
  });

  it('GET /payments/charges without orderId answers a page: limit, after, and Next-Cursor while more follow', async () => {
    await shop.request('PUT', '/inventory/plum', { available: 10, price: 1.5 });
    const placed = await Promise.all(
      [1, 2, 3].map(() => place({ customerId: 'cy', items: [{ sku: 'plum', qty: 1 }] })),
    );
    const orderIds = placed.map((response) => response.body.orderId as string);
    await shop.settle(orderIds);

    const seen: Array<{ chargeId: string; orderId: string }> = [];
    let after: string | null = null;
    for (let pages = 0; pages < 100; pages += 1) {
      const page = await shop.request(
        'GET',
        `/payments/charges?limit=2${after === null ? '' : `&after=${after}`}`,
      );
      expect(page.status).toBe(200);
      expect(Array.isArray(page.body)).toBe(true);
      expect(page.body.length).toBeLessThanOrEqual(2);
      seen.push(...page.body);
      after = page.headers.get('next-cursor');
      if (after === null) break;
      expect(after).toBe(page.body[page.body.length - 1].chargeId);
    }
    expect(after).toBeNull();
    expect(new Set(seen.map((charge) => charge.chargeId)).size).toBe(seen.length);
    for (const orderId of orderIds) {
      const ofOrder = await shop.request('GET', `/payments/charges?orderId=${orderId}`);
      expect(ofOrder.headers.get('next-cursor')).toBeNull();
      expect(ofOrder.body).toEqual([
        { chargeId: expect.any(String), orderId, amount: 1.5, status: 'charged' },
      ]);
      expect(seen).toContainEqual(ofOrder.body[0]);
    }
    const everything = await shop.request('GET', '/payments/charges?limit=1000');
    expect(everything.body).toEqual(seen);
    expect(await fetchCharges(shop.url, { pageSize: 2, headers: shop.operatorHeaders })).toEqual(seen);

    const badLimit = await shop.request('GET', '/payments/charges?limit=0');
    expect(badLimit.status).toBe(400);
    expect(badLimit.body.errors.map((error: { pointer: string }) => error.pointer)).toEqual(['limit']);
    const withOrder = await shop.request('GET', `/payments/charges?orderId=${orderIds[0]}&after=x`);
    expect(withOrder.status).toBe(400);
    expect(withOrder.headers.get('content-type')).toContain('application/problem+json');
    expect(withOrder.body.errors.map((error: { pointer: string }) => error.pointer)).toEqual(['after']);
    const unknownCursor = await shop.request('GET', '/payments/charges?after=ch_99999999');
    expect(unknownCursor.status).toBe(400);
    expect(unknownCursor.body.detail).toContain("'after' must name a charge");
  });
});

/**
 * Holds every charge the app sends to the payment gateway until `release` (then sends it): an
 * order stays pending, at its charge step, exactly as long as the test wants. `started`
 * resolves when the first charge arrives.
 */
function holdCharges(shop: TestCommerce) {
  const payments = shop.server.payments;
  const charge = payments.charge.bind(payments);
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let arrived!: () => void;
  const started = new Promise<void>((resolve) => {
    arrived = resolve;
  });
  const spy = vi.spyOn(payments, 'charge').mockImplementation(async (request, options) => {
    arrived();
    await released;
    return charge(request, options);
  });
  return { started, release: () => release(), restore: () => spy.mockRestore() };
}

/**
 * Resolves once a long poll on `orderId` waits on the order's saga (the route asks the runtime
 * for the saga's result only after it has armed its timer and its drain listener): an event,
 * not a guess at how long the request takes to arrive.
 */
function longPollWaiting(shop: TestCommerce, orderId: string): Promise<void> {
  const runtime = shop.server.app.runtime;
  const handle = runtime.handle.bind(runtime);
  return new Promise((resolve) => {
    const spy = vi.spyOn(runtime, 'handle').mockImplementation((id: string) => {
      const found = handle(id);
      if (id !== orderId) return found;
      return {
        ...found,
        result: (options?: { signal?: AbortSignal }) => {
          const result = found.result(options);
          if (options?.signal !== undefined) {
            spy.mockRestore();
            resolve();
          }
          return result;
        },
      };
    });
  });
}

/** Polls (bounded) for an effect of an asynchronous subscription. */
async function waitFor<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
