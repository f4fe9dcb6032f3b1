import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RetryableError, TerminalError, ValidationError } from '../errors.ts';
import { ManualClock, seededRandom } from '../time.ts';
import { constantBackoff, exponentialBackoff } from './backoff.ts';
import { BrokenCircuitError, RateLimitedError } from './errors.ts';
import { type GiveUpEvent, type RetryEvent, retry } from './retry.ts';

/** An operation that fails `failures` times with `makeError`, then returns 'ok'; it counts its calls. */
function flaky(failures: number, makeError: (attempt: number) => unknown = () => new Error('flaky')) {
  const attempts: number[] = [];
  return {
    attempts,
    operation: ({ attempt }: { attempt: number }) => {
      attempts.push(attempt);
      if (attempts.length <= failures) return Promise.reject(makeError(attempt));
      return Promise.resolve('ok');
    },
  };
}

describe('retry', () => {
  it('retries a failing operation after each backoff delay until it succeeds', async () => {
    const clock = new ManualClock();
    const policy = retry({
      maxAttempts: 5,
      backoff: constantBackoff({ delayMs: 100 }),
      clock,
      timers: clock,
    });
    const retries: RetryEvent[] = [];
    policy.onRetry((event) => retries.push(event));
    const { attempts, operation } = flaky(2);
    const call = policy.execute(operation);
    await clock.advanceAsync(0);
    expect(attempts).toEqual([1]);
    await clock.advanceAsync(99);
    expect(attempts).toEqual([1]);
    await clock.advanceAsync(1);
    expect(attempts).toEqual([1, 2]);
    await clock.advanceAsync(100);
    await expect(call).resolves.toBe('ok');
    expect(attempts).toEqual([1, 2, 3]);
    expect(retries.map(({ attempt, delayMs }) => [attempt, delayMs])).toEqual([
      [1, 100],
      [2, 100],
    ]);
  });

  it('gives up after maxAttempts with the last error and says why', async () => {
    const clock = new ManualClock();
    const policy = retry({ maxAttempts: 3, backoff: constantBackoff(), clock, timers: clock });
    const giveUps: GiveUpEvent[] = [];
    policy.onGiveUp((event) => giveUps.push(event));
    const { attempts, operation } = flaky(10, (attempt) => new Error(`failure ${attempt}`));
    await expect(policy.execute(operation)).rejects.toThrow('failure 3');
    expect(attempts).toEqual([1, 2, 3]);
    expect(giveUps).toMatchObject([{ attempts: 3, reason: 'max-attempts' }]);
  });

  it('never retries a TerminalError or a ValidationError', async () => {
    const policy = retry({ maxAttempts: 5, backoff: constantBackoff() });
    for (const error of [new TerminalError('card declined'), new ValidationError('bad amount')]) {
      const { attempts, operation } = flaky(10, () => error);
      await expect(policy.execute(operation)).rejects.toBe(error);
      expect(attempts).toEqual([1]);
    }
  });

  it('waits at least the retryAfterMs an error asks for, even when the backoff is shorter', async () => {
    const clock = new ManualClock();
    const policy = retry({ backoff: constantBackoff({ delayMs: 10 }), clock, timers: clock });
    const { attempts, operation } = flaky(1, () => new RetryableError('busy', { retryAfterMs: 500 }));
    const call = policy.execute(operation);
    await clock.advanceAsync(499);
    expect(attempts).toHaveLength(1);
    await clock.advanceAsync(1);
    await expect(call).resolves.toBe('ok');
    expect(attempts).toHaveLength(2);
  });

  it('gives up at once when an error asks to wait longer than maxRetryAfterMs', async () => {
    const policy = retry({ maxRetryAfterMs: 1000 });
    const giveUps: GiveUpEvent[] = [];
    policy.onGiveUp((event) => giveUps.push(event));
    const { attempts, operation } = flaky(1, () => new RateLimitedError('client-7', 60_000));
    await expect(policy.execute(operation)).rejects.toBeInstanceOf(RateLimitedError);
    expect(attempts).toHaveLength(1);
    expect(giveUps[0]?.reason).toBe('retry-after-too-long');
  });

  it('by default fails fast on an open circuit rather than waiting out its open duration', async () => {
    const policy = retry({ maxAttempts: 5 });
    const giveUps: GiveUpEvent[] = [];
    policy.onGiveUp((event) => giveUps.push(event));
    const { attempts, operation } = flaky(5, () => new BrokenCircuitError('auth', 'open', 30_000));
    await expect(policy.execute(operation)).rejects.toBeInstanceOf(BrokenCircuitError);
    expect(attempts).toHaveLength(1);
    expect(giveUps[0]?.reason).toBe('retry-after-too-long');
  });

  it('honours a custom retryIf predicate', async () => {
    const policy = retry({
      backoff: constantBackoff(),
      retryIf: (error) => (error as Error).message === 'again',
    });
    const { attempts, operation } = flaky(5, (attempt) => new Error(attempt === 1 ? 'again' : 'stop'));
    await expect(policy.execute(operation)).rejects.toThrow('stop');
    expect(attempts).toEqual([1, 2]);
  });

  it('stops waiting when the caller aborts during a delay, and makes no further attempt', async () => {
    const clock = new ManualClock();
    const policy = retry({ backoff: constantBackoff({ delayMs: 1000 }), clock, timers: clock });
    const giveUps: GiveUpEvent[] = [];
    policy.onGiveUp((event) => giveUps.push(event));
    const caller = new AbortController();
    const { attempts, operation } = flaky(10);
    const call = policy.execute(operation, caller.signal);
    const settled = call.catch((error: unknown) => error);
    await clock.advanceAsync(10);
    caller.abort();
    expect(await settled).toMatchObject({ code: 'ABORTED' });
    expect(clock.pendingTimers).toBe(0);
    await clock.advanceAsync(5000);
    expect(attempts).toEqual([1]);
    expect(giveUps).toMatchObject([{ reason: 'aborted' }]);
  });

  it('never starts an attempt or a wait past its deadline, and every wait is within the cap (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 5_000 }),
        fc.integer({ min: 0, max: 500 }),
        fc.integer({ min: 0, max: 2_000 }),
        fc.constantFrom('none' as const, 'full' as const, 'decorrelated' as const),
        fc.integer({ min: 0, max: 200 }),
        fc.integer(),
        async (maxAttempts, deadlineMs, initialDelayMs, extraMs, jitter, attemptDurationMs, seed) => {
          const clock = new ManualClock();
          const maxDelayMs = initialDelayMs + extraMs;
          const policy = retry({
            maxAttempts,
            deadlineMs,
            backoff: exponentialBackoff({ initialDelayMs, maxDelayMs, jitter }),
            clock,
            timers: clock,
            random: seededRandom(seed),
          });
          const starts: number[] = [];
          const delays: number[] = [];
          policy.onRetry(({ delayMs }) => delays.push(delayMs));
          const call = policy
            .execute(async () => {
              starts.push(clock.monotonicNow());
              await new Promise((resolve) => clock.setTimeout(() => resolve(undefined), attemptDurationMs));
              throw new Error('always fails');
            })
            .catch((error: unknown) => error);
          while (clock.pendingTimers > 0) await clock.advanceAsync(1);
          expect(await call).toMatchObject({ message: 'always fails' });
          expect(starts.length).toBeGreaterThanOrEqual(1);
          expect(starts.length).toBeLessThanOrEqual(maxAttempts);
          for (const start of starts.slice(1)) expect(start).toBeLessThan(deadlineMs);
          for (const delay of delays) {
            expect(delay).toBeGreaterThanOrEqual(0);
            expect(delay).toBeLessThanOrEqual(maxDelayMs);
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it('validates its options', () => {
    expect(() => retry({ maxAttempts: 0 })).toThrow("'maxAttempts' must be >= 1: current value is 0");
    expect(() => retry({ maxAttempts: 101 })).toThrow("'maxAttempts' must be <= 100");
    expect(() => retry({ deadlineMs: 0 })).toThrow("'deadlineMs' must be >= 1");
  });
});
