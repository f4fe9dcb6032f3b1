import { describe, expect, it } from 'vitest';
import {
  decideReservation,
  type FoundReservation,
  holdsReservation,
  nextReservedAt,
  nextToken,
} from './idempotency-rule.ts';

/** A key in flight: leased until 500, reserved three times so far. */
const held: FoundReservation = {
  fingerprint: 'f1',
  expiresAt: 1000,
  status: 'in_flight',
  leaseUntil: 500,
  token: 3,
  reservedAt: 40,
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

describe('nextReservedAt', () => {
  it("keeps the first attempt's time for a retry of the same request, lapsed or released", () => {
    expect(nextReservedAt(held, 'f1', 600)).toBe(40);
    expect(nextReservedAt({ ...held, status: 'released', leaseUntil: null }, 'f1', 600)).toBe(40);
  });

  it('starts afresh for a new key, an expired one, another request, or a record without one', () => {
    expect(nextReservedAt(undefined, 'f1', 600.7)).toBe(600);
    expect(nextReservedAt(held, 'f1', 1000)).toBe(1000);
    expect(nextReservedAt({ ...held, status: 'released', leaseUntil: null }, 'f2', 600)).toBe(600);
    expect(nextReservedAt({ ...held, reservedAt: null }, 'f1', 600)).toBe(600);
  });
});

describe('reservation tokens', () => {
  const claim = { scope: 's', key: 'k', fingerprint: 'f1', token: 3 };

  it('starts a new key at the clock and gives every takeover the next token, or the clock when that is later', () => {
    expect(nextToken(undefined, 1_700_000_000_123)).toBe(1_700_000_000_123);
    expect(nextToken(undefined, 0)).toBe(1);
    expect(nextToken(held, 2)).toBe(4);
    expect(nextToken({ ...held, status: 'released', leaseUntil: null }, 3)).toBe(4);
    expect(nextToken({ ...held, status: 'completed', leaseUntil: null }, 1000)).toBe(1000);
  });

  it('never hands a key reserved anew after its record expired a token the old record had', () => {
    // Reserved at 100, taken over twice (tokens 100, 101, 102), expiring at 200 at the earliest
    // (a record never expires before its lease ends), then deleted: the new reservation outranks.
    let token = nextToken(undefined, 100);
    token = nextToken({ ...held, token }, 100);
    token = nextToken({ ...held, token }, 100);
    expect(token).toBe(102);
    expect(nextToken(undefined, 200)).toBeGreaterThan(token);
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
