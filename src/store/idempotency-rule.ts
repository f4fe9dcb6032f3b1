import { plantedBug } from '../planted-bugs.ts';
import type { IdempotencyClaim } from './types.ts';

/**
 * The Idempotency-Key reservation rule, shared by every IdempotencyStore so they cannot drift:
 * what a reserve finds decides the outcome, in this order of precedence, and which token the
 * reservation gets; which reservation may complete or release the key.
 */
export interface FoundReservation {
  readonly fingerprint: string;
  readonly expiresAt: number;
  /**
   * `in_flight`: an attempt holds the key until `leaseUntil`; `released`: its attempt gave it up
   * (the record stays, as good as absent, so that the key's tokens go on increasing);
   * `completed`: the response is stored.
   */
  readonly status: 'in_flight' | 'released' | 'completed';
  /** Until when the attempt holding the key owns it; null once released or completed. */
  readonly leaseUntil: number | null;
  /** The token of the key's latest reservation. */
  readonly token: number;
  /** When the request holding the key first reserved it (null: a record older than the field). */
  readonly reservedAt: number | null;
}

/**
 * - `take`: absent, expired (as good as absent, deleted or not), released, or an in-flight key
 *   whose lease ran out (its attempt died or is too slow): the caller writes its own
 *   reservation, with `nextToken`, and owns the key;
 * - `mismatch`: another request used the key (422);
 * - `replay`: done before: return the stored response;
 * - `in_flight`: another attempt holds an unexpired lease (409).
 */
export function decideReservation(
  found: FoundReservation | undefined,
  fingerprint: string,
  nowMs: number,
): 'take' | 'mismatch' | 'replay' | 'in_flight' {
  if (found === undefined || found.expiresAt <= nowMs || found.status === 'released') return 'take';
  if (found.fingerprint !== fingerprint) return 'mismatch';
  if (found.status === 'completed') {
    // Planted bug (tests only, src/planted-bugs.ts): the stored response is forgotten.
    return plantedBug === 'idempotency-forgotten' ? 'take' : 'replay';
  }
  if ((found.leaseUntil ?? 0) > nowMs) return 'in_flight';
  return 'take';
}

/**
 * The token of a reservation made at `nowMs` that takes `found` (absent: a new key, or one whose
 * record expired and was deleted). Not a random value: deterministic (a reservation is a function
 * of what it reads and its inputs, as the runtime's group commit requires of a unit it may run
 * twice), one integer column, and increasing, which is what makes it a fencing token: a takeover
 * always outranks the reservation it displaced (the previous token + 1, or `nowMs` when that is
 * larger). Starting from the clock rather than from 1 is what keeps tokens from repeating once
 * `expire` has deleted a key's record: a record expires no sooner than its last lease ends, so a
 * key reserved anew after that starts above every token it had before, and an attempt that
 * outlived its lease and its key can complete nothing. (Release keeps the record for the same
 * reason: the count goes on.) Clocks that disagree by more than a key's lifetime would defeat it.
 */
export function nextToken(found: FoundReservation | undefined, nowMs: number): number {
  const fromClock = Math.max(1, Math.floor(nowMs));
  return found === undefined ? fromClock : Math.max(found.token + 1, fromClock);
}

/**
 * The `reservedAt` of a reservation made at `nowMs` that takes `found`: a retry of the same
 * request (same fingerprint, the key neither expired nor completed) keeps the first attempt's, so
 * that whatever the first attempt created under an id derived from it is found again; a new key,
 * an expired one, or a released key taken by another request starts from `nowMs`.
 */
export function nextReservedAt(
  found: FoundReservation | undefined,
  fingerprint: string,
  nowMs: number,
): number {
  const fresh = Math.floor(nowMs);
  if (found === undefined || found.reservedAt === null || found.expiresAt <= nowMs) return fresh;
  return found.fingerprint === fingerprint ? found.reservedAt : fresh;
}

/**
 * Whether the reservation `claim` names still holds the key, so that it may complete or release
 * it: the key is in flight, for the same fingerprint, under the same token (a takeover changed it).
 * MemoryIdempotencyStore applies it; the SQL stores say the same in the WHERE clauses of their
 * `complete` and `release` statements (src/store/sql/idempotency.ts), so that each is one statement.
 */
export function holdsReservation(found: FoundReservation | undefined, claim: IdempotencyClaim): boolean {
  if (found === undefined || found.status !== 'in_flight' || found.fingerprint !== claim.fingerprint)
    return false;
  // Planted bug (tests only, src/planted-bugs.ts): any attempt of the request holds the key.
  if (plantedBug === 'idempotency-released') return true;
  return found.token === claim.token;
}
