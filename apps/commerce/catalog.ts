import {
  bindEntityChanges,
  type Cache,
  type CacheSnapshot,
  createCache,
  type InvalidationBus,
  type RedisTier,
} from '../../src/cache/index.ts';
import type { Clock, EntityChange, Runtime } from '../../src/index.ts';
import type { Subscription } from '../../src/resilience/index.ts';
import { Inventory, type StockState } from './inventory.ts';
import type { OrderItem } from './order.ts';

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
  /**
   * The shared Redis tier (cluster shape): entries are then shared by every node, and a price
   * change on one node reaches the others through `invalidation`. @default in process only
   */
  l2?: RedisTier;
  /** Carries invalidations to the other nodes. @default none: one node */
  invalidation?: InvalidationBus;
  /** @default systemClock */
  clock?: Clock;
}

type Cached = CatalogEntry | null;

/** Rounds a money amount to cents, so totals do not carry binary floating-point noise. */
export function roundMoney(amount: number): number {
  return Math.round(amount * 100) / 100;
}

/**
 * What the catalog shows of a SKU's stock that decides whether its cached entry is wrong: listed,
 * price, in stock or not. The available count changes on every reservation; invalidating on it
 * would empty the cache of exactly the SKUs that sell, so it may lag by up to the TTL.
 */
function shown(state: StockState | undefined): unknown {
  return state === undefined ? null : [state.listed, state.price, state.available > 0];
}

function listingChanged(change: EntityChange): boolean {
  if (change.entity !== Inventory.name) return false;
  const before = shown(change.previousState as unknown as StockState | undefined);
  return JSON.stringify(before) !== JSON.stringify(shown(change.state as unknown as StockState | undefined));
}

function entryOf(state: StockState): CatalogEntry | null {
  if (!state.listed || state.price === null) return null;
  return { sku: state.sku, price: state.price, available: state.available, inStock: state.available > 0 };
}

/**
 * The catalog read model: prices and stock levels as shoppers see them, served from Meridian's
 * cache (in process, and in Redis on the cluster shape) in front of the Inventory entities.
 * Placing an order prices its lines here, so the hot path does not read the store for every
 * order. The caches are bound to the runtime's committed entity changes: a change of what the
 * catalog shows (listed, price, in stock) invalidates the SKU's entry and the listing pages on
 * every node before the command that made it resolves; the available count alone may lag by up
 * to the TTL (the reservation itself always checks the real stock).
 */
export class Catalog {
  readonly #runtime: Runtime;
  /** Entries by SKU; an unlisted SKU is cached as null (negative caching). */
  readonly entries: Cache<Cached>;
  /**
   * Pages of the listing, in process only: a page depends on every SKU in it, so any change
   * clears them all (on every node, through the invalidation bus).
   */
  readonly pages: Cache<CatalogEntry[]>;
  readonly #bindings: Subscription[];

  constructor(runtime: Runtime, options: CatalogOptions = {}) {
    this.#runtime = runtime;
    const ttlMs = options.ttlMs ?? 2000;
    const shared = {
      ttlMs,
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.invalidation === undefined ? {} : { invalidation: options.invalidation }),
    };
    this.entries = createCache<Cached>({
      ...shared,
      name: 'catalog-entries',
      l1: { maxEntries: options.maxEntries ?? 10_000 },
      ...(options.l2 === undefined ? {} : { l2: options.l2 }),
      loader: async (sku) => {
        const found = await this.#runtime.state(Inventory, sku);
        return found === null ? null : entryOf(found.state);
      },
    });
    this.pages = createCache<CatalogEntry[]>({ ...shared, name: 'catalog-pages', l1: { maxEntries: 100 } });
    this.#bindings = [
      bindEntityChanges(runtime, this.entries, { entity: Inventory, project: shown }),
      // A page depends on every SKU in it: any listing change clears them all, on every node.
      runtime.onEntityChanges((changes) => {
        if (changes.some(listingChanged)) this.pages.clear();
      }),
    ];
  }

  get stats(): { entries: CacheSnapshot; pages: CacheSnapshot } {
    return { entries: this.entries.snapshot(), pages: this.pages.snapshot() };
  }

  /** One SKU's catalog entry (null when unlisted), through the cache. */
  entry(sku: string): Promise<CatalogEntry | null> {
    return this.entries.get(sku);
  }

  /** A page of listed SKUs in SKU order, through the cache. */
  page(limit: number, after?: string): Promise<CatalogEntry[]> {
    return this.pages.get(`${limit}:${after ?? ''}`, async () => {
      const records = await this.#runtime.read((tx) =>
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

  /** Stops listening for committed changes and other nodes' invalidations. */
  close(): void {
    for (const binding of this.#bindings.splice(0)) binding.dispose();
    this.entries.close();
    this.pages.close();
  }
}
