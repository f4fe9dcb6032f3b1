/**
 * The cache: read-through (`get(key)` with the configured loader) and cache-aside (`get(key,
 * loader)`, `set`, `delete`) over an in-process tier (L1), a Redis tier (L2), or both.
 *
 * A read walks L1, then L2, then the loader; concurrent misses of a key share one load (single
 * flight). A value past its TTL is served while one background load refreshes it (within
 * staleWhileRevalidateMs) or when loading fails (within staleIfErrorMs). Absences are cached too
 * (negative caching). Every entry carries a version stamp and every tier compares stamps on
 * write, so a load that read old data never replaces a newer value or a newer invalidation
 * (the delete-then-late-set race). Writes and invalidations reach the other nodes' L1 through
 * the invalidation bus, and a node that may have missed messages drops its L1 (repair).
 */
import { ensureError, ValidationError } from '../errors.ts';
import { Emitter, type Subscribe, type Subscription } from '../resilience/events.ts';
import type { Clock } from '../time.ts';
import { capEntry, type Entry, makeEntry } from './entry.ts';
import type {
  CacheSnapshot,
  EvictEvent,
  HitEvent,
  LoadFailedEvent,
  MissEvent,
  StaleServedEvent,
} from './events.ts';
import { type Flight, Flights } from './flights.ts';
import type { InvalidationBus } from './invalidation.ts';
import { MemoryTier } from './memory-tier.ts';
import { type CacheOptions, type Loader, type ResolvedOptions, resolveOptions } from './options.ts';
import type { RedisTier } from './redis-tier.ts';

export interface SetOptions {
  /** The value's version; a write older than what a tier holds is refused. @default versionOf(value), else a new stamp */
  version?: number;
}

export interface DeleteOptions {
  /**
   * The version of the change that made the cached value wrong (an entity's new version): copies
   * at that version or later are kept, loads of older data are refused. @default a new stamp
   * above every version the tiers hold
   */
  version?: number;
}

/** The longest key accepted, in characters. */
export const MAX_KEY_CHARS = 1024;

function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_CHARS) {
    throw new ValidationError(
      `A cache key must be a string of 1 to ${MAX_KEY_CHARS} characters: current value is ${
        typeof key === 'string' ? `${key.length} characters long` : typeof key
      }`,
    );
  }
}

function checkVersion(version: unknown, from: string): number {
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
    throw new ValidationError(`${from} must be a safe integer >= 0: current value is ${String(version)}`);
  }
  return version;
}

export class Cache<V> {
  readonly name: string;
  readonly l2: RedisTier | undefined;
  readonly #options: ResolvedOptions<V>;
  readonly #clock: Clock;
  readonly #l1: MemoryTier<V> | undefined;
  readonly #bus: InvalidationBus | undefined;
  readonly #sharedPrefix: string;
  readonly #flights = new Flights<V>();
  /** Background refreshes (stale-while-revalidate); readers never wait for them. */
  readonly #refreshes = new Flights<V>();
  readonly #subscriptions: Subscription[] = [];
  readonly #counts = {
    hitsL1: 0,
    hitsL2: 0,
    misses: 0,
    loads: 0,
    loadFailures: 0,
    staleServed: 0,
    evictions: 0,
    writesRejected: 0,
    invalidationsReceived: 0,
    repairs: 0,
    redisErrors: 0,
  };

  readonly #hits = new Emitter<HitEvent>();
  readonly #missEvents = new Emitter<MissEvent>();
  readonly #staleEvents = new Emitter<StaleServedEvent>();
  readonly #loadFailedEvents = new Emitter<LoadFailedEvent>();
  readonly #evictEvents = new Emitter<EvictEvent>();
  /** A fresh value was served from L1 or L2. */
  readonly onHit: Subscribe<HitEvent> = this.#hits.subscribe;
  /** No tier had a usable value: the loader runs (or a running load is joined). */
  readonly onMiss: Subscribe<MissEvent> = this.#missEvents.subscribe;
  readonly onStaleServed: Subscribe<StaleServedEvent> = this.#staleEvents.subscribe;
  readonly onLoadFailed: Subscribe<LoadFailedEvent> = this.#loadFailedEvents.subscribe;
  /** L1 dropped an entry to stay within maxEntries or maxBytes. */
  readonly onEvict: Subscribe<EvictEvent> = this.#evictEvents.subscribe;

  constructor(options: CacheOptions<V>) {
    this.#options = resolveOptions(options);
    this.name = this.#options.name;
    this.#clock = this.#options.clock;
    this.#sharedPrefix = `${this.name}:`;
    this.l2 = options.l2;
    this.#bus = options.invalidation;
    const l1 = this.#options.l1;
    if (l1 !== undefined) {
      this.#l1 = new MemoryTier<V>({ ...l1, onEvict: (key, reason) => this.#evicted(key, reason) });
    }
    this.#connect();
  }

  /**
   * The value of `key`: from L1, L2, or `loader` (default: the configured one), which runs once
   * for every concurrent caller of the key.
   */
  get(key: string, loader?: Loader<V>): Promise<V> {
    try {
      checkKey(key);
    } catch (error) {
      return Promise.reject(error);
    }
    const entry = this.#l1?.get(key);
    if (entry !== undefined) {
      const nowMs = this.#clock.now();
      if (nowMs < entry.freshUntilMs) {
        this.#counts.hitsL1++;
        if (this.#hits.hasListeners) this.#hits.emit({ cache: this.name, key, tier: 'l1' });
        return Promise.resolve(entry.value);
      }
      if (nowMs < entry.revalidateUntilMs) {
        this.#stale(key, entry, 'revalidating', nowMs);
        this.#revalidate(key, loader ?? this.#options.loader);
        return Promise.resolve(entry.value);
      }
    }
    const flight = this.#flights.get(key);
    if (flight !== undefined && (flight.freshUntilMs ?? Number.POSITIVE_INFINITY) > this.#clock.now()) {
      return flight.promise;
    }
    const load = loader ?? this.#options.loader;
    return this.#flights.start(key, (started) => this.#read(key, load, entry, started, false)).promise;
  }

  /** True when values carry their own version (`versionOf`): invalidations then name versions. */
  get versioned(): boolean {
    return this.#options.versionOf !== undefined;
  }

  /** The fresh value L1 holds for `key`, without loading, touching Redis or counting: a peek. */
  peek(key: string): V | undefined {
    const entry = this.#l1?.peek(key);
    return entry !== undefined && this.#clock.now() < entry.freshUntilMs ? entry.value : undefined;
  }

  /**
   * Writes `value` through every tier and tells the other nodes. Returns false when a tier held a
   * newer version (the write was refused, and this node's copy dropped).
   */
  async set(key: string, value: V, options: SetOptions = {}): Promise<boolean> {
    checkKey(key);
    this.#invalidateLoads(key);
    const given = options.version ?? this.#sourceVersion(value);
    const nowMs = this.#clock.now();
    const data = this.#options.codec.encode(value);
    let entry = this.#entry(key, value, given ?? this.#localStamp(key, nowMs), data, nowMs);
    if (entry === undefined) return false;
    if (this.l2 !== undefined) {
      const stored = await this.l2.write(this.#sharedPrefix + key, entry, data, given === undefined, nowMs);
      if (stored === 'rejected') {
        this.#counts.writesRejected++;
        this.#l1?.delete(key);
        return false;
      }
      if (typeof stored === 'number') entry = { ...entry, version: stored };
    }
    if (!this.#storeL1(key, entry, nowMs)) return false;
    this.#bus?.publish({ cache: this.name, key, version: entry.version });
    return true;
  }

  /**
   * Invalidates `key` on every node and tier: loads running now will not store what they read,
   * and Redis keeps a tombstone so a late write of older data is refused.
   */
  async delete(key: string, options: DeleteOptions = {}): Promise<void> {
    checkKey(key);
    const version = options.version === undefined ? undefined : checkVersion(options.version, "'version'");
    this.#invalidateLocal(key, version ?? null);
    let stamped = version ?? null;
    if (this.l2 !== undefined) {
      const stored = await this.l2.invalidate(this.#sharedPrefix + key, version);
      if (typeof stored === 'number') stamped = stored;
      // A read that found the old entry in Redis before the tombstone landed may have put it in
      // L1 meanwhile, and a load running now may have read it: drop both again.
      this.#invalidateLocal(key, version ?? null);
    }
    this.#bus?.publish({ cache: this.name, key, version: stamped });
  }

  /** Drops every key from L1, here and on every other node (Redis entries expire by their TTL). */
  clear(): void {
    this.#dropAll();
    this.#bus?.publish({ cache: this.name, key: null, version: null });
  }

  snapshot(): CacheSnapshot {
    return {
      name: this.name,
      entries: this.#l1?.size ?? 0,
      bytes: this.#l1?.bytes ?? 0,
      ...this.#counts,
      pendingInvalidations: this.l2?.pendingInvalidations.kept ?? 0,
    };
  }

  /** Stops listening to the bus and Redis; the cache still answers, as one node. */
  close(): void {
    for (const subscription of this.#subscriptions.splice(0)) subscription.dispose();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #connect(): void {
    if (this.#bus !== undefined) {
      this.#subscriptions.push(
        this.#bus.join(this.name, {
          invalidate: (key, version) => {
            this.#counts.invalidationsReceived++;
            if (key === null) this.#dropAll();
            else this.#invalidateLocal(key, version);
          },
          repair: () => {
            this.#counts.repairs++;
            this.#dropAll();
          },
        }),
      );
    }
    const l2 = this.l2;
    if (l2 === undefined) return;
    this.#subscriptions.push(
      l2.onError((event) => {
        if (event.key.startsWith(this.#sharedPrefix)) this.#counts.redisErrors++;
      }),
      l2.onReplayed(({ key, version }) => {
        if (!key.startsWith(this.#sharedPrefix)) return;
        this.#bus?.publish({ cache: this.name, key: key.slice(this.#sharedPrefix.length), version });
      }),
    );
  }

  /** The loader a miss needs; a cache without one can still answer hits (cache-aside reads). */
  #loaderFor(loader: Loader<V> | undefined): Loader<V> {
    const chosen = loader;
    if (typeof chosen !== 'function') {
      throw new ValidationError(
        `Cache '${this.name}' has no loader: pass one to get(key, loader) or set the 'loader' option`,
      );
    }
    return chosen;
  }

  /** A miss in L1: L2, then the loader. `refresh` skips L2 entries that are not fresh. */
  async #read(
    key: string,
    loader: Loader<V> | undefined,
    local: Entry<V> | undefined,
    flight: Flight<V>,
    refresh: boolean,
  ): Promise<V> {
    let epoch = 0;
    let fallback = local;
    if (this.l2 !== undefined) {
      const read = await this.l2.read(this.#sharedPrefix + key, this.#options.codec);
      if (read.kind === 'entry') {
        const shared = read.entry;
        const nowMs = this.#clock.now();
        if (nowMs < shared.freshUntilMs) return this.#sharedHit(key, shared, flight, nowMs);
        if (!refresh && nowMs < shared.revalidateUntilMs) {
          if (!flight.stale) this.#storeL1(key, shared, nowMs);
          this.#stale(key, shared, 'revalidating', nowMs);
          this.#revalidate(key, loader);
          return shared.value;
        }
        epoch = shared.version;
        if (fallback === undefined || shared.errorUntilMs > fallback.errorUntilMs) fallback = shared;
      } else if (read.kind === 'absent') {
        epoch = read.version;
      }
    }
    return this.#load(key, loader, flight, epoch, fallback);
  }

  #sharedHit(key: string, entry: Entry<V>, flight: Flight<V>, nowMs: number): V {
    this.#counts.hitsL2++;
    if (this.#hits.hasListeners) this.#hits.emit({ cache: this.name, key, tier: 'l2' });
    if (!flight.stale && this.#l1 !== undefined) this.#storeL1(key, entry, nowMs);
    return entry.value;
  }

  async #load(
    key: string,
    given: Loader<V> | undefined,
    flight: Flight<V>,
    epoch: number,
    fallback: Entry<V> | undefined,
  ): Promise<V> {
    this.#counts.misses++;
    if (this.#missEvents.hasListeners) this.#missEvents.emit({ cache: this.name, key });
    const loader = this.#loaderFor(given);
    this.#counts.loads++;
    const startedMs = this.#clock.monotonicNow();
    let value: V;
    try {
      value = await loader(key);
    } catch (error) {
      return this.#loadFailed(key, error, fallback);
    }
    if (!flight.stale && this.#clock.monotonicNow() - startedMs <= this.#options.maxLoadMs) {
      const nowMs = this.#clock.now();
      const data = this.#options.codec.encode(value);
      const entry = this.#entry(key, value, this.#sourceVersion(value) ?? epoch, data, nowMs);
      if (entry !== undefined) {
        // Callers get the value now; storing it (a Redis round trip, or a timeout) goes on behind.
        flight.freshUntilMs = entry.freshUntilMs;
        flight.storing = this.#store(key, entry, data, flight, nowMs);
      }
    }
    return value;
  }

  #loadFailed(key: string, error: unknown, fallback: Entry<V> | undefined): V {
    this.#counts.loadFailures++;
    const nowMs = this.#clock.now();
    const serveStale = fallback !== undefined && nowMs < fallback.errorUntilMs;
    if (this.#loadFailedEvents.hasListeners) {
      this.#loadFailedEvents.emit({
        cache: this.name,
        key,
        error: ensureError(error),
        staleServed: serveStale,
      });
    }
    if (!serveStale) throw error;
    this.#stale(key, fallback, 'load-failed', nowMs);
    return fallback.value;
  }

  /** Stores a loaded value: in L2 first (which may refuse it as older), then in L1. */
  async #store(key: string, entry: Entry<V>, data: string, flight: Flight<V>, nowMs: number): Promise<void> {
    if (this.l2 !== undefined) {
      const stored = await this.l2.write(this.#sharedPrefix + key, entry, data, false, nowMs);
      if (stored === 'rejected') {
        this.#counts.writesRejected++;
        return;
      }
    }
    if (!flight.stale && this.#l1 !== undefined) this.#storeL1(key, entry, nowMs);
  }

  #entry(key: string, value: V, version: number, data: string, nowMs: number): Entry<V> | undefined {
    const negative = this.#options.isNegative(value);
    const windows = negative ? this.#options.negativeWindows : this.#options.windows;
    if (windows.ttlMs === 0) return undefined;
    const sizeOf = this.#options.sizeOf;
    const bytes = sizeOf === undefined ? data.length + key.length : sizeOf(value, key);
    return makeEntry(value, version, negative, bytes, nowMs, windows);
  }

  /** Stores the entry in L1; false when L1 holds a newer version of the key. */
  #storeL1(key: string, entry: Entry<V>, nowMs: number): boolean {
    const l1 = this.#l1;
    if (l1 === undefined) return true;
    const capped = capEntry(
      entry,
      nowMs + this.#options.l1!.ttlMs,
      this.#options.windows.staleWhileRevalidateMs,
    );
    const stored = l1.set(key, capped, (tooLarge) => this.#evicted(tooLarge, 'too-large'));
    if (stored || l1.peek(key) === undefined) return true;
    this.#counts.writesRejected++;
    return false;
  }

  #sourceVersion(value: V): number | undefined {
    const versionOf = this.#options.versionOf;
    if (versionOf === undefined) return undefined;
    const version = versionOf(value);
    return version === undefined
      ? undefined
      : checkVersion(version, `versionOf(value) of cache '${this.name}'`);
  }

  /** A version above the key's current L1 one, from the clock in µs when the cache has no L2. */
  #localStamp(key: string, nowMs: number): number {
    return Math.max((this.#l1?.peek(key)?.version ?? 0) + 1, Math.floor(nowMs) * 1000);
  }

  #revalidate(key: string, loader: Loader<V> | undefined): void {
    if (this.#refreshes.get(key) !== undefined) return;
    const refresh = this.#refreshes.start(key, (flight) => this.#read(key, loader, undefined, flight, true));
    // Nobody awaits a background refresh; its failure was already reported as onLoadFailed.
    refresh.promise.catch(() => {});
  }

  #stale(key: string, entry: Entry<V>, reason: StaleServedEvent['reason'], nowMs: number): void {
    this.#counts.staleServed++;
    if (this.#staleEvents.hasListeners) {
      this.#staleEvents.emit({ cache: this.name, key, reason, staleForMs: nowMs - entry.freshUntilMs });
    }
  }

  #invalidateLoads(key: string): void {
    this.#flights.invalidate(key);
    this.#refreshes.invalidate(key);
  }

  /** Drops the L1 copy (unless it is at `version` or later) and marks running loads stale. */
  #invalidateLocal(key: string, version: number | null): void {
    this.#invalidateLoads(key);
    if (this.#l1 === undefined) return;
    if (version !== null && (this.#l1.peek(key)?.version ?? -1) >= version) return;
    this.#l1.delete(key);
  }

  #dropAll(): void {
    this.#flights.invalidateAll();
    this.#refreshes.invalidateAll();
    this.#l1?.clear();
  }

  #evicted(key: string, reason: EvictEvent['reason']): void {
    this.#counts.evictions++;
    if (this.#evictEvents.hasListeners) this.#evictEvents.emit({ cache: this.name, key, reason });
  }
}

/** A cache. One per kind of value (catalog entries, profiles), shared by every caller in the process. */
export function createCache<V>(options: CacheOptions<V>): Cache<V> {
  return new Cache(options);
}
