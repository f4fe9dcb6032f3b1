import { describe, expect, it } from 'vitest';
import { decideReservation } from './idempotency-rule.ts';

// The reservation rule every IdempotencyStore applies, case by case and in its order of precedence.
describe('decideReservation', () => {
  const held = { fingerprint: 'f1', expiresAt: 1000, completed: false, leaseUntil: 500 };

  it('takes an absent key, an expired one (even with another fingerprint), and one whose lease lapsed', () => {
    expect(decideReservation(undefined, 'f1', 100)).toBe('take');
    expect(decideReservation({ ...held, fingerprint: 'other' }, 'f1', 1000)).toBe('take');
    expect(decideReservation(held, 'f1', 500)).toBe('take');
  });

  it('says mismatch before anything else for another fingerprint on a live key', () => {
    expect(decideReservation({ ...held, completed: true, leaseUntil: null }, 'f2', 100)).toBe('mismatch');
    expect(decideReservation(held, 'f2', 100)).toBe('mismatch');
  });

  it('replays a completed key and reports a held lease as in flight', () => {
    expect(decideReservation({ ...held, completed: true, leaseUntil: null }, 'f1', 900)).toBe('replay');
    expect(decideReservation(held, 'f1', 499)).toBe('in_flight');
  });
});
