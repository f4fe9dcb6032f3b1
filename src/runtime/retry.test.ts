// Retry strategies decide the saga steps' and subscriptions' retries: these tests pin the backoff
// arithmetic, the jitter bounds, and the error semantics (terminal never, retryAfterMs honoured).
import { describe, expect, it } from 'vitest';
import { RetryableError, TerminalError, ValidationError } from '../errors.ts';
import {
  retryStrategy as exponentialBackoff,
  maxStrategyRetryAfterMs as maxRetryAfterMs,
  toRetryStrategy,
  unboundedRetryStrategy as unboundedBackoff,
} from '../resilience/retry.ts';
import { seededRandom } from '../time.ts';

const error = new Error('boom');

describe('exponentialBackoff', () => {
  it('doubles from initialDelayMs up to maxDelayMs without jitter, and gives up after maxAttempts', () => {
    const strategy = exponentialBackoff({
      maxAttempts: 6,
      initialDelayMs: 100,
      maxDelayMs: 1000,
      jitter: 'none',
    });
    const random = seededRandom(1);
    const delays = [1, 2, 3, 4, 5, 6].map((attempt) => strategy.nextDelayMs(attempt, error, random));
    expect(delays).toEqual([100, 200, 400, 800, 1000, undefined]);
  });

  it('grows decorrelated jitter from the previous delay, within [initialDelayMs, multiplier × previous]', () => {
    const strategy = exponentialBackoff({ initialDelayMs: 100, maxAttempts: 1000, jitter: 'decorrelated' });
    const random = seededRandom(3);
    for (let i = 0; i < 200; i++) {
      const delay = strategy.nextDelayMs(2, error, random, 4000)!;
      expect(delay).toBeGreaterThanOrEqual(100);
      expect(delay).toBeLessThanOrEqual(8000);
    }
    // From the first retry (no previous delay) it stays at initialDelayMs × multiplier at most.
    expect(strategy.nextDelayMs(1, error, random)).toBeLessThanOrEqual(200);
  });

  it('keeps full jitter within [0, delay] and equal jitter within [delay/2, delay]', () => {
    const random = seededRandom(7);
    const full = exponentialBackoff({ initialDelayMs: 1000, maxAttempts: 1000, jitter: 'full' });
    const equal = exponentialBackoff({ initialDelayMs: 1000, maxAttempts: 1000, jitter: 'equal' });
    for (let i = 0; i < 200; i++) {
      const f = full.nextDelayMs(1, error, random)!;
      const e = equal.nextDelayMs(1, error, random)!;
      expect(f).toBeGreaterThanOrEqual(0);
      expect(f).toBeLessThanOrEqual(1000);
      expect(e).toBeGreaterThanOrEqual(500);
      expect(e).toBeLessThanOrEqual(1000);
    }
  });

  it('never retries a TerminalError or a ValidationError, whatever the predicate says', () => {
    const strategy = exponentialBackoff({ retryable: () => true });
    expect(strategy.nextDelayMs(1, new TerminalError('no'), seededRandom(1))).toBeUndefined();
    expect(strategy.nextDelayMs(1, new ValidationError('bad'), seededRandom(1))).toBeUndefined();
  });

  it('asks the retryable predicate about other errors', () => {
    const strategy = exponentialBackoff({ retryable: (e) => e.message === 'transient' });
    expect(strategy.nextDelayMs(1, new Error('transient'), seededRandom(1))).toBeTypeOf('number');
    expect(strategy.nextDelayMs(1, new Error('other'), seededRandom(1))).toBeUndefined();
  });

  it('waits at least RetryableError.retryAfterMs, and gives up on one longer than a day', () => {
    const strategy = exponentialBackoff({ initialDelayMs: 10, jitter: 'none' });
    expect(
      strategy.nextDelayMs(1, new RetryableError('later', { retryAfterMs: 5000 }), seededRandom(1)),
    ).toBe(5000);
    expect(
      strategy.nextDelayMs(
        1,
        new RetryableError('much later', { retryAfterMs: maxRetryAfterMs + 1 }),
        seededRandom(1),
      ),
    ).toBeUndefined();
  });

  it('refuses options out of their bounds with a message naming the option and the value', () => {
    expect(() => exponentialBackoff({ maxAttempts: 0 })).toThrow(
      "'maxAttempts' must be >= 1: current value is 0",
    );
    expect(() => exponentialBackoff({ maxAttempts: 1001 })).toThrow("'maxAttempts' must be <= 1000");
    expect(() => exponentialBackoff({ multiplier: 0.5 })).toThrow("'multiplier' must be >= 1");
    expect(() => exponentialBackoff({ initialDelayMs: 500, maxDelayMs: 100 })).toThrow(
      "'maxDelayMs' must be >= 500: current value is 100",
    );
    expect(() => exponentialBackoff({ jitter: 'wild' as never })).toThrow(
      "'jitter' must be one of 'none', 'full', 'equal', 'decorrelated': current value is wild",
    );
  });

  it('lets the unbounded form (compensations) retry forever with a bounded delay', () => {
    const strategy = unboundedBackoff(
      { initialDelayMs: 100, maxDelayMs: 30_000, jitter: 'none' },
      Number.POSITIVE_INFINITY,
    );
    expect(strategy.nextDelayMs(1_000_000, error, seededRandom(1))).toBe(30_000);
  });

  it('accepts a strategy object in place of options', () => {
    const custom = { nextDelayMs: () => 42 };
    expect(toRetryStrategy(custom)).toBe(custom);
    expect(toRetryStrategy(undefined).nextDelayMs(1, error, seededRandom(1))).toBeTypeOf('number');
  });
});
