// The Order entity's types and reasons: its events are what EntityEvent derives from its
// commands, and a cancellation keeps why as data, with the sentence made from it.
import { describe, expect, expectTypeOf, it } from 'vitest';
import type { EntityEvent, EntityState } from '../../src/index.ts';
import { Order, type OrderEvent, type OrderState, orderFailureOf, reasonOf } from './order.ts';

describe('Order', () => {
  it('has the events and state types its definition declares', () => {
    expectTypeOf<EntityEvent<typeof Order>>().toEqualTypeOf<OrderEvent>();
    expectTypeOf<EntityState<typeof Order>>().toEqualTypeOf<OrderState>();
  });

  it('cancels with the failure as data, its event carrying both the failure and the sentence', () => {
    const placed = Order.commands.place(
      Order.initialState('o-1'),
      { customerId: 'ada', total: 5, items: [{ sku: 'fig', qty: 3, price: 5 / 3 }] },
      { entity: 'Order', id: 'o-1', version: 0, nowMs: 1000 },
    );
    const failure = { code: 'out-of-stock', sku: 'fig', available: 1, requested: 3 } as const;
    const cancelled = Order.commands.cancel(placed.state!, { failure });
    expect(cancelled.state).toMatchObject({ status: 'cancelled', failure, reason: reasonOf(failure) });
    expect(cancelled.events?.[0]).toMatchObject({
      type: 'OrderCancelled',
      failure,
      reason: "out of stock: 'fig' has 1 available, 3 requested",
    });
  });

  it("reads a saga failure's details as the order's failure, and anything else as an error", () => {
    const details = { code: 'unknown-sku', sku: 'yam' };
    expect(orderFailureOf({ message: "unknown SKU 'yam'", details })).toEqual(details);
    expect(orderFailureOf({ message: 'boom', details: { step: 'x' } })).toEqual({
      code: 'error',
      message: 'boom',
    });
    expect(reasonOf({ code: 'payment-failed', attempts: 1, cause: 'declined', causeCode: null })).toBe(
      'payment failed: declined',
    );
  });
});
