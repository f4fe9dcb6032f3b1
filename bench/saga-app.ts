/**
 * The 4-step order saga of `npm run bench:saga`, shared by the embedded run (bench/saga.ts) and
 * the cluster's node processes (bench/saga-cluster-node.ts): reserve stock on one of 1,000
 * Inventory entities, charge through an in-process fake with 0 ms latency (with the step's
 * idempotency key), confirm the Order entity (one per saga), emit `orders.completed`.
 */
import { entity, saga } from '../src/runtime/index.ts';

export const skus = 1000;

interface Stock {
  available: number;
  reserved: number;
}

export const Inventory = entity('Inventory', {
  initial: (): Stock => ({ available: 1_000_000_000, reserved: 0 }),
  commands: {
    reserve(state, input: { qty: number }) {
      if (state.available < input.qty) throw new Error('out of stock');
      return {
        state: { available: state.available - input.qty, reserved: state.reserved + input.qty },
        reply: { reserved: input.qty },
      };
    },
  },
});

export const Order = entity('Order', {
  initial: { status: 'new' as string, paymentId: '' },
  commands: {
    confirm(state, input: { paymentId: string }) {
      if (state.status === 'confirmed') return { reply: state.paymentId };
      return {
        state: { status: 'confirmed', paymentId: input.paymentId },
        events: [{ confirmed: input.paymentId }],
      };
    },
  },
});

/** The fake payment gateway: 0 ms latency, remembers keys it applied (idempotent). */
const charged = new Map<string, string>();
async function charge(idempotencyKey: string, amount: number): Promise<{ paymentId: string }> {
  await Promise.resolve();
  let paymentId = charged.get(idempotencyKey);
  if (paymentId === undefined) {
    paymentId = `pay-${charged.size + 1}-${amount}`;
    charged.set(idempotencyKey, paymentId);
  }
  return { paymentId };
}

export const OrderSaga = saga(
  'OrderSaga',
  async (ctx, input: { sku: string; qty: number; amount: number }) => {
    await ctx.send(Inventory, input.sku, 'reserve', { qty: input.qty });
    const payment = await ctx.step('charge', (step) => charge(step.idempotencyKey, input.amount));
    await ctx.send(Order, ctx.sagaId, 'confirm', { paymentId: payment.paymentId });
    await ctx.emit('orders.completed', { key: ctx.sagaId, value: { paymentId: payment.paymentId } });
    return payment.paymentId;
  },
);
