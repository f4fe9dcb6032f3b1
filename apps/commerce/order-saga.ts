import {
  isMeridianError,
  type SagaDefinition,
  StepFailedError,
  saga,
  TerminalError,
} from '../../src/index.ts';
import { Inventory, type Reservation } from './inventory.ts';
import { Order, type OrderFailure, type OrderItem, orderFailureOf, reasonOf } from './order.ts';
import type { ChargeResult, PaymentGatewayClient } from './payment-gateway-client.ts';

/** What `POST /orders` starts: the order's lines priced from the catalog, and their total. */
export interface OrderInput {
  readonly customerId: string;
  readonly items: readonly OrderItem[];
  readonly total: number;
}

/** What a confirmed order's saga returns. */
export interface OrderOutput {
  readonly chargeId: string;
  readonly total: number;
}

/** What the `charge-lookup` step settled: the charge a failed charge step may still have made. */
export interface ChargeLookup {
  readonly chargeId: string | null;
  /** `lookup`: the gateway's records said; `resend`: an attempt's outcome was unknown, so the charge's key was sent again. */
  readonly resolvedBy: 'lookup' | 'resend';
}

/** How a saga step retries (the runtime's backoff: exponential, full jitter, Retry-After honoured). */
export interface StepRetry {
  /** Attempts in all, the first included. */
  maxAttempts?: number;
  initialDelayMs?: number;
  maxDelayMs?: number;
}

export interface OrderSagaOptions {
  /** Retries of the charge call (a 503, a timeout, a lost response). @default 4 attempts, 100 ms doubling to 2 s */
  chargeRetry?: StepRetry;
  /**
   * Bound on the whole charge step, all attempts included (ms). It costs one more journal entry
   * per order (the deadline is journaled so that it survives restarts). @default none: the
   * attempts and the per-call timeout bound the step
   */
  chargeTimeoutMs?: number;
  /** Bound on one call to the payment gateway (ms). @default 2000 */
  paymentCallTimeoutMs?: number;
}

export const orderSagaName = 'OrderSaga';

/** The step names, which are also the idempotency keys' suffixes (`${orderId}/charge`). */
export const orderSteps = {
  charge: 'charge',
  chargeLookup: 'charge-lookup',
} as const;

/**
 * The order process, one saga per order (its id is the order id):
 *
 *   place order → reserve each line's stock → charge → commit the stock → confirm
 *
 * Each entity command commits with its journal entry; the charge goes to the payment gateway
 * with the idempotency key `${orderId}/charge`, the same on every attempt and after a restart,
 * so the gateway charges at most once. When a step fails for good, the saga throws a
 * TerminalError whose details say why as data (an OrderFailure); the runtime then runs the
 * registered compensations in reverse: refund the charge, release each reservation, cancel the
 * order with that failure (whose event tells the customer). Confirmation is told to the customer
 * by the notification subscription.
 *
 * A charge step that gave up does not prove that nothing was charged: a response may have been
 * lost after the gateway recorded the charge, or a timed-out request may still be processed.
 * The saga then settles it (`charge-lookup`): the gateway's records, and when an attempt's
 * outcome is unknown the charge's own key sent again; a charge found is refunded by that step's
 * compensation.
 */
export function orderSaga(
  payments: PaymentGatewayClient,
  options: OrderSagaOptions = {},
): SagaDefinition<OrderInput, OrderOutput> {
  const chargeRetry: StepRetry = {
    maxAttempts: 4,
    initialDelayMs: 100,
    maxDelayMs: 2000,
    ...options.chargeRetry,
  };
  const chargeTimeoutMs = options.chargeTimeoutMs;
  const callTimeoutMs = options.paymentCallTimeoutMs ?? 2000;

  return saga(orderSagaName, async (ctx, input: OrderInput): Promise<OrderOutput> => {
    const orderId = ctx.sagaId;
    await ctx.send(
      Order,
      orderId,
      'place',
      { customerId: input.customerId, total: input.total, items: input.items },
      // Undone last, with the failure that made the saga compensate: the order keeps it as data.
      {
        compensate: { command: 'cancel', input: (_reply, failure) => ({ failure: orderFailureOf(failure) }) },
      },
    );
    for (const item of input.items) {
      const reservation: Reservation = await ctx.send(
        Inventory,
        item.sku,
        'reserve',
        { orderId, qty: item.qty },
        {
          compensate: {
            command: 'release',
            input: (reply: Reservation) => ({ orderId, qty: reply.reserved }),
          },
        },
      );
      if (reservation.reserved < item.qty) {
        fail(
          reservation.listed
            ? { code: 'out-of-stock', sku: item.sku, available: reservation.available, requested: item.qty }
            : { code: 'unknown-sku', sku: item.sku },
        );
      }
    }

    // What this run saw of the charge attempts: only attempts that were answered (even with a
    // 503) prove that the gateway did not take the charge; a timeout or a dropped connection
    // proves nothing, since the request may still be processed after the caller gave up.
    let chargeAttempts = 0;
    let outcomeUnknown = false;
    let charge: ChargeResult;
    try {
      charge = await ctx.step(
        orderSteps.charge,
        async (step) => {
          chargeAttempts += 1;
          try {
            return await payments.charge(
              { orderId, amount: input.total, idempotencyKey: step.idempotencyKey },
              { signal: step.signal, timeoutMs: callTimeoutMs },
            );
          } catch (error) {
            if (!wasAnswered(error)) outcomeUnknown = true;
            throw error;
          }
        },
        {
          retry: chargeRetry,
          ...(chargeTimeoutMs === undefined ? {} : { timeoutMs: chargeTimeoutMs }),
          compensate: (step, result) =>
            refund(payments, result.chargeId, step.idempotencyKey, step.signal, callTimeoutMs),
        },
      );
    } catch (error) {
      // The charge gave up, but it may have happened (a lost response, a timeout). Settle that
      // before cancelling, so that a charge the gateway took is refunded with the other
      // compensations (this step's own).
      await ctx.step<ChargeLookup>(
        orderSteps.chargeLookup,
        async (step) => {
          const call = { signal: step.signal, timeoutMs: callTimeoutMs };
          const found = await payments.charges(orderId, call);
          const live = found.find((candidate) => candidate.status === 'charged');
          if (live !== undefined) return { chargeId: live.chargeId, resolvedBy: 'lookup' };
          // Every attempt answered "not done" (and this run saw them all): nothing was charged.
          if (found.length > 0 || (chargeAttempts > 0 && !outcomeUnknown)) {
            return { chargeId: null, resolvedBy: 'lookup' };
          }
          // An attempt may still land at the gateway (or a restart hid what the attempts saw).
          // A lookup cannot rule that out; the charge's own key can: the gateway answers with
          // the charge that key made, or makes it now, and any late attempt replays it. Either
          // way it is refunded, and no charge is left behind the order's back.
          const settled = await payments.charge(
            { orderId, amount: input.total, idempotencyKey: `${orderId}/${orderSteps.charge}` },
            call,
          );
          return { chargeId: settled.chargeId, resolvedBy: 'resend' };
        },
        {
          // Without an answer the saga cannot know whether to refund: keep asking (about an hour).
          retry: { maxAttempts: 1000, initialDelayMs: 100, maxDelayMs: 5000 },
          compensate: async (step, lookup) => {
            if (lookup.chargeId === null) return;
            await refund(payments, lookup.chargeId, step.idempotencyKey, step.signal, callTimeoutMs);
          },
        },
      );
      fail(paymentFailure(error));
    }

    for (const item of input.items) {
      await ctx.send(Inventory, item.sku, 'commit', { orderId, qty: item.qty });
    }
    await ctx.send(Order, orderId, 'confirm', { chargeId: charge.chargeId });
    return { chargeId: charge.chargeId, total: input.total };
  });
}

/** Ends the order: a TerminalError whose details are the failure, as data, for the cancellation. */
function fail(failure: OrderFailure): never {
  throw new TerminalError(reasonOf(failure), { details: failure });
}

/** Why the charge step gave up: the step's own account (attempts, last error), not its message. */
function paymentFailure(error: unknown): OrderFailure {
  if (error instanceof StepFailedError) {
    return {
      code: 'payment-failed',
      attempts: error.attempts,
      cause: error.causeMessage,
      causeCode: error.causeCode,
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: 'payment-failed', attempts: 1, cause: message, causeCode: null };
}

async function refund(
  payments: PaymentGatewayClient,
  chargeId: string,
  idempotencyKey: string,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<void> {
  await payments.refund({ chargeId, idempotencyKey }, { signal, timeoutMs });
}

/** True when the gateway answered the call (any status): it then says what it did. */
function wasAnswered(error: unknown): boolean {
  return isMeridianError(error) && typeof error.details?.status === 'number';
}
