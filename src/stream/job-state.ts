import { assert } from '../assert.ts';
import { ConflictError } from '../errors.ts';
import type { Json, Store, StoreTransaction } from '../store/types.ts';

/** The entity type job state lives under ('$' names are the platform's own). */
export const stateType = '$meridian.stream';
/**
 * Characters of serialised state per row. A row holds at most storeLimits.maxJsonBytes (1 MiB)
 * of JSON: a chunk is stored as a JSON string, whose escaping at most sextuples a character's
 * UTF-8 size (a control character becomes \u00XX), so 150,000 characters always fit.
 */
const chunkChars = 150_000;

/**
 * A job's committed state: one meta row (its version fences the job: a second instance of the
 * same job commits only if nobody committed since it loaded) and the serialised snapshot split
 * over as many chunk rows as it needs.
 */
export class JobStateRows {
  readonly #name: string;
  readonly #versions = new Map<string, number>();
  #chunks = 0;
  #lastBytes = 0;

  constructor(name: string) {
    this.#name = name;
  }

  /** Characters of the last snapshot saved or loaded: the job's state size. */
  get lastBytes(): number {
    return this.#lastBytes;
  }

  async load(store: Store): Promise<Json | null> {
    return store.read(async (tx) => {
      const meta = await tx.entities.get(stateType, this.#name);
      if (meta === null) return null;
      this.#versions.set(this.#name, meta.version);
      const { chunks } = meta.state as { chunks: number };
      const parts: string[] = [];
      for (let index = 0; index < chunks; index++) {
        const row = await tx.entities.get(stateType, this.#chunkId(index));
        assert(row !== null, `state chunk ${index} of stream job '${this.#name}' exists`);
        this.#versions.set(this.#chunkId(index), row.version);
        parts.push(row.state as string);
      }
      this.#chunks = chunks;
      const text = parts.join('');
      this.#lastBytes = text.length;
      return JSON.parse(text) as Json;
    });
  }

  /** Writes `snapshot` in `tx`; ConflictError when another instance of the job committed since. */
  async save(tx: StoreTransaction, snapshot: Json): Promise<void> {
    const text = JSON.stringify(snapshot);
    const chunks = Math.max(1, Math.ceil(text.length / chunkChars));
    for (let index = 0; index < chunks; index++) {
      await this.#put(tx, this.#chunkId(index), text.slice(index * chunkChars, (index + 1) * chunkChars));
    }
    for (let index = chunks; index < this.#chunks; index++) {
      const id = this.#chunkId(index);
      await tx.entities.delete(stateType, id, this.#versions.get(id) ?? 0);
    }
    await this.#put(tx, this.#name, { chunks });
    this.#pending = { chunks, bytes: text.length };
  }

  #pending: { chunks: number; bytes: number } | null = null;
  #pendingVersions = new Map<string, number>();

  /** After the transaction of `save` committed: its versions become the ones to expect. */
  committed(): void {
    for (const [id, version] of this.#pendingVersions) this.#versions.set(id, version);
    for (let index = this.#pending?.chunks ?? 0; index < this.#chunks; index++)
      this.#versions.delete(this.#chunkId(index));
    this.#chunks = this.#pending?.chunks ?? this.#chunks;
    this.#lastBytes = this.#pending?.bytes ?? this.#lastBytes;
    this.#pendingVersions.clear();
    this.#pending = null;
  }

  /** After the transaction of `save` rolled back. */
  abandoned(): void {
    this.#pendingVersions.clear();
    this.#pending = null;
  }

  async #put(tx: StoreTransaction, id: string, state: Json): Promise<void> {
    const expected = this.#versions.get(id) ?? 0;
    try {
      this.#pendingVersions.set(id, await tx.entities.put(stateType, id, state, expected));
    } catch (error) {
      if (error instanceof ConflictError) {
        throw new ConflictError(
          `Stream job '${this.#name}' was committed by another instance since this one loaded its state (row '${id}' is past version ${expected}): stop one of them`,
          { cause: error, details: { job: this.#name, row: id, expectedVersion: expected } },
        );
      }
      throw error;
    }
  }

  #chunkId(index: number): string {
    return `${this.#name}#${index}`;
  }
}
