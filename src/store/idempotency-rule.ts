/**
 * The Idempotency-Key reservation rule, shared by every IdempotencyStore so they cannot drift:
 * what a reserve finds decides the outcome, in this order of precedence.
 */
export interface FoundReservation {
  readonly fingerprint: string;
  readonly expiresAt: number;
  readonly completed: boolean;
  /** Until when the attempt holding the key owns it; null once completed. */
  readonly leaseUntil: number | null;
}

/**
 * - `take`: absent, expired (as good as absent, deleted or not), or an in-flight key whose lease
 *   ran out (its attempt died): the caller writes its own reservation and owns the key;
 * - `mismatch`: another request used the key (422);
 * - `replay`: done before: return the stored response;
 * - `in_flight`: another attempt holds an unexpired lease (409).
 */
export function decideReservation(
  found: FoundReservation | undefined,
  fingerprint: string,
  nowMs: number,
): 'take' | 'mismatch' | 'replay' | 'in_flight' {
  if (found === undefined || found.expiresAt <= nowMs) return 'take';
  if (found.fingerprint !== fingerprint) return 'mismatch';
  if (found.completed) return 'replay';
  if ((found.leaseUntil ?? 0) > nowMs) return 'in_flight';
  return 'take';
}
