import { entity } from '../../src/index.ts';

/** A line of an order, priced when the order was placed. */
export interface OrderItem {
  readonly sku: string;
  readonly qty: number;
  /** Unit price quoted from the catalog when the order was accepted. */
  readonly price: number;
}

export type OrderStatus = 'pending' | 'confirmed' | 'cancelled';

/**
 * The order as a keyed entity: the one writer of its business status, and the source of the
 * events customers hear about (`Order.events`, consumed by the notification subscription).
 * The order saga drives it; nothing else sends it commands.
 */
export interface OrderState {
  readonly orderId: string;
  readonly customerId: string;
  readonly total: number;
  readonly status: OrderStatus | 'new';
  /** Why the order is being cancelled, once a step failed for good. */
  readonly reason: string | null;
  readonly chargeId: string | null;
}

/** Events of `Order.events`, keyed by order id. */
export type OrderEvent =
  | {
      readonly type: 'OrderConfirmed';
      readonly orderId: string;
      readonly customerId: string;
      readonly total: number;
      readonly chargeId: string;
    }
  | {
      readonly type: 'OrderCancelled';
      readonly orderId: string;
      readonly customerId: string;
      readonly total: number;
      readonly reason: string;
    };

export const Order = entity('Order', {
  initial: (orderId: string): OrderState => ({
    orderId,
    customerId: '',
    total: 0,
    status: 'new',
    reason: null,
    chargeId: null,
  }),
  commands: {
    /** The saga's first step. Its compensation (`cancel`) runs last, after stock and money are back. */
    place(state, input: { customerId: string; total: number }) {
      if (state.status !== 'new') return { reply: { status: state.status } };
      return {
        state: { ...state, customerId: input.customerId, total: input.total, status: 'pending' as const },
        reply: { status: 'pending' },
      };
    },

    /** Remembers why the order cannot go through, for the cancellation that follows. */
    fail(state, input: { reason: string }) {
      if (state.status !== 'pending') return { reply: { status: state.status } };
      return { state: { ...state, reason: input.reason }, reply: { status: state.status } };
    },

    confirm(state, input: { chargeId: string }) {
      if (state.status !== 'pending') return { reply: { status: state.status } };
      const event: OrderEvent = {
        type: 'OrderConfirmed',
        orderId: state.orderId,
        customerId: state.customerId,
        total: state.total,
        chargeId: input.chargeId,
      };
      return {
        state: { ...state, status: 'confirmed' as const, chargeId: input.chargeId },
        events: [event],
        reply: { status: 'confirmed' },
      };
    },

    cancel(state) {
      if (state.status !== 'pending') return { reply: { status: state.status } };
      const reason = state.reason ?? 'cancelled';
      const event: OrderEvent = {
        type: 'OrderCancelled',
        orderId: state.orderId,
        customerId: state.customerId,
        total: state.total,
        reason,
      };
      return {
        state: { ...state, status: 'cancelled' as const, reason },
        events: [event],
        reply: { status: 'cancelled' },
      };
    },
  },
});
