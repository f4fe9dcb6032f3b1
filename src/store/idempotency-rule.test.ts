import { describe, expect, it } from 'vitest';
import { decideReservation, type FoundReservation, holdsReservation, nextToken } from './idempotency-rule.ts';

/** A key in flight: leased until 500, reserved three times so far. */
const held: FoundReservation = {
  fingerprint: 'f1',
  expiresAt: 1000,
  status: 'in_flight',
  leaseUntil: 500,
  token: 3,
};

// The reservation rule every IdempotencyStore applies, case by case and in its order of precedence.
describe('decideReservation', () => {
  const completed: FoundReservation = { ...held, status: 'completed', leaseUntil: null };
  const released: FoundReservation = { ...held, status: 'released', leaseUntil: null };

  it('takes an absent key, an expired one (even with another fingerprint), and one whose lease lapsed', () => {
    expect(decideReservation(undefined, 'f1', 100)).toBe('take');
    expect(decideReservation({ ...held, fingerprint: 'other' }, 'f1', 1000)).toBe('take');
    expect(decideReservation(held, 'f1', 500)).toBe('take');
  });

  it('takes a released key for any request, at once', () => {
    expect(decideReservation(released, 'f1', 100)).toBe('take');
    expect(decideReservation(released, 'f2', 100)).toBe('take');
  });

  it('says mismatch before anything else for another fingerprint on a live key', () => {
    expect(decideReservation(completed, 'f2', 100)).toBe('mismatch');
    expect(decideReservation(held, 'f2', 100)).toBe('mismatch');
  });

  it('replays a completed key and reports a held lease as in flight', () => {
    expect(decideReservation(completed, 'f1', 900)).toBe('replay');
    expect(decideReservation(held, 'f1', 499)).toBe('in_flight');
  });
});

describe('reservation tokens', () => {
  const claim = { scope: 's', key: 'k', fingerprint: 'f1', token: 3 };

  it('starts a new key at 1 and gives every takeover the next token', () => {
    expect(nextToken(undefined)).toBe(1);
    expect(nextToken(held)).toBe(4);
    expect(nextToken({ ...held, status: 'released', leaseUntil: null })).toBe(4);
    expect(nextToken({ ...held, status: 'completed', leaseUntil: null })).toBe(4);
  });

  it('lets only the in-flight reservation of that token and fingerprint complete or release the key', () => {
    expect(holdsReservation(held, claim)).toBe(true);
    // A lapsed lease not (yet) taken over: the attempt still holds the key.
    expect(holdsReservation({ ...held, leaseUntil: 0 }, claim)).toBe(true);
    expect(holdsReservation({ ...held, token: 4 }, claim)).toBe(false);
    expect(holdsReservation(held, { ...claim, fingerprint: 'f2' })).toBe(false);
    expect(holdsReservation({ ...held, status: 'released', leaseUntil: null }, claim)).toBe(false);
    expect(holdsReservation({ ...held, status: 'completed', leaseUntil: null }, claim)).toBe(false);
    expect(holdsReservation(undefined, claim)).toBe(false);
  });
});
