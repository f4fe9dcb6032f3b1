import { describe, expect, it } from 'vitest';
import { RetryableError } from '../errors.ts';
import {
  abortedError,
  BrokenCircuitError,
  isBrokenCircuitError,
  isRateLimitedError,
  RateLimitedError,
  refusal,
  retryAfterMsOf,
  TimeoutError,
} from './errors.ts';

describe('resilience errors', () => {
  it('carry stable codes, the numbers involved, and are recognised by code', () => {
    const error = new RateLimitedError('client-7', 250);
    expect(error).toMatchObject({
      code: 'RATE_LIMITED',
      retryAfterMs: 250,
      details: { key: 'client-7', retryAfterMs: 250 },
    });
    expect(error.message).toBe("Rate limit for 'client-7' exceeded: retry after 250 ms");
    expect(isRateLimitedError(error)).toBe(true);
    expect(isBrokenCircuitError(error)).toBe(false);
    // Recognised by the marker and code, not the prototype, as a second copy of Meridian would make it.
    const lookalike = Object.assign(new Error('x'), {
      code: 'CIRCUIT_OPEN',
      [Symbol.for('meridian.error')]: true,
    });
    expect(isBrokenCircuitError(lookalike)).toBe(true);
  });

  it('reads retryAfterMs from any Meridian error that carries one', () => {
    expect(retryAfterMsOf(new RetryableError('busy', { retryAfterMs: 40 }))).toBe(40);
    expect(retryAfterMsOf(new BrokenCircuitError('auth', 'open', 900))).toBe(900);
    expect(retryAfterMsOf(new RetryableError('busy'))).toBeUndefined();
    expect(retryAfterMsOf(new TimeoutError(10))).toBeUndefined();
    expect(retryAfterMsOf({ retryAfterMs: 5 })).toBeUndefined();
  });

  it('builds refusals without stack frames and restores the stack trace limit', () => {
    const limit = Error.stackTraceLimit;
    const error = refusal(() => new BrokenCircuitError('auth', 'open', 100));
    expect(Error.stackTraceLimit).toBe(limit);
    expect(error.stack?.split('\n')).toEqual([
      "BrokenCircuitError: Circuit 'auth' is open: retry after 100 ms",
    ]);
    expect(() =>
      refusal(() => {
        throw new Error('build failed');
      }),
    ).toThrow('build failed');
    expect(Error.stackTraceLimit).toBe(limit);
  });

  it('turns an abort reason into a typed error, keeping a typed reason as it is', () => {
    const timeout = new TimeoutError(5);
    expect(abortedError(timeout)).toBe(timeout);
    expect(abortedError('user left')).toMatchObject({ code: 'ABORTED', cause: 'user left' });
  });
});
