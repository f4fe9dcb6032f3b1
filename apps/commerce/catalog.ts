import type { Runtime } from '../../src/index.ts';
import type { Store } from '../../src/store/index.ts';
import { Inventory, type StockState } from './inventory.ts';
import type { OrderItem } from './order.ts';
import { TtlCache } from './ttl-cache.ts';

/** What shoppers see of a SKU: its price and whether it can be ordered now. */
export interface CatalogEntry {
  readonly sku: string;
  readonly price: number;
  readonly available: number;
  readonly inStock: boolean;
}

/** An order's lines priced from the catalog, or the SKUs the catalog does not list. */
export type Quote =
  | { readonly ok: true; readonly items: OrderItem[]; readonly total: number }
  | { readonly ok: false; readonly unknownSkus: string[] };

export interface CatalogOptions {
  /** How long a catalog entry is served from memory (ms). @default 2000 */
  ttlMs?: number;
  /** Catalog entries kept in memory. @default 10000 */
  maxEntries?: number;
}

type Cached = CatalogEntry | null;

/** Rounds a money amount to cents, so totals do not carry binary floating-point noise. */
export function roundMoney(amount: number): number {
  return Math.round(amount * 100) / 100;
}

function entryOf(state: StockState): CatalogEntry | null {
  if (!state.listed || state.price === null) return null;
  return { sku: state.sku, price: state.price, available: state.available, inStock: state.available > 0 };
}

/**
 * The catalog read model: prices and stock levels as shoppers see them, served from an
 * in-process cache in front of the Inventory entities. Placing an order prices its lines here,
 * so the hot path does not read the store for every order; a price change (`PUT
 * /inventory/{sku}`) invalidates its entry at once, and stock levels shown here may lag by up
 * to the TTL (the reservation itself always checks the real stock).
 */
export class Catalog {
  readonly #runtime: Runtime;
  readonly #store: Store;
  readonly #entries: TtlCache<Cached>;
  readonly #pages: TtlCache<CatalogEntry[]>;

  constructor(runtime: Runtime, store: Store, options: CatalogOptions = {}) {
    this.#runtime = runtime;
    this.#store = store;
    const ttlMs = options.ttlMs ?? 2000;
    this.#entries = new TtlCache<Cached>({ ttlMs, maxEntries: options.maxEntries ?? 10_000 });
    this.#pages = new TtlCache<CatalogEntry[]>({ ttlMs, maxEntries: 100 });
  }

  get stats() {
    return { entries: this.#entries.stats, pages: this.#pages.stats };
  }

  /** One SKU's catalog entry (null when unlisted), through the cache. */
  entry(sku: string): Promise<CatalogEntry | null> {
    return this.#entries.get(sku, async () => {
      const found = await this.#runtime.state(Inventory, sku);
      return found === null ? null : entryOf(found.state);
    });
  }

  /** A page of listed SKUs in SKU order, through the cache. */
  page(limit: number, after?: string): Promise<CatalogEntry[]> {
    return this.#pages.get(`${limit}:${after ?? ''}`, async () => {
      const records = await this.#store.read((tx) =>
        tx.entities.list(Inventory.name, { limit, ...(after === undefined ? {} : { afterId: after }) }),
      );
      return records.flatMap((record) => {
        const entry = entryOf(record.state as unknown as StockState);
        return entry === null ? [] : [entry];
      });
    });
  }

  /** Prices an order's lines (merging lines of the same SKU); lists the SKUs it does not know. */
  async quote(lines: readonly { sku: string; qty: number }[]): Promise<Quote> {
    const merged = new Map<string, number>();
    for (const line of lines) merged.set(line.sku, (merged.get(line.sku) ?? 0) + line.qty);
    const skus = [...merged.keys()];
    const entries = await Promise.all(skus.map((sku) => this.entry(sku)));
    const unknownSkus = skus.filter((_, index) => entries[index] === null);
    if (unknownSkus.length > 0) return { ok: false, unknownSkus };
    const items = skus.map((sku, index) => ({ sku, qty: merged.get(sku)!, price: entries[index]!.price }));
    const total = roundMoney(items.reduce((sum, item) => sum + item.qty * item.price, 0));
    return { ok: true, items, total };
  }

  /** Forgets what the cache holds about `sku` (its stock or price changed). */
  invalidate(sku: string): void {
    this.#entries.invalidate(sku);
    this.#pages.clear();
  }
}
