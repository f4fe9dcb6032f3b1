/**
 * A map with a bound on its size, dropping the least recently used key when full. Per-key
 * limiter state lives here, so a flood of distinct keys (client ids, IP addresses) costs a fixed
 * amount of memory instead of growing without end.
 */
import { assert } from '../assert.ts';

export class BoundedKeyMap<V> {
  readonly maxKeys: number;
  readonly #entries = new Map<string, V>();
  /** The key touched last: touching it again needs no reordering, the common case for one hot key. */
  #newest: string | undefined;

  constructor(maxKeys: number) {
    assert(Number.isInteger(maxKeys) && maxKeys >= 1, 'a key map holds at least one key');
    this.maxKeys = maxKeys;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Returns the value for `key` and marks it most recently used. */
  get(key: string): V | undefined {
    const value = this.#entries.get(key);
    if (value !== undefined && key !== this.#newest) {
      this.#entries.delete(key);
      this.#entries.set(key, value);
      this.#newest = key;
    }
    return value;
  }

  /** Stores `value` for a key that `get` just reported missing, evicting the oldest key if full. */
  add(key: string, value: V): void {
    if (this.#entries.size >= this.maxKeys) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.set(key, value);
    this.#newest = key;
    assert(this.#entries.size <= this.maxKeys, 'the key map stays within its bound');
  }
}
