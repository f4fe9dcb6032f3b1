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
 * Why an order was cancelled, as data: what the saga's failure carried (the TerminalError it
 * threw, whose `details` are this), kept on the order and in its OrderCancelled event. `reason`
 * (reasonOf) is the sentence made from it, for people.
 */
export type OrderFailure =
  | {
      readonly code: 'out-of-stock';
      readonly sku: string;
      readonly available: number;
      readonly requested: number;
    }
  | { readonly code: 'unknown-sku'; readonly sku: string }
  | {
      readonly code: 'payment-failed';
      /** Attempts of the charge step. */
      readonly attempts: number;
      /** What the last attempt's error said (the gateway's answer, a timeout). */
      readonly cause: string;
      readonly causeCode: string | null;
    }
  /** Anything else the saga failed with. */
  | { readonly code: 'error'; readonly message: string };

const failureCodes: ReadonlySet<string> = new Set(['out-of-stock', 'unknown-sku', 'payment-failed', 'error']);

/** The failure a saga's failure stands for: its error's details when they are an OrderFailure. */
export function orderFailureOf(failure: { message: string; details: unknown }): OrderFailure {
  const details = failure.details as { code?: unknown } | null;
  if (typeof details?.code === 'string' && failureCodes.has(details.code)) return details as OrderFailure;
  return { code: 'error', message: failure.message };
}

/** The sentence a failure makes, for the customer and the order's `reason`. */
export function reasonOf(failure: OrderFailure): string {
  switch (failure.code) {
    case 'out-of-stock':
      return `out of stock: '${failure.sku}' has ${failure.available} available, ${failure.requested} requested`;
    case 'unknown-sku':
      return `unknown SKU '${failure.sku}'`;
    case 'payment-failed':
      return `payment failed${failure.attempts > 1 ? ` after ${failure.attempts} attempts` : ''}: ${failure.cause}`;
    case 'error':
      return failure.message;
  }
}

/**
 * The order as a keyed entity: the one writer of its business status, and the source of the
 * events customers hear about (`Order.events`, consumed by the notification subscription).
 * The order saga drives it; nothing else sends it commands.
 */
export interface OrderState {
  readonly orderId: string;
  readonly customerId: string;
  readonly total: number;
  /** Its lines (absent on orders placed before they were kept here). */
  readonly items?: readonly OrderItem[];
  /** When it was placed (runtime clock, ms); null before. */
  readonly placedAt?: number | null;
  readonly status: OrderStatus | 'new';
  /** Why the order was cancelled: reasonOf(failure). */
  readonly reason: string | null;
  /** Why the order was cancelled, as data. */
  readonly failure?: OrderFailure | null;
  readonly chargeId: string | null;
}

/**
 * Events of `Order.events`, keyed by order id: what the commands below emit, so it is also
 * `EntityEvent<typeof Order>` (checked in order.test.ts); subscriptions read them by that type.
 */
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
      readonly failure: OrderFailure;
    };

export const Order = entity('Order', {
  initial: (orderId: string): OrderState => ({
    orderId,
    customerId: '',
    total: 0,
    items: [],
    placedAt: null,
    status: 'new',
    reason: null,
    failure: null,
    chargeId: null,
  }),
  commands: {
    /**
     * The saga's first step. Its compensation (`cancel`) runs last, after stock and money are
     * back, with the failure that made the saga compensate.
     */
    place(state, input: { customerId: string; total: number; items: readonly OrderItem[] }, ctx) {
      if (state.status !== 'new') return { reply: { status: state.status } };
      const { customerId, total, items } = input;
      return {
        state: { ...state, customerId, total, items, placedAt: ctx.nowMs, status: 'pending' as const },
        reply: { status: 'pending' },
      };
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

    cancel(state, input: { failure: OrderFailure }) {
      if (state.status !== 'pending') return { reply: { status: state.status } };
      const failure = input.failure;
      const reason = reasonOf(failure);
      const event: OrderEvent = {
        type: 'OrderCancelled',
        orderId: state.orderId,
        customerId: state.customerId,
        total: state.total,
        reason,
        failure,
      };
      return {
        state: { ...state, status: 'cancelled' as const, reason, failure },
        events: [event],
        reply: { status: 'cancelled' },
      };
    },
  },
});
