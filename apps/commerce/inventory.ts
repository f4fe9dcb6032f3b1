import { entity } from '../../src/index.ts';

/**
 * One SKU's stock. `available` units can be sold; `reserved` units are held by orders whose
 * payment is under way; `sold` units belong to confirmed orders. Only the Inventory entity's
 * commands change these numbers, and the runtime runs one command per SKU at a time, so two
 * orders racing for the last unit cannot both get it.
 */
export interface StockState {
  readonly sku: string;
  /** False until the first `set`: an unlisted SKU cannot be reserved. */
  readonly listed: boolean;
  readonly available: number;
  readonly reserved: number;
  readonly sold: number;
  /** The unit price in the shop's currency, or null while unlisted. */
  readonly price: number | null;
}

/** What `reserve` answers: how many of the requested units it could hold for the order. */
export interface Reservation {
  readonly sku: string;
  readonly requested: number;
  /** Either every requested unit or none: an order never holds part of a line. */
  readonly reserved: number;
  /** Units still available after this reservation. */
  readonly available: number;
  readonly listed: boolean;
}

/** What `release` and `commit` answer. */
export interface StockMove {
  readonly sku: string;
  readonly qty: number;
}

export const Inventory = entity('Inventory', {
  initial: (sku: string): StockState => ({
    sku,
    listed: false,
    available: 0,
    reserved: 0,
    sold: 0,
    price: null,
  }),
  commands: {
    /** Sets the sellable stock and the price. Reserved and sold units are not touched. */
    set(state, input: { available: number; price: number }) {
      const next: StockState = { ...state, listed: true, available: input.available, price: input.price };
      return { state: next, reply: next };
    },

    /**
     * Holds `qty` units for an order, or none when fewer are available. It never rejects: the
     * order saga reads the reply and decides, and the compensation releases exactly what the
     * reply says was reserved (zero for a refused reservation).
     */
    reserve(state, input: { orderId: string; qty: number }) {
      if (!state.listed || state.available < input.qty) {
        const reply: Reservation = {
          sku: state.sku,
          requested: input.qty,
          reserved: 0,
          available: state.available,
          listed: state.listed,
        };
        return { reply };
      }
      const next: StockState = {
        ...state,
        available: state.available - input.qty,
        reserved: state.reserved + input.qty,
      };
      const reply: Reservation = {
        sku: state.sku,
        requested: input.qty,
        reserved: input.qty,
        available: next.available,
        listed: true,
      };
      return { state: next, reply };
    },

    /** Gives reserved units back (an order was cancelled). Releasing zero units changes nothing. */
    release(state, input: { orderId: string; qty: number }) {
      const reply: StockMove = { sku: state.sku, qty: input.qty };
      if (input.qty === 0) return { reply };
      if (state.reserved < input.qty) {
        // Only a reservation's own compensation releases, exactly once: anything else is a bug.
        throw new Error(
          `Cannot release ${input.qty} units of '${state.sku}' for order '${input.orderId}': only ${state.reserved} are reserved`,
        );
      }
      return {
        state: { ...state, available: state.available + input.qty, reserved: state.reserved - input.qty },
        reply,
      };
    },

    /** Turns reserved units into sold ones (an order was paid). */
    commit(state, input: { orderId: string; qty: number }) {
      if (state.reserved < input.qty) {
        throw new Error(
          `Cannot commit ${input.qty} units of '${state.sku}' for order '${input.orderId}': only ${state.reserved} are reserved`,
        );
      }
      const reply: StockMove = { sku: state.sku, qty: input.qty };
      return {
        state: { ...state, reserved: state.reserved - input.qty, sold: state.sold + input.qty },
        reply,
      };
    },
  },
});

/** The public view of a SKU's stock (`GET /inventory/{sku}`). */
export interface StockView {
  readonly sku: string;
  readonly available: number;
  readonly reserved: number;
  readonly sold: number;
  readonly price: number;
}

export function stockView(state: StockState): StockView {
  return {
    sku: state.sku,
    available: state.available,
    reserved: state.reserved,
    sold: state.sold,
    price: state.price ?? 0,
  };
}
