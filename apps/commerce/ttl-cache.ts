import { type Clock, systemClock, ValidationError } from '../../src/index.ts';

export interface TtlCacheOptions {
  /** How long a loaded value is served before it is loaded again (ms). 1 to 3600000. @default 5000 */
  ttlMs?: number;
  /** Entries kept at most; the least recently used goes first. 1 to 1000000. @default 10000 */
  maxEntries?: number;
  /** @default systemClock */
  clock?: Clock;
}

export interface TtlCacheStats {
  readonly hits: number;
  readonly misses: number;
  /** Loads actually run: misses that found a load in flight joined it instead (single flight). */
  readonly loads: number;
  readonly size: number;
}

interface Entry<V> {
  readonly value: V;
  readonly expiresAt: number;
}

function boundedInteger(name: string, value: number | undefined, fallback: number, max: number): number {
  const actual = value ?? fallback;
  if (!Number.isInteger(actual) || actual < 1 || actual > max) {
    throw new ValidationError(
      `'${name}' must be an integer in [1, ${max}]: current value is ${String(actual)}`,
    );
  }
  return actual;
}

/**
 * A small read-through cache: values expire after a TTL, concurrent misses of one key share a
 * single load (no stampede on the store when a hot key expires), the size is bounded (least
 * recently used first out), and `invalidate` guarantees that a load which started before it
 * cannot put its now stale value back.
 *
 * In process only: the commerce app runs on one node. A shared cache with invalidation across
 * nodes belongs in Meridian's cache layer.
 */
export class TtlCache<V> {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #clock: Clock;
  /** Insertion order is recency order: a hit moves its key to the end. */
  readonly #entries = new Map<string, Entry<V>>();
  /** Loads in flight; `stale` is set when the key was invalidated meanwhile. */
  readonly #loading = new Map<string, { promise: Promise<V>; stale: boolean }>();
  #hits = 0;
  #misses = 0;
  #loads = 0;

  constructor(options: TtlCacheOptions = {}) {
    this.#ttlMs = boundedInteger('ttlMs', options.ttlMs, 5000, 3_600_000);
    this.#maxEntries = boundedInteger('maxEntries', options.maxEntries, 10_000, 1_000_000);
    this.#clock = options.clock ?? systemClock;
  }

  get stats(): TtlCacheStats {
    return { hits: this.#hits, misses: this.#misses, loads: this.#loads, size: this.#entries.size };
  }

  /** The cached value of `key`, or what `load` returns (once, for all concurrent callers). */
  get(key: string, load: () => Promise<V>): Promise<V> {
    const entry = this.#entries.get(key);
    if (entry !== undefined) {
      if (entry.expiresAt > this.#clock.now()) {
        this.#hits += 1;
        this.#entries.delete(key);
        this.#entries.set(key, entry);
        return Promise.resolve(entry.value);
      }
      this.#entries.delete(key);
    }
    this.#misses += 1;
    const inFlight = this.#loading.get(key);
    if (inFlight !== undefined) return inFlight.promise;
    this.#loads += 1;
    const flight = { promise: undefined as unknown as Promise<V>, stale: false };
    flight.promise = (async () => {
      try {
        const value = await load();
        if (!flight.stale) this.#store(key, value);
        return value;
      } finally {
        if (this.#loading.get(key) === flight) this.#loading.delete(key);
      }
    })();
    this.#loading.set(key, flight);
    return flight.promise;
  }

  /** Forgets `key`; a load of it already running will not store its result. */
  invalidate(key: string): void {
    this.#entries.delete(key);
    const flight = this.#loading.get(key);
    if (flight !== undefined) {
      flight.stale = true;
      // Callers from now on start a fresh load instead of joining the stale one.
      this.#loading.delete(key);
    }
  }

  /** Forgets every key. */
  clear(): void {
    for (const key of [...this.#entries.keys(), ...this.#loading.keys()]) this.invalidate(key);
  }

  #store(key: string, value: V): void {
    this.#entries.set(key, { value, expiresAt: this.#clock.now() + this.#ttlMs });
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }
}
