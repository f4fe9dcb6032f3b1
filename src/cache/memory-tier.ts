/**
 * The in-process tier (L1): a bounded LRU on `lru-cache` — the most used LRU for Node, whose
 * typed-array linked list makes a hit a few array reads — bounded by entries and by bytes. It
 * keeps no timers: freshness is judged by the cache on read against its own clock.
 */
import { LRUCache } from 'lru-cache';
import { plantedBug } from '../planted-bugs.ts';
import type { Entry } from './entry.ts';

export type EvictionReason = 'capacity' | 'too-large';

export interface MemoryTierOptions {
  maxEntries: number;
  maxBytes: number;
  onEvict: (key: string, reason: EvictionReason) => void;
}

export class MemoryTier<V> {
  readonly maxEntries: number;
  readonly maxBytes: number;
  readonly #lru: LRUCache<string, Entry<V>>;

  constructor(options: MemoryTierOptions) {
    this.maxEntries = options.maxEntries;
    this.maxBytes = options.maxBytes;
    const onEvict = options.onEvict;
    this.#lru = new LRUCache<string, Entry<V>>({
      max: options.maxEntries,
      maxSize: options.maxBytes,
      sizeCalculation: (entry) => Math.max(1, entry.bytes),
      // Only capacity evictions are events; overwrites and deletes are the cache's own doing.
      dispose: (_entry, key, reason) => {
        if (reason === 'evict') onEvict(key, 'capacity');
      },
    });
  }

  get size(): number {
    return this.#lru.size;
  }

  get bytes(): number {
    return this.#lru.calculatedSize;
  }

  /** The entry, marked most recently used. */
  get(key: string): Entry<V> | undefined {
    return this.#lru.get(key);
  }

  /** The entry, without touching recency. */
  peek(key: string): Entry<V> | undefined {
    return this.#lru.peek(key);
  }

  /**
   * Stores the entry unless the tier holds a newer version of the key (version stamps compared on
   * write). Returns whether it was stored; an entry larger than `maxBytes` never is.
   */
  set(key: string, entry: Entry<V>, onTooLarge: (key: string) => void): boolean {
    const current = this.#lru.peek(key);
    const older = current !== undefined && current.version > entry.version;
    // Planted bug (tests only, src/planted-bugs.ts): the write is stored whatever version is held.
    if (older && plantedBug !== 'cache-stale-set') return false;
    if (entry.bytes > this.maxBytes) {
      this.#lru.delete(key);
      onTooLarge(key);
      return false;
    }
    this.#lru.set(key, entry);
    return true;
  }

  delete(key: string): void {
    this.#lru.delete(key);
  }

  clear(): void {
    this.#lru.clear();
  }
}
