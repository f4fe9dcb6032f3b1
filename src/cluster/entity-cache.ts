import type { EntityRecord } from '../store/types.ts';

interface Entry {
  /** The record as JSON text (each reader gets its own copy), or null: known not to exist. */
  readonly text: string | null;
  readonly version: number;
  readonly updatedAt: number;
  /** The epoch of the entity's work partition this node held when it learnt the record. */
  readonly epoch: number;
}

interface OverlayEntry {
  readonly record: EntityRecord | null;
  readonly partition: number;
}

/**
 * What one transaction read or wrote of entities, to go into the cache if it commits. A nested
 * scope (a savepoint) has its own, which sees its parent's and goes into it when released.
 */
export class EntityOverlay {
  readonly #own = new Map<string, OverlayEntry>();
  readonly #parent: EntityOverlay | undefined;

  constructor(parent?: EntityOverlay) {
    this.#parent = parent;
  }

  get(key: string): OverlayEntry | undefined {
    return this.#own.get(key) ?? this.#parent?.get(key);
  }

  set(key: string, entry: OverlayEntry): void {
    this.#own.set(key, entry);
  }

  /** The nested scope was released: its entries become its parent's. */
  release(): void {
    for (const [key, entry] of this.#own) this.#parent?.set(key, entry);
  }

  entries(): IterableIterator<[string, OverlayEntry]> {
    return this.#own.entries();
  }
}

export function entityCacheKey(type: string, id: string): string {
  return `${type}\u0000${id}`;
}

/**
 * The last committed state of entities of the work partitions this node owns, least recently used
 * dropped first. It can be trusted because an owner is the only writer of its partitions: every
 * other node's write for them is fenced. An entry counts only under the epoch it was learnt in,
 * so a partition that moved away and came back is read afresh. It is only ever a shortcut: every
 * write still names the version it read, so a stale entry makes a transaction fail its version
 * check (and the cache is then cleared), never write over newer state.
 */
export class EntityCache {
  readonly #maxEntries: number;
  readonly #entries = new Map<string, Entry>();

  constructor(maxEntries: number) {
    this.#maxEntries = maxEntries;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The cached record of `key` learnt under `epoch` (null: it does not exist), else undefined. */
  get(key: string, epoch: number): { record: EntityRecord | null } | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.epoch !== epoch) {
      this.#entries.delete(key);
      return undefined;
    }
    // Most recently used last.
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return { record: entry.text === null ? null : parseEntry(key, entry) };
  }

  /** True when `key` is cached under `epoch` (as `get` would find it), without reading it. */
  has(key: string, epoch: number): boolean {
    const entry = this.#entries.get(key);
    return entry !== undefined && entry.epoch === epoch;
  }

  /** Remembers what a committed transaction read or wrote; `epochOf` gives each partition's epoch. */
  apply(overlay: EntityOverlay, epochOf: (partition: number) => number | undefined): void {
    if (this.#maxEntries === 0) return;
    for (const [key, { record, partition }] of overlay.entries()) {
      const epoch = epochOf(partition);
      this.#entries.delete(key);
      if (epoch === undefined) continue;
      this.#entries.set(key, {
        text: record === null ? null : JSON.stringify(record.state),
        version: record?.version ?? 0,
        updatedAt: record?.updatedAt ?? 0,
        epoch,
      });
    }
    for (const key of this.#entries.keys()) {
      if (this.#entries.size <= this.#maxEntries) break;
      this.#entries.delete(key);
    }
  }

  clear(): void {
    this.#entries.clear();
  }
}

function parseEntry(key: string, entry: Entry): EntityRecord {
  const split = key.indexOf('\u0000');
  return {
    type: key.slice(0, split),
    id: key.slice(split + 1),
    state: JSON.parse(entry.text as string),
    version: entry.version,
    updatedAt: entry.updatedAt,
  };
}
