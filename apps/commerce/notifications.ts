import { type EntityEvent, entity, subscription } from '../../src/index.ts';
import { Order, type OrderEvent } from './order.ts';

/** A message the shop sent a customer (simulated: recorded, not delivered). */
export interface Notification {
  readonly kind: 'order-confirmed' | 'order-cancelled';
  readonly channel: 'email';
  readonly to: string;
  readonly orderId: string;
  readonly message: string;
  /** When the notification was sent (ms since the epoch). */
  readonly at: number;
}

/** The notifications of one order, keyed by order id: what `GET /notifications?orderId=` shows. */
export interface Outbox {
  readonly orderId: string;
  readonly sent: readonly Notification[];
}

/** At most this many notifications are kept per order (an order sends one or two). */
const maxPerOrder = 20;

export const Notifications = entity('Notifications', {
  initial: (orderId: string): Outbox => ({ orderId, sent: [] }),
  commands: {
    record(state, input: Omit<Notification, 'at'>, ctx) {
      const sent = [...state.sent, { ...input, at: ctx.nowMs }].slice(-maxPerOrder);
      return { state: { ...state, sent }, reply: { count: sent.length } };
    },
  },
});

function formatAmount(amount: number): string {
  return amount.toFixed(2);
}

/** The message a customer gets for an order event. */
export function notificationFor(event: OrderEvent): Omit<Notification, 'at'> {
  if (event.type === 'OrderConfirmed') {
    return {
      kind: 'order-confirmed',
      channel: 'email',
      to: event.customerId,
      orderId: event.orderId,
      message: `Your order ${event.orderId} is confirmed: ${formatAmount(event.total)} charged (${event.chargeId}).`,
    };
  }
  return {
    kind: 'order-cancelled',
    channel: 'email',
    to: event.customerId,
    orderId: event.orderId,
    message: `Your order ${event.orderId} was cancelled (${event.reason}). Nothing was charged, or the charge was refunded.`,
  };
}

/**
 * Tells customers what happened to their orders. It consumes the Order entity's events, after
 * the order process has moved on: a slow or failing notification never holds an order up. Each
 * event's notification is recorded in the same transaction that consumes the event, so a
 * customer hears about each order exactly once, even across crashes.
 */
export const notify = subscription('notify', {
  topic: Order.eventsTopic,
  handler: async (record, ctx) => {
    const event = record.json<EntityEvent<typeof Order>>();
    if (event?.type !== 'OrderConfirmed' && event?.type !== 'OrderCancelled') return;
    await ctx.send(Notifications, event.orderId, 'record', notificationFor(event));
  },
});
