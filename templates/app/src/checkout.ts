import { saga } from 'meridian';
import { payments } from './payments.ts';
import { Stock } from './stock.ts';

export interface CheckoutInput {
  sku: string;
  qty: number;
  amountCents: number;
}

/**
 * An order as a saga: reserve stock, charge, announce the sale. Each step is journaled, so after
 * a crash the saga resumes where it was; when a step fails for good, the compensations of the
 * steps before it run in reverse order (release the stock, refund the charge).
 */
export const Checkout = saga('Checkout', async (ctx, order: CheckoutInput) => {
  await ctx.send(
    Stock,
    order.sku,
    'reserve',
    { qty: order.qty },
    {
      compensate: { command: 'release', input: { qty: order.qty } },
    },
  );
  const charge = await ctx.step('charge', (step) => payments.charge(step.idempotencyKey, order.amountCents), {
    retry: { maxAttempts: 5, initialDelayMs: 100 },
    compensate: (_step, charged) => payments.refund(charged.chargeId),
  });
  await ctx.emit('orders.placed', { key: order.sku, value: { orderId: ctx.sagaId, ...order } });
  return { chargeId: charge.chargeId };
});
