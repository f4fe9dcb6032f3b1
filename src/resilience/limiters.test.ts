/**
 * One contract suite for the in-process limiters (token bucket and GCRA): the same rules hold
 * for both, so the same tests run against both.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time.ts';
import { RateLimitedError } from './errors.ts';
import { gcra } from './gcra.ts';
import { rateLimit } from './rate-limit.ts';
import type { InProcessLimitOptions } from './token-bucket.ts';
import { tokenBucket } from './token-bucket.ts';

const limiters = [
  ['token bucket', tokenBucket],
  ['GCRA', gcra],
] as const;

describe.each(limiters)('%s limiter', (_name, create) => {
  const make = (options: Omit<InProcessLimitOptions, 'clock'>) => {
    const clock = new ManualClock();
    return { clock, limiter: create({ ...options, clock }) };
  };

  it('allows a burst at once, then one request per emission interval, with an exact retryAfterMs', () => {
    const { clock, limiter } = make({ ratePerSecond: 10, burst: 3 });
    expect([1, 2, 3].map(() => limiter.consume('k'))).toEqual([
      { allowed: true, retryAfterMs: 0, remaining: 2 },
      { allowed: true, retryAfterMs: 0, remaining: 1 },
      { allowed: true, retryAfterMs: 0, remaining: 0 },
    ]);
    expect(limiter.consume('k')).toEqual({ allowed: false, retryAfterMs: 100, remaining: 0 });
    clock.advance(60);
    expect(limiter.consume('k')).toMatchObject({ allowed: false, retryAfterMs: 40 });
    clock.advance(40);
    expect(limiter.consume('k')).toMatchObject({ allowed: true });
    expect(limiter.consume('k')).toMatchObject({ allowed: false });
  });

  it('keeps keys independent', () => {
    const { limiter } = make({ ratePerSecond: 1, burst: 1 });
    expect(limiter.consume('alice').allowed).toBe(true);
    expect(limiter.consume('alice').allowed).toBe(false);
    expect(limiter.consume('bob').allowed).toBe(true);
  });

  it('charges a request its cost and refuses a cost larger than the burst as a bad argument', () => {
    const { clock, limiter } = make({ ratePerSecond: 2, burst: 4 });
    expect(limiter.consume('k', 3)).toMatchObject({ allowed: true, remaining: 1 });
    expect(limiter.consume('k', 2)).toMatchObject({ allowed: false, retryAfterMs: 500 });
    clock.advance(500);
    expect(limiter.consume('k', 2)).toMatchObject({ allowed: true, remaining: 0 });
    expect(() => limiter.consume('k', 5)).toThrow("'cost' must be <= 4: current value is 5");
  });

  it('never refills beyond the burst however long a key idles', () => {
    const { clock, limiter } = make({ ratePerSecond: 100, burst: 5 });
    limiter.consume('k');
    clock.advance(3_600_000);
    const allowed = Array.from({ length: 10 }, () => limiter.consume('k').allowed).filter(Boolean);
    expect(allowed).toHaveLength(5);
  });

  it('forgets the least recently used key beyond maxKeys', () => {
    const { limiter } = make({ ratePerSecond: 1, burst: 1, maxKeys: 2 });
    limiter.consume('a');
    limiter.consume('b');
    limiter.consume('a');
    limiter.consume('c');
    // 'b' was least recently used when 'c' came, so it is forgotten and gets a fresh burst;
    // 'a' is remembered.
    expect(limiter.consume('a').allowed).toBe(false);
    expect(limiter.consume('b').allowed).toBe(true);
  });

  it('over any window of t ms allows at most ratePerSecond × t / 1000 + burst units (property)', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.5, max: 1000, noNaN: true }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 1, max: 20 })), {
          maxLength: 150,
        }),
        (ratePerSecond, burst, requests) => {
          const { clock, limiter } = make({ ratePerSecond, burst });
          const allowed: { atMs: number; cost: number }[] = [];
          for (const [gapMs, rawCost] of requests) {
            clock.advance(gapMs);
            const cost = Math.min(rawCost, burst);
            const decision = limiter.consume('k', cost);
            if (decision.allowed) allowed.push({ atMs: clock.monotonicNow(), cost });
            else expect(decision.retryAfterMs).toBeGreaterThan(0);
          }
          for (let first = 0; first < allowed.length; first++) {
            let units = 0;
            for (let last = first; last < allowed.length; last++) {
              units += allowed[last]!.cost;
              const windowMs = allowed[last]!.atMs - allowed[first]!.atMs;
              expect(units).toBeLessThanOrEqual((ratePerSecond * windowMs) / 1000 + burst + 1e-6);
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('honours retryAfterMs: a refused request is allowed exactly when it says (property)', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.5, max: 1000, noNaN: true }),
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 0, max: 30 }),
        (ratePerSecond, burst, extra) => {
          const { clock, limiter } = make({ ratePerSecond, burst });
          for (let index = 0; index < burst + extra; index++) limiter.consume('k');
          const refused = limiter.consume('k');
          expect(refused.allowed).toBe(false);
          clock.advance(refused.retryAfterMs);
          expect(limiter.consume('k').allowed).toBe(true);
        },
      ),
    );
  });

  it('validates its options', () => {
    expect(() => create({ ratePerSecond: 0 })).toThrow("'ratePerSecond' must be > 0: current value is 0");
    expect(() => create({} as InProcessLimitOptions)).toThrow("'ratePerSecond' must be given explicitly");
    expect(() => create({ ratePerSecond: 10, burst: 0 })).toThrow("'burst' must be >= 1");
    expect(create({ ratePerSecond: 2.5 }).burst).toBe(3);
  });
});

describe('rateLimit policy', () => {
  it('runs calls within the limit and refuses the rest with RateLimitedError carrying retryAfterMs', async () => {
    const clock = new ManualClock();
    const policy = rateLimit({
      limiter: gcra({ ratePerSecond: 5, burst: 2, clock }),
      key: ({ attempt }) => `client-${attempt}`,
    });
    const rejects: number[] = [];
    policy.onReject(({ retryAfterMs }) => rejects.push(retryAfterMs));
    let calls = 0;
    await policy.execute(() => ++calls);
    await policy.execute(() => ++calls);
    const refused = await policy.execute(() => ++calls).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(RateLimitedError);
    expect(refused).toMatchObject({ code: 'RATE_LIMITED', key: 'client-1', retryAfterMs: 200 });
    expect(calls).toBe(2);
    expect(rejects).toEqual([200]);
  });

  it('waits for an asynchronous (shared) limiter before running the call', async () => {
    const decisions = [true, false];
    const policy = rateLimit({
      limiter: {
        ratePerSecond: 1,
        burst: 1,
        consume: async () => ({ allowed: decisions.shift() ?? false, retryAfterMs: 1000, remaining: 0 }),
      },
    });
    await expect(policy.execute(() => 'ran')).resolves.toBe('ran');
    await expect(policy.execute(() => 'ran')).rejects.toMatchObject({ retryAfterMs: 1000 });
  });

  it('refuses a cost above the limiter burst', () => {
    expect(() => rateLimit({ limiter: tokenBucket({ ratePerSecond: 1, burst: 2 }), cost: 3 })).toThrow(
      "'cost' must be <= 2",
    );
  });
});
