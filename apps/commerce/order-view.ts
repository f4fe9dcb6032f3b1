import { createHash } from 'node:crypto';
import type { JournalEntry, SagaRecord, SagaStatus } from '../../src/index.ts';
import { sagaJournalNames } from '../../src/runtime/index.ts';
import { Inventory, type Reservation, type StockMove } from './inventory.ts';
import { Order, type OrderItem, type OrderStatus } from './order.ts';
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
  const hash = createHash('sha256').update(`${scope}\n${idempotencyKey}`).digest('hex').slice(0, 12);
  return `ord-${Math.floor(reservedAt).toString(16).padStart(12, '0')}${hash}`;
}

/** The journal entries of the entity commands the order saga sends, by command. */
const sent = {
  place: sagaJournalNames.send(Order.name, 'place'),
  confirm: sagaJournalNames.send(Order.name, 'confirm'),
  fail: sagaJournalNames.send(Order.name, 'fail'),
  reserve: sagaJournalNames.send(Inventory.name, 'reserve'),
  commit: sagaJournalNames.send(Inventory.name, 'commit'),
};

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

/** The order statuses of the contract, from the saga's: a saga still compensating is pending. */
export function orderStatusOf(status: SagaStatus): OrderStatus {
  switch (status) {
    case 'completed':
      return 'confirmed';
    case 'compensated':
    case 'failed':
      return 'cancelled';
    default:
      return 'pending';
  }
}

/** The saga statuses an order status stands for (`GET /orders?status=`). */
export const sagaStatusesOf: Record<OrderStatus, readonly SagaStatus[]> = {
  pending: ['running', 'compensating'],
  confirmed: ['completed'],
  cancelled: ['compensated', 'failed'],
};

const iso = (ms: number) => new Date(ms).toISOString();

export function orderSummary(record: SagaRecord): OrderSummary {
  const input = record.input as unknown as OrderInput;
  const status = orderStatusOf(record.status);
  return {
    orderId: record.id,
    customerId: input.customerId,
    items: input.items,
    total: input.total,
    status,
    ...(record.reason === null ? {} : { reason: record.reason }),
    createdAt: iso(record.createdAt),
    updatedAt: iso(record.updatedAt),
  };
}

/**
 * What `GET /orders/{id}` shows: the order from its saga's record, and its payment and history
 * read from the saga's journal, which holds every step the order went through in order.
 */
export function orderView(record: SagaRecord, journal: readonly JournalEntry[]): OrderView {
  const summary = orderSummary(record);
  const status = summary.status === 'pending' ? settledInJournal(journal) : summary.status;
  return { ...summary, status, payment: paymentOf(record, journal), history: historyOf(journal) };
}

/**
 * An order's status is final once the Order entity says so, in the same commit as its event
 * (what GET /orders/events reports); the saga records its own end one commit later. The journal
 * read with the record shows the former, so an order the feed called confirmed never reads as
 * pending here.
 */
function settledInJournal(journal: readonly JournalEntry[]): OrderStatus {
  for (let index = journal.length - 1; index >= 0; index--) {
    const entry = journal[index]!;
    if (entry.status !== 'completed') continue;
    if (entry.kind === 'step' && entry.name === sent.confirm) return 'confirmed';
    if (entry.kind === 'compensation' && entry.name === sent.place) return 'cancelled';
  }
  return 'pending';
}

function paymentOf(record: SagaRecord, journal: readonly JournalEntry[]): PaymentView {
  const find = (kind: JournalEntry['kind'], name: string) =>
    journal.find((entry) => entry.kind === kind && entry.name === name);
  const charge = find('step', orderSteps.charge);
  const terminal = orderStatusOf(record.status) !== 'pending';
  if (charge === undefined) return { status: terminal ? 'none' : 'pending' };
  if (charge.status === 'completed') {
    const { chargeId } = charge.result as unknown as ChargeResult;
    const refunded = find('compensation', orderSteps.charge) !== undefined;
    return { status: refunded ? 'refunded' : 'charged', chargeId };
  }
  // The charge step gave up; the lookup says whether the gateway charged anyway.
  const lookup = find('step', orderSteps.chargeLookup);
  if (lookup === undefined || lookup.status !== 'completed')
    return { status: terminal ? 'failed' : 'pending' };
  const { chargeId } = lookup.result as unknown as ChargeLookup;
  if (chargeId === null) return { status: 'failed' };
  const refunded = find('compensation', orderSteps.chargeLookup) !== undefined;
  return { status: refunded ? 'refunded' : 'charged', chargeId };
}

function historyOf(journal: readonly JournalEntry[]): HistoryEntry[] {
  const history: HistoryEntry[] = [];
  const add = (entry: JournalEntry, event: string, detail?: string) =>
    history.push({ at: iso(entry.at), event, ...(detail === undefined ? {} : { detail }) });
  let lookupFound = false;
  for (const entry of journal) {
    const key = `${entry.kind} ${entry.name}`;
    switch (key) {
      case `event ${sagaJournalNames.start}`:
        add(entry, 'accepted');
        break;
      case `step ${sent.place}`:
        add(entry, 'placed');
        break;
      case `step ${sent.reserve}`: {
        const reservation = entry.result as unknown as Reservation;
        if (reservation.reserved > 0)
          add(entry, 'stock reserved', `${reservation.sku} × ${reservation.reserved}`);
        else
          add(
            entry,
            'stock unavailable',
            `${reservation.sku}: ${reservation.available} available, ${reservation.requested} requested`,
          );
        break;
      }
      case `step ${orderSteps.charge}`:
        if (entry.status === 'completed') {
          const charge = entry.result as unknown as ChargeResult;
          add(entry, 'payment charged', `${charge.chargeId}, ${charge.amount} (attempts: ${entry.attempts})`);
        } else {
          add(entry, 'payment failed', entry.error ?? undefined);
        }
        break;
      case `step ${orderSteps.chargeLookup}`: {
        const lookup = entry.result as unknown as ChargeLookup | null;
        lookupFound = lookup?.chargeId != null;
        if (lookup === null || lookup.chargeId === null) add(entry, 'no charge made');
        else if (lookup.resolvedBy === 'resend') {
          add(entry, 'charge settled by re-sending its key (an attempt timed out)', lookup.chargeId);
        } else add(entry, 'charge found despite the failure', lookup.chargeId);
        break;
      }
      case `step ${sent.commit}`: {
        const move = entry.result as unknown as StockMove;
        add(entry, 'stock sold', `${move.sku} × ${move.qty}`);
        break;
      }
      case `step ${sent.confirm}`:
        add(entry, 'confirmed');
        break;
      case `event ${sagaJournalNames.failed}`:
        add(entry, 'compensating', entry.error ?? undefined);
        break;
      case `compensation ${orderSteps.charge}`:
        add(entry, 'payment refunded');
        break;
      case `compensation ${orderSteps.chargeLookup}`:
        if (lookupFound) add(entry, 'payment refunded');
        break;
      case `compensation ${sent.reserve}`: {
        const move = entry.result as unknown as StockMove;
        if (move.qty > 0) add(entry, 'stock released', `${move.sku} × ${move.qty}`);
        break;
      }
      case `compensation ${sent.place}`:
        add(entry, 'cancelled');
        break;
      default:
        // The reason recorded on the order (Order.fail) and step deadlines say nothing new.
        if (entry.name.startsWith('$') || entry.name === sent.fail) break;
        add(entry, entry.name, entry.status === 'failed' ? (entry.error ?? undefined) : undefined);
    }
  }
  return history;
}
