import { subscription } from 'meridian';
import type { CheckoutInput } from './checkout.ts';
import { Sales } from './stock.ts';

/** Tallies every placed order; its effects commit with the consumed offset, exactly once per record. */
export const SalesLedger = subscription('sales', {
  topic: 'orders.placed',
  handler: async (record, ctx) => {
    const order = record.json<CheckoutInput & { orderId: string }>();
    await ctx.send(Sales, order.sku, 'record', { qty: order.qty, amountCents: order.amountCents });
  },
});
