import { hash as digest } from 'node:crypto';
import type { EntityInstance, RuntimeView, SagaCall, SagaProgress } from '../../src/index.ts';
import { Inventory, type Reservation, type StockMove } from './inventory.ts';
import { Order, type OrderItem, type OrderState, type OrderStatus } from './order.ts';
import { type ChargeLookup, type OrderInput, orderSteps } from './order-saga.ts';
import type { ChargeResult } from './payment-gateway-client.ts';

/**
 * The order id of an Idempotency-Key: a retry of a request whose first attempt died takes the
 * key over and must start the same order, not a second one. So the id is the time the request
 * first reserved the key (12 hex digits of milliseconds, the same on every retry: see
 * `reservedAt`), then 48 bits of the SHA-256 of the key's scope and the key. Time first keeps
 * ids ordered as orders arrive: their rows (the saga, its journal, the Order entity) are
 * appended to the database's B-trees instead of scattered across them, which measured about a
 * quarter less SQLite time per order (docs/benchmarks.md), and order listings come oldest first.
 * Two orders collide only if their keys' hashes do within the same millisecond.
 */
export function orderIdFor(scope: string, idempotencyKey: string, reservedAt: number): string {
  const hash = digest('sha256', `${scope}\n${idempotencyKey}`, 'hex').slice(0, 12);
  return `ord-${Math.floor(reservedAt).toString(16).padStart(12, '0')}${hash}`;
}

export type PaymentStatus = 'pending' | 'charged' | 'refunded' | 'failed' | 'none';

export interface PaymentView {
  readonly status: PaymentStatus;
  readonly chargeId?: string;
}

export interface HistoryEntry {
  readonly at: string;
  readonly event: string;
  readonly detail?: string;
}

export interface OrderSummary {
  readonly orderId: string;
  readonly customerId: string;
  readonly items: readonly OrderItem[];
  readonly total: number;
  readonly status: OrderStatus;
  readonly reason?: string;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface OrderView extends OrderSummary {
  readonly payment: PaymentView;
  readonly history: readonly HistoryEntry[];
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * An order's status has one source: the Order entity, which the saga drives and which commits
 * each change with its event (what GET /orders/events reports). Before the saga placed it, the
 * order is pending.
 */
export function orderStatusOf(order: Pick<OrderState, 'status'> | null): OrderStatus {
  return order === null || order.status === 'new' ? 'pending' : order.status;
}

/** What `GET /orders` lists: an order from its entity alone. */
export function orderSummary(order: EntityInstance<typeof Order>): OrderSummary {
  const { state } = order;
  return {
    orderId: order.id,
    customerId: state.customerId,
    items: state.items ?? [],
    total: state.total,
    status: orderStatusOf(state),
    ...(state.reason === null ? {} : { reason: state.reason }),
    createdAt: iso(state.placedAt ?? order.updatedAt),
    updatedAt: iso(order.updatedAt),
  };
}

/**
 * What `GET /orders/{id}` shows: the order's status and reason from its entity; what it asked
 * for from its saga's input; its payment and history from its saga's progress (the runtime's
 * typed account of the calls it made), read on the same snapshot.
 */
export function orderView(
  progress: SagaProgress,
  order: OrderState | null,
  orderUpdatedAt: number | null,
): OrderView {
  const input = progress.input as unknown as OrderInput;
  const status = orderStatusOf(order);
  return {
    orderId: progress.id,
    customerId: input.customerId,
    items: input.items,
    total: input.total,
    status,
    ...(order?.reason == null ? {} : { reason: order.reason }),
    createdAt: iso(progress.createdAt),
    updatedAt: iso(Math.max(progress.updatedAt, orderUpdatedAt ?? 0)),
    payment: paymentOf(progress),
    history: historyOf(progress),
  };
}

/** Ended in any way (completed, compensated, failed, cancelled): no more calls will come. */
const ended = (progress: SagaProgress) => progress.status !== 'running' && progress.status !== 'compensating';

type StepCall = Extract<SagaCall, { kind: 'step' }>;

function stepOf(progress: SagaProgress, name: string): StepCall | undefined {
  return progress.calls.find((call): call is StepCall => call.kind === 'step' && call.name === name);
}

function undone(progress: SagaProgress, step: string): boolean {
  return progress.calls.some((call) => call.kind === 'compensation' && call.step === step);
}

function paymentOf(progress: SagaProgress): PaymentView {
  const charge = stepOf(progress, orderSteps.charge);
  if (charge === undefined) return { status: ended(progress) ? 'none' : 'pending' };
  if (charge.status === 'completed') {
    const { chargeId } = charge.result as unknown as ChargeResult;
    return { status: undone(progress, orderSteps.charge) ? 'refunded' : 'charged', chargeId };
  }
  // The charge step gave up; the lookup says whether the gateway charged anyway.
  const lookup = stepOf(progress, orderSteps.chargeLookup);
  if (lookup === undefined || lookup.status !== 'completed')
    return { status: ended(progress) ? 'failed' : 'pending' };
  const { chargeId } = lookup.result as unknown as ChargeLookup;
  if (chargeId === null) return { status: 'failed' };
  return { status: undone(progress, orderSteps.chargeLookup) ? 'refunded' : 'charged', chargeId };
}

/** The history line of one call of the order saga, if it has one. */
function historyOfCall(call: SagaCall, lookupFound: boolean): [event: string, detail?: string] | null {
  if (call.kind === 'send') {
    const command = `${call.entity}.${call.command}`;
    if (command === `${Order.name}.place`) return ['placed'];
    if (command === `${Order.name}.confirm`) return ['confirmed'];
    if (command === `${Inventory.name}.reserve`) {
      const reservation = call.reply as unknown as Reservation;
      if (reservation.reserved > 0) return ['stock reserved', `${reservation.sku} × ${reservation.reserved}`];
      return [
        'stock unavailable',
        `${reservation.sku}: ${reservation.available} available, ${reservation.requested} requested`,
      ];
    }
    if (command === `${Inventory.name}.commit`) {
      const move = call.reply as unknown as StockMove;
      return ['stock sold', `${move.sku} × ${move.qty}`];
    }
    return [command, call.error ?? undefined];
  }
  if (call.kind === 'step') {
    if (call.name === orderSteps.charge) {
      if (call.status === 'failed') return ['payment failed', call.error ?? undefined];
      const charge = call.result as unknown as ChargeResult;
      return ['payment charged', `${charge.chargeId}, ${charge.amount} (attempts: ${call.attempts})`];
    }
    if (call.name === orderSteps.chargeLookup) {
      const lookup = call.result as unknown as ChargeLookup | null;
      if (lookup === null || lookup.chargeId === null) return ['no charge made'];
      if (lookup.resolvedBy === 'resend')
        return ['charge settled by re-sending its key (an attempt timed out)', lookup.chargeId];
      return ['charge found despite the failure', lookup.chargeId];
    }
    return [call.name, call.status === 'failed' ? (call.error ?? undefined) : undefined];
  }
  if (call.kind !== 'compensation') return null;
  if (call.step === orderSteps.charge) return ['payment refunded'];
  if (call.step === orderSteps.chargeLookup) return lookupFound ? ['payment refunded'] : null;
  if (call.send?.entity === Inventory.name && call.send.command === 'reserve') {
    const move = call.reply as unknown as StockMove | null;
    return move !== null && move.qty > 0 ? ['stock released', `${move.sku} × ${move.qty}`] : null;
  }
  if (call.send?.entity === Order.name && call.send.command === 'place') return ['cancelled'];
  return null;
}

function historyOf(progress: SagaProgress): HistoryEntry[] {
  const history: HistoryEntry[] = [];
  const add = (at: number, event: string, detail?: string) =>
    history.push({ at: iso(at), event, ...(detail === undefined ? {} : { detail }) });
  add(progress.createdAt, 'accepted');
  const lookup = stepOf(progress, orderSteps.chargeLookup);
  const lookupFound = (lookup?.result as unknown as ChargeLookup | null)?.chargeId != null;
  let compensating = false;
  for (const call of progress.calls) {
    if (!compensating && call.kind === 'compensation' && progress.failure !== null) {
      compensating = true;
      add(progress.failedAt ?? call.at, 'compensating', progress.failure.message);
    }
    const line = historyOfCall(call, lookupFound);
    if (line !== null) add(call.at, ...line);
  }
  if (!compensating && progress.failure !== null) {
    add(progress.failedAt ?? progress.updatedAt, 'compensating', progress.failure.message);
  }
  return history;
}

/** Order entities `GET /orders` reads at most per request while it looks for `limit` of one status. */
export const maxOrdersScanned = 10_000;

/**
 * A page of orders in id order (ids are time-ordered: oldest first), optionally of one status
 * and of one customer, from the Order entities: `next` continues it. With a filter, up to
 * `maxOrdersScanned` orders are read; a page may then hold fewer than `limit` orders with a
 * `next` to go on from.
 */
export async function listOrders(
  view: Pick<RuntimeView, 'list'>,
  query: { status?: OrderStatus; customerId?: string; limit: number; after?: string },
): Promise<{ orders: OrderSummary[]; next: string | null }> {
  const orders: OrderSummary[] = [];
  const filtered = query.status !== undefined || query.customerId !== undefined;
  let afterId = query.after;
  for (let scanned = 0; scanned < maxOrdersScanned; ) {
    const pageSize = filtered ? 1000 : query.limit - orders.length;
    const page = await view.list(Order, { limit: pageSize, ...(afterId === undefined ? {} : { afterId }) });
    for (const order of page) {
      scanned++;
      afterId = order.id;
      // Orders the saga has not placed yet have no entity; every order here was placed.
      if (query.status !== undefined && orderStatusOf(order.state) !== query.status) continue;
      if (query.customerId !== undefined && order.state.customerId !== query.customerId) continue;
      orders.push(orderSummary(order));
      if (orders.length === query.limit) return { orders, next: order.id };
    }
    if (page.length < pageSize) return { orders, next: null };
  }
  return { orders, next: afterId === undefined ? null : resumeAfter(afterId, orders, query.customerId) };
}

/**
 * Where a listing that read its bound without filling the page goes on. For one customer, not
 * from the last order read, which may be another customer's (its id would be disclosed): from
 * that order's millisecond (the time prefix of its id, which sorts before every id of that
 * millisecond), or from the customer's own last order when it is of that millisecond too.
 */
function resumeAfter(lastRead: string, own: readonly OrderSummary[], customerId: string | undefined): string {
  if (customerId === undefined) return lastRead;
  const millisecond = lastRead.slice(0, 'ord-'.length + 12);
  const lastOwn = own.at(-1)?.orderId;
  return lastOwn?.startsWith(millisecond) ? lastOwn : millisecond;
}
