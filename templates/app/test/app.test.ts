// The app end to end: real HTTP, a real SQLite file, and a restart on the same file.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from 'meridian/testing';
import app from '../src/app.ts';
import { payments } from '../src/payments.ts';

interface Order {
  orderId: string;
  status: string;
  reason: string | null;
}
interface StockView {
  stock: { available: number; reserved: number };
  sales: { units: number; revenueCents: number };
}

let running: TestApp;
/** An operator's bearer token, signed with the secret the app keeps in its data directory. */
let token: string;

async function call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
  const response = await fetch(`${running.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, json: (await response.json()) as T };
}

/** Re-reads until `done` holds: the sales subscription runs after the saga's commit, not inside it. */
async function eventually<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('{{name}}', () => {
  before(async () => {
    running = await startTestApp(app);
    token = await running.devAuth!.issue('test-operator', 'operator');
    await call('POST', '/stock/lamp/restock', { qty: 5 });
  });
  after(() => running.destroy());

  it('an order reserves stock, charges once and is tallied by the sales subscription', async () => {
    assert.equal(
      (await call('PUT', '/orders/order-1', { sku: 'lamp', qty: 2, amountCents: 4_500 })).status,
      202,
    );
    // Placing the same order again changes nothing.
    assert.equal(
      (await call('PUT', '/orders/order-1', { sku: 'lamp', qty: 2, amountCents: 4_500 })).status,
      202,
    );
    const order = await call<Order>('GET', '/orders/order-1?waitMs=10000');
    assert.equal(order.json.status, 'completed');
    const charges = [...payments.charges.values()].filter((charge) => charge.amountCents === 4_500);
    assert.equal(charges.length, 1);
    const view = await eventually(
      () => call<StockView>('GET', '/stock/lamp'),
      (read) => read.json.sales.units > 0,
    );
    assert.deepEqual(view.json, {
      stock: { available: 3, reserved: 2 },
      sales: { units: 2, revenueCents: 4_500 },
    });
  });

  it('a declined charge compensates: the stock reservation is released', async () => {
    await call('PUT', '/orders/order-2', { sku: 'lamp', qty: 1, amountCents: 500_000 });
    const order = await call<Order>('GET', '/orders/order-2?waitMs=10000');
    assert.equal(order.json.status, 'compensated');
    assert.match(order.json.reason ?? '', /card declined/);
    assert.deepEqual((await call<StockView>('GET', '/stock/lamp')).json.stock, { available: 3, reserved: 2 });
  });

  it('bad input is refused with 400 and starts nothing', async () => {
    const refused = await call('PUT', '/orders/order-3', { sku: 'lamp', qty: 0, amountCents: 100 });
    assert.equal(refused.status, 400);
    assert.equal((await call('GET', '/orders/order-3')).status, 404);
  });

  it('state and orders survive a restart on the same data directory', async () => {
    running = await running.restart();
    assert.deepEqual((await call<StockView>('GET', '/stock/lamp')).json.stock, { available: 3, reserved: 2 });
    assert.equal((await call<Order>('GET', '/orders/order-1')).json.status, 'completed');
  });
});
