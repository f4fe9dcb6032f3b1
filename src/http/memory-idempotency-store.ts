import { ConflictError } from '../errors.ts';
import {
  decideReservation,
  type FoundReservation,
  holdsReservation,
  nextReservedAt,
  nextToken,
} from '../store/idempotency-rule.ts';
import type {
  IdempotencyClaim,
  IdempotencyReservation,
  IdempotencyReserveRequest,
  IdempotencyStore,
  StoredResponse,
} from '../store/types.ts';

interface Entry {
  fingerprint: string;
  /** Null once released (the entry stays, so that the key's tokens keep increasing) or completed. */
  leaseUntil: number | null;
  expiresAt: number;
  token: number;
  reservedAt: number;
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

  async reserve(request: IdempotencyReserveRequest): Promise<IdempotencyReservation> {
    const id = entryId(request.scope, request.key);
    const existing = this.#entries.get(id);
    const found = existing === undefined ? undefined : foundOf(existing);
    const decision = decideReservation(found, request.fingerprint, request.nowMs);
    if (decision === 'mismatch') return { outcome: 'mismatch' };
    if (decision === 'replay' && existing?.response)
      return { outcome: 'completed', response: existing.response };
    if (decision === 'in_flight') return { outcome: 'in_flight', leaseUntil: found?.leaseUntil ?? 0 };
    if (existing === undefined && this.#entries.size >= this.#maxKeys) {
      throw new ConflictError(`The idempotency store holds its limit of ${this.#maxKeys} keys`);
    }
    const token = nextToken(found, request.nowMs);
    const reservedAt = nextReservedAt(found, request.fingerprint, request.nowMs);
    this.#entries.set(id, {
      fingerprint: request.fingerprint,
      leaseUntil: request.nowMs + request.leaseMs,
      expiresAt: request.expiresAt,
      token,
      reservedAt,
      response: null,
    });
    return { outcome: 'reserved', token, reservedAt };
  }

  async complete(claim: IdempotencyClaim, response: StoredResponse): Promise<void> {
    const entry = this.#held(claim);
    if (entry === undefined) {
      throw new ConflictError(
        `The reservation of idempotency key '${claim.key}' in '${claim.scope}' was lost (released, completed, or taken over by a later reservation)`,
        { details: { scope: claim.scope, key: claim.key, token: claim.token } },
      );
    }
    entry.leaseUntil = null;
    entry.response = { status: response.status, headers: { ...response.headers }, body: response.body };
  }

  async release(claim: IdempotencyClaim): Promise<void> {
    const entry = this.#held(claim);
    if (entry !== undefined) entry.leaseUntil = null;
  }

  /** The entry of the key `claim` names, if that reservation still holds it. */
  #held(claim: IdempotencyClaim): Entry | undefined {
    const entry = this.#entries.get(entryId(claim.scope, claim.key));
    return entry !== undefined && holdsReservation(foundOf(entry), claim) ? entry : undefined;
  }

  async expire(nowMs: number, limit = 1000): Promise<number> {
    let removed = 0;
    for (const [id, entry] of this.#entries) {
      if (removed >= limit) break;
      if (entry.expiresAt <= nowMs) {
        this.#entries.delete(id);
        removed += 1;
      }
    }
    return removed;
  }
}

function foundOf(entry: Entry): FoundReservation {
  return {
    fingerprint: entry.fingerprint,
    expiresAt: entry.expiresAt,
    status: entry.response !== null ? 'completed' : entry.leaseUntil === null ? 'released' : 'in_flight',
    leaseUntil: entry.leaseUntil,
    token: entry.token,
    reservedAt: entry.reservedAt,
  };
}

function entryId(scope: string, key: string): string {
  return `${scope.length}:${scope}${key}`;
}
