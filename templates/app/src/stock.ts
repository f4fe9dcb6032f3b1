import { entity, TerminalError } from 'meridian';

/** Stock of one product, keyed by its SKU. Commands for one SKU run one at a time: no lost updates. */
export interface StockState {
  available: number;
  reserved: number;
}

export const Stock = entity('Stock', {
  initial: { available: 0, reserved: 0 } satisfies StockState as StockState,
  commands: {
    restock(stock, input: { qty: number }) {
      return { state: { ...stock, available: stock.available + input.qty } };
    },
    reserve(stock, input: { qty: number }) {
      // A TerminalError is never retried: the saga compensates instead.
      if (stock.available < input.qty) throw new TerminalError(`only ${stock.available} left`);
      return {
        state: { available: stock.available - input.qty, reserved: stock.reserved + input.qty },
        events: [{ type: 'reserved', qty: input.qty }],
      };
    },
    release(stock, input: { qty: number }) {
      return {
        state: { available: stock.available + input.qty, reserved: stock.reserved - input.qty },
        events: [{ type: 'released', qty: input.qty }],
      };
    },
  },
});

/** Units sold and revenue per SKU, kept by the `sales` subscription. */
export const Sales = entity('Sales', {
  initial: { units: 0, revenueCents: 0 },
  commands: {
    record(sales, input: { qty: number; amountCents: number }) {
      return {
        state: { units: sales.units + input.qty, revenueCents: sales.revenueCents + input.amountCents },
      };
    },
  },
});
