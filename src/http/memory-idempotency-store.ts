import { ConflictError } from '../errors.ts';
import { decideReservation } from '../store/idempotency-rule.ts';
import type { IdempotencyReservation, IdempotencyStore, StoredResponse } from '../store/types.ts';

interface Entry {
  fingerprint: string;
  leaseUntil: number;
  expiresAt: number;
  response: StoredResponse | null;
}

/**
 * An IdempotencyStore held in process memory, for a gateway whose replays need not survive a
 * restart (a simulator, a test) and as the reference for the contract's semantics. Every call
 * completes synchronously before its promise resolves, so `reserve` is atomic: two concurrent
 * requests with one key can never both be told `reserved`.
 *
 * It is bounded: past `maxKeys` live keys, `reserve` refuses new ones (ConflictError) rather
 * than grow without limit; `expire` makes room again.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly #entries = new Map<string, Entry>();
  readonly #maxKeys: number;

  /** @param maxKeys live keys kept at most. @default 100000 */
  constructor(options: { maxKeys?: number } = {}) {
    this.#maxKeys = options.maxKeys ?? 100_000;
  }

  get size(): number {
    return this.#entries.size;
  }

  async reserve(request: {
    scope: string;
    key: string;
    fingerprint: string;
    nowMs: number;
    leaseMs: number;
    expiresAt: number;
  }): Promise<IdempotencyReservation> {
    const id = entryId(request.scope, request.key);
    const existing = this.#entries.get(id);
    const decision = decideReservation(
      existing === undefined ? undefined : { ...existing, completed: existing.response !== null },
      request.fingerprint,
      request.nowMs,
    );
    if (decision === 'mismatch') return { outcome: 'mismatch' };
    if (decision === 'replay' && existing?.response)
      return { outcome: 'completed', response: existing.response };
    if (decision === 'in_flight' && existing !== undefined) {
      return { outcome: 'in_flight', leaseUntil: existing.leaseUntil };
    }
    if (existing === undefined && this.#entries.size >= this.#maxKeys) {
      throw new ConflictError(`The idempotency store holds its limit of ${this.#maxKeys} keys`);
    }
    this.#entries.set(id, {
      fingerprint: request.fingerprint,
      leaseUntil: request.nowMs + request.leaseMs,
      expiresAt: request.expiresAt,
      response: null,
    });
    return { outcome: 'reserved' };
  }

  async complete(scope: string, key: string, fingerprint: string, response: StoredResponse): Promise<void> {
    const entry = this.#entries.get(entryId(scope, key));
    if (entry === undefined || entry.fingerprint !== fingerprint || entry.response !== null) {
      throw new ConflictError(`The reservation of idempotency key '${key}' in '${scope}' was lost`);
    }
    entry.response = { status: response.status, headers: { ...response.headers }, body: response.body };
  }

  async release(scope: string, key: string, fingerprint: string): Promise<void> {
    const id = entryId(scope, key);
    const entry = this.#entries.get(id);
    if (entry !== undefined && entry.fingerprint === fingerprint && entry.response === null) {
      this.#entries.delete(id);
    }
  }

  async expire(nowMs: number): Promise<number> {
    let removed = 0;
    for (const [id, entry] of this.#entries) {
      if (entry.expiresAt <= nowMs) {
        this.#entries.delete(id);
        removed += 1;
      }
    }
    return removed;
  }
}

function entryId(scope: string, key: string): string {
  return `${scope.length}:${scope}${key}`;
}
