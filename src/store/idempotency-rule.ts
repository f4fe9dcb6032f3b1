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
  if (found.status === 'completed') return 'replay';
  if ((found.leaseUntil ?? 0) > nowMs) return 'in_flight';
  return 'take';
}

/**
 * The token of a reservation that takes `found` (absent: a new key). A counter per key, not a
 * random value: deterministic (a reservation is a function of what it reads, as the runtime's
 * group commit requires of a unit it may run twice), one integer column, and increasing, which is
 * what makes it a fencing token: a takeover always outranks the reservation it displaced.
 * Release keeps the record for this reason: deleting it would restart the count at 1 and hand a
 * stale attempt's token to a later one. Only `expire` deletes records, after `expiresAt`, which
 * is never before the lease ends: tokens of a key never repeat as long as its record lives.
 */
export function nextToken(found: FoundReservation | undefined): number {
  return found === undefined ? 1 : found.token + 1;
}

/**
 * Whether the reservation `claim` names still holds the key, so that it may complete or release
 * it: the key is in flight, for the same fingerprint, under the same token (a takeover changed it).
 */
export function holdsReservation(found: FoundReservation | undefined, claim: IdempotencyClaim): boolean {
  return (
    found !== undefined &&
    found.status === 'in_flight' &&
    found.fingerprint === claim.fingerprint &&
    found.token === claim.token
  );
}
