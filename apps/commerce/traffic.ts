import { randomUUID } from 'node:crypto';
import {
  type Random,
  systemRandom,
  systemTimers,
  type TimerHandle,
  type Timers,
  ValidationError,
} from '../../src/index.ts';

export interface TrafficOptions {
  /** The commerce API's base URL. */
  url: string;
  /** An operator's bearer token (it places orders for many customers), when the API authenticates. */
  token?: string;
  /** Orders placed per second. 0.1 to 100. @default 2 */
  ordersPerSecond?: number;
  /** Demo SKUs listed (when missing) and ordered from. 1 to 100. @default 5 */
  skus?: number;
  /** Stock a demo SKU gets when it is listed or runs low. @default 50 */
  restockTo?: number;
  /** How often the counts are reported (ms). @default 10000 */
  reportIntervalMs?: number;
  /** Where the report lines go. */
  report?: (line: string) => void;
  /** @default systemRandom */
  random?: Random;
  /** @default systemTimers */
  timers?: Timers;
}

export interface TrafficCounts {
  placed: number;
  confirmed: number;
  cancelled: number;
  failed: number;
}

/** The demo SKUs: `sku-00001` onwards, the names `commerce load` uses too. */
export function demoSku(index: number): string {
  return `sku-${String(index + 1).padStart(5, '0')}`;
}

const terminal = new Set(['confirmed', 'cancelled']);

/**
 * Gentle built-in traffic for the demo, through the public HTTP contract like any client: it
 * lists a few SKUs if they are missing, places a few orders a second (each with its own
 * Idempotency-Key, retried with the same key on a 5xx or a dropped connection), follows each
 * order to its end, restocks SKUs that run low, and reports counts now and then.
 */
export class Traffic {
  readonly #url: string;
  readonly #intervalMs: number;
  readonly #skus: number;
  readonly #restockTo: number;
  readonly #reportIntervalMs: number;
  readonly #report: (line: string) => void;
  readonly #random: Random;
  readonly #timers: Timers;
  readonly #counts: TrafficCounts = { placed: 0, confirmed: 0, cancelled: 0, failed: 0 };
  readonly #reasons = new Map<string, number>();
  readonly #inFlight = new Set<Promise<void>>();
  #orderTimer: TimerHandle | undefined;
  #reportTimer: TimerHandle | undefined;
  #stopped = false;
  #lastReported = '';
  readonly #stopping = new AbortController();
  readonly #token: string | undefined;

  constructor(options: TrafficOptions) {
    this.#token = options.token;
    const rate = options.ordersPerSecond ?? 2;
    if (!(rate >= 0.1 && rate <= 100)) {
      throw new ValidationError(`'ordersPerSecond' must be a number in [0.1, 100]: current value is ${rate}`);
    }
    const skus = options.skus ?? 5;
    if (!Number.isInteger(skus) || skus < 1 || skus > 100) {
      throw new ValidationError(`'skus' must be an integer in [1, 100]: current value is ${skus}`);
    }
    this.#url = options.url.replace(/\/$/, '');
    this.#intervalMs = 1000 / rate;
    this.#skus = skus;
    this.#restockTo = options.restockTo ?? 50;
    this.#reportIntervalMs = options.reportIntervalMs ?? 10_000;
    this.#report = options.report ?? (() => {});
    this.#random = options.random ?? systemRandom;
    this.#timers = options.timers ?? systemTimers;
  }

  get counts(): TrafficCounts {
    return { ...this.#counts };
  }

  /** Lists the demo SKUs that are missing, then starts placing orders. */
  async start(): Promise<void> {
    for (let index = 0; index < this.#skus; index++) {
      const sku = demoSku(index);
      const found = await this.#request('GET', `/inventory/${sku}`);
      if (found.status === 404) {
        await this.#request('PUT', `/inventory/${sku}`, { available: this.#restockTo, price: 5 + index * 5 });
      }
    }
    this.#scheduleOrder();
    this.#scheduleReport();
  }

  /** Stops placing orders and waits (bounded by each order's own follow-up bound) for those in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopping.abort();
    this.#orderTimer?.cancel();
    this.#reportTimer?.cancel();
    await Promise.allSettled([...this.#inFlight]);
  }

  #scheduleOrder(): void {
    if (this.#stopped) return;
    this.#orderTimer = this.#timers.setTimeout(() => {
      const placing = this.#placeAndFollow().catch(() => {
        this.#counts.failed += 1;
      });
      this.#inFlight.add(placing);
      void placing.finally(() => this.#inFlight.delete(placing));
      this.#scheduleOrder();
    }, this.#intervalMs);
  }

  #scheduleReport(): void {
    if (this.#stopped) return;
    this.#reportTimer = this.#timers.setTimeout(() => {
      const line = this.#summary();
      if (line !== this.#lastReported) this.#report(line);
      this.#lastReported = line;
      this.#scheduleReport();
    }, this.#reportIntervalMs);
  }

  #summary(): string {
    const { placed, confirmed, cancelled, failed } = this.#counts;
    const pending = placed - confirmed - cancelled;
    const reasons = [...this.#reasons.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .map(([reason, count]) => `${count}× ${reason}`);
    return `traffic: ${placed} orders placed, ${confirmed} confirmed, ${cancelled} cancelled${reasons.length > 0 ? ` (${reasons.join('; ')})` : ''}, ${pending} pending${failed > 0 ? `, ${failed} not placed` : ''}`;
  }

  async #placeAndFollow(): Promise<void> {
    const pick = (bound: number) => Math.floor(this.#random.next() * bound);
    const lines = 1 + pick(2);
    const skus = new Set<number>();
    while (skus.size < Math.min(lines, this.#skus)) skus.add(pick(this.#skus));
    const body = {
      customerId: `customer-${1 + pick(20)}`,
      items: [...skus].map((index) => ({ sku: demoSku(index), qty: 1 + pick(2) })),
    };
    const key = randomUUID();
    let placed: { status: number; body: unknown } | undefined;
    for (let attempt = 1; attempt <= 5 && !this.#stopped; attempt++) {
      placed = await this.#request('POST', '/orders', body, { 'idempotency-key': key }).catch(
        () => undefined,
      );
      // A 5xx or a dropped connection: the same key again cannot place a second order.
      if (placed !== undefined && placed.status < 500 && placed.status !== 409) break;
      await this.#sleep(500 * attempt);
    }
    if (placed?.status !== 202) {
      this.#counts.failed += 1;
      return;
    }
    this.#counts.placed += 1;
    const orderId = (placed.body as { orderId: string }).orderId;
    // Long polls (Prefer: wait): each answers as soon as the order ends, or after 10 s; a minute
    // in all. Draining the app answers them at once.
    for (let polls = 0; polls < 6 && !this.#stopped; polls++) {
      const order = await this.#request('GET', `/orders/${orderId}`, undefined, { prefer: 'wait=10' }).catch(
        () => undefined,
      );
      if (order === undefined) await this.#sleep(1000);
      const view = order?.body as { status?: string; reason?: string } | undefined;
      const status = view?.status;
      if (status !== undefined && terminal.has(status)) {
        if (status === 'confirmed') this.#counts.confirmed += 1;
        else {
          this.#counts.cancelled += 1;
          const reason = shortReason(view?.reason);
          this.#reasons.set(reason, (this.#reasons.get(reason) ?? 0) + 1);
        }
        break;
      }
    }
    // Keeps the demo going: a SKU an order ran out of gets its stock back.
    for (const item of body.items) {
      const stock = await this.#request('GET', `/inventory/${item.sku}`).catch(() => undefined);
      const available = (stock?.body as { available?: number; price?: number } | undefined)?.available;
      if (available !== undefined && available < 5 && !this.#stopped) {
        const price = (stock!.body as { price: number }).price;
        await this.#request('PUT', `/inventory/${item.sku}`, { available: this.#restockTo, price }).catch(
          () => {},
        );
      }
    }
  }

  #sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => {
      const signal = this.#stopping.signal;
      if (signal.aborted) return resolve();
      const onAbort = () => {
        timer.cancel();
        resolve();
      };
      const timer = this.#timers.setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, delayMs);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async #request(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: unknown }> {
    const response = await fetch(`${this.#url}${path}`, {
      method,
      // A long poll is answered up to its wait late by design; stopping cuts every request short.
      signal: AbortSignal.any([
        AbortSignal.timeout(headers.prefer === undefined ? 10_000 : 20_000),
        this.#stopping.signal,
      ]),
      headers: {
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(this.#token === undefined ? {} : { authorization: `Bearer ${this.#token}` }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    let parsed: unknown = null;
    try {
      parsed = text.length === 0 ? null : JSON.parse(text);
    } catch {
      parsed = text;
    }
    return { status: response.status, body: parsed };
  }
}

/** "out of stock: 'sku-00002' has 0 available, 2 requested" → "out of stock". */
function shortReason(reason: string | undefined): string {
  if (reason === undefined) return 'unknown';
  const colon = reason.indexOf(':');
  return colon === -1 ? reason : reason.slice(0, colon);
}
