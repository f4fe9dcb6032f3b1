/**
 * The commerce system's invariants, checked from the outside through the HTTP contract: what
 * the stress and crash tests assert after a run, and what anyone can run against a live demo.
 *
 * - no oversell: a SKU's `available`, `reserved` and `sold` are never negative, and `sold` is
 *   exactly the units of its confirmed orders (plus, when the initial stock is known, the three
 *   add up to it);
 * - no double charge: an order has at most one charge at the payment gateway;
 * - charged iff confirmed: a confirmed order has exactly one charge, still charged, of its
 *   total; a cancelled order has no charge left unrefunded; no charge exists for an unknown order;
 * - everything ends: every order is confirmed or cancelled (when asked for), and then no stock
 *   is left reserved.
 */

import { NEXT_CURSOR_HEADER } from './payment-gateway-client.ts';

export interface AuditOrder {
  readonly orderId: string;
  readonly status: 'pending' | 'confirmed' | 'cancelled';
  readonly total: number;
  readonly items: readonly { readonly sku: string; readonly qty: number }[];
}

export interface AuditCharge {
  readonly chargeId: string;
  readonly orderId: string;
  readonly amount: number;
  readonly status: 'charged' | 'refunded';
}

export interface AuditStock {
  readonly sku: string;
  readonly available: number;
  readonly reserved: number;
  readonly sold: number;
}

export interface AuditInput {
  readonly orders: readonly AuditOrder[];
  readonly charges: readonly AuditCharge[];
  readonly stock: readonly AuditStock[];
  /** Units each SKU was stocked with, when nothing restocked it since: checks conservation. */
  readonly initialStock?: Readonly<Record<string, number>>;
  /** Every order must have ended (the system is quiet). @default true */
  readonly requireTerminal?: boolean;
}

export interface AuditReport {
  readonly violations: string[];
  readonly confirmed: number;
  readonly cancelled: number;
  readonly pending: number;
  readonly charges: number;
  readonly refunded: number;
}

/** Checks the invariants over a snapshot; an empty `violations` means they all hold. */
export function auditCommerce(input: AuditInput): AuditReport {
  const violations: string[] = [];
  const requireTerminal = input.requireTerminal ?? true;
  const orders = new Map(input.orders.map((order) => [order.orderId, order]));
  const chargesByOrder = new Map<string, AuditCharge[]>();
  for (const charge of input.charges) {
    const list = chargesByOrder.get(charge.orderId) ?? [];
    list.push(charge);
    chargesByOrder.set(charge.orderId, list);
  }

  const soldBySku = new Map<string, number>();
  let pending = 0;
  let confirmed = 0;
  let cancelled = 0;
  for (const order of input.orders) {
    const charges = chargesByOrder.get(order.orderId) ?? [];
    if (charges.length > 1) {
      violations.push(
        `order ${order.orderId} was charged ${charges.length} times: ${charges.map((charge) => charge.chargeId).join(', ')}`,
      );
    }
    const live = charges.filter((charge) => charge.status === 'charged');
    if (order.status === 'confirmed') {
      confirmed += 1;
      if (charges.length !== 1 || live.length !== 1) {
        violations.push(
          `confirmed order ${order.orderId} has ${charges.length} charge(s), ${live.length} not refunded (expected exactly one)`,
        );
      } else if (Math.abs(live[0]!.amount - order.total) > 1e-9) {
        violations.push(
          `confirmed order ${order.orderId} totals ${order.total} but was charged ${live[0]!.amount}`,
        );
      }
      for (const item of order.items) soldBySku.set(item.sku, (soldBySku.get(item.sku) ?? 0) + item.qty);
    } else if (order.status === 'cancelled') {
      cancelled += 1;
      if (live.length > 0) {
        violations.push(
          `cancelled order ${order.orderId} has an unrefunded charge: ${live.map((charge) => charge.chargeId).join(', ')}`,
        );
      }
    } else {
      pending += 1;
      if (requireTerminal) violations.push(`order ${order.orderId} is still pending`);
    }
  }
  for (const charge of input.charges) {
    if (!orders.has(charge.orderId))
      violations.push(`charge ${charge.chargeId} is for unknown order ${charge.orderId}`);
  }

  for (const stock of input.stock) {
    for (const field of ['available', 'reserved', 'sold'] as const) {
      if (stock[field] < 0) violations.push(`SKU ${stock.sku} has ${field} ${stock[field]}`);
    }
    const sold = soldBySku.get(stock.sku) ?? 0;
    if (pending === 0 && stock.sold !== sold) {
      violations.push(`SKU ${stock.sku} sold ${stock.sold} units but its confirmed orders hold ${sold}`);
    }
    if (pending === 0 && stock.reserved !== 0) {
      violations.push(`SKU ${stock.sku} still has ${stock.reserved} units reserved with no order pending`);
    }
    const initial = input.initialStock?.[stock.sku];
    if (initial !== undefined && stock.available + stock.reserved + stock.sold !== initial) {
      violations.push(
        `SKU ${stock.sku} accounts for ${stock.available + stock.reserved + stock.sold} units (available ${stock.available} + reserved ${stock.reserved} + sold ${stock.sold}) of the ${initial} it was stocked with`,
      );
    }
  }

  return {
    violations,
    confirmed,
    cancelled,
    pending,
    charges: input.charges.length,
    refunded: input.charges.filter((charge) => charge.status === 'refunded').length,
  };
}

/** Request headers of the audit's reads: an operator's credential, when the API authenticates. */
export type AuditHeaders = Readonly<Record<string, string>>;

async function get<T>(url: string, headers: AuditHeaders): Promise<{ body: T; headers: Headers }> {
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(30_000) });
  const text = await response.text();
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}: ${text.slice(0, 300)}`);
  return { body: JSON.parse(text) as T, headers: response.headers };
}

async function getJson<T>(url: string, headers: AuditHeaders): Promise<T> {
  return (await get<T>(url, headers)).body;
}

/** Every order, page by page, through `GET /orders`. */
export async function fetchOrders(
  baseUrl: string,
  status?: AuditOrder['status'],
  headers: AuditHeaders = {},
): Promise<AuditOrder[]> {
  const orders: AuditOrder[] = [];
  let after: string | null = null;
  do {
    const query = new URLSearchParams({ limit: '1000' });
    if (status !== undefined) query.set('status', status);
    if (after !== null) query.set('after', after);
    const page: { orders: AuditOrder[]; next: string | null } = await getJson(
      `${baseUrl}/orders?${query}`,
      headers,
    );
    orders.push(...page.orders);
    after = page.next;
  } while (after !== null);
  return orders;
}

/**
 * Every charge the payment gateway recorded, page by page (`pageSize` each, 1..1000, default
 * 1000), through `GET /payments/charges` and its `Next-Cursor` header.
 */
export async function fetchCharges(
  baseUrl: string,
  options: { pageSize?: number; headers?: AuditHeaders } = {},
): Promise<AuditCharge[]> {
  const charges: AuditCharge[] = [];
  let after: string | null = null;
  do {
    const query = new URLSearchParams({ limit: String(options.pageSize ?? 1000) });
    if (after !== null) query.set('after', after);
    const page: { body: AuditCharge[]; headers: Headers } = await get(
      `${baseUrl}/payments/charges?${query}`,
      options.headers ?? {},
    );
    charges.push(...page.body);
    after = page.headers.get(NEXT_CURSOR_HEADER);
  } while (after !== null);
  return charges;
}

/** A snapshot of orders, charges and the given SKUs' stock, read through the HTTP contract. */
export async function collectAudit(
  baseUrl: string,
  skus: readonly string[],
  headers: AuditHeaders = {},
): Promise<Pick<AuditInput, 'orders' | 'charges' | 'stock'>> {
  const orders = await fetchOrders(baseUrl, undefined, headers);
  const charges = await fetchCharges(baseUrl, { headers });
  const stock = await Promise.all(
    skus.map((sku) => getJson<AuditStock>(`${baseUrl}/inventory/${encodeURIComponent(sku)}`, headers)),
  );
  return { orders, charges, stock };
}
