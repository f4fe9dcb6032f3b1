import { describe, expect, expectTypeOf, it } from 'vitest';
import { ManualClock } from '../time.ts';
import { constantBackoff } from './backoff.ts';
import { bulkhead } from './bulkhead.ts';
import { circuitBreaker } from './circuit-breaker.ts';
import { BrokenCircuitError, TimeoutError } from './errors.ts';
import { fallback } from './fallback.ts';
import { pipeline, wrap } from './pipeline.ts';
import { retry } from './retry.ts';
import { timeout } from './timeout.ts';

describe('pipeline', () => {
  it('runs the first policy outermost: retry re-runs a call the inner timeout cut short', async () => {
    const clock = new ManualClock();
    const policy = pipeline(
      retry({ maxAttempts: 3, backoff: constantBackoff({ delayMs: 10 }), clock, timers: clock }),
      timeout({ timeoutMs: 100, clock, timers: clock }),
    );
    const attempts: number[] = [];
    const call = policy.execute(({ attempt, signal }) => {
      attempts.push(attempt);
      if (attempt < 3) {
        return new Promise<string>((_resolve, reject) =>
          signal.addEventListener('abort', () => reject(signal.reason)),
        );
      }
      return 'third time lucky';
    });
    await clock.advanceAsync(100);
    expect(attempts).toEqual([1]);
    await clock.advanceAsync(10);
    expect(attempts).toEqual([1, 2]);
    await clock.advanceAsync(110);
    await expect(call).resolves.toBe('third time lucky');
  });

  it('lets the breaker see each attempt and the fallback answer once the circuit opens', async () => {
    const clock = new ManualClock();
    const breaker = circuitBreaker({
      mode: 'consecutive',
      failureThreshold: 2,
      openDurationMs: 60_000,
      clock,
    });
    const policy = pipeline(
      fallback({
        fallback: (error) => (error instanceof BrokenCircuitError ? 'cached balance' : 'degraded'),
      }),
      retry({ maxAttempts: 5, backoff: constantBackoff(), maxRetryAfterMs: 1000, clock, timers: clock }),
      breaker,
      bulkhead({ maxConcurrent: 4 }),
    );
    let calls = 0;
    const result = await policy.execute(() => {
      calls++;
      return Promise.reject(new Error('auth down'));
    });
    // Two failures open the circuit; the third attempt is refused and asks to wait 60 s, longer
    // than retry will wait, so retry gives up and the fallback answers.
    expect(calls).toBe(2);
    expect(breaker.state).toBe('open');
    expect(result).toBe('cached balance');
    expectTypeOf(result).toEqualTypeOf<string>();
  });

  it('flattens nested pipelines and passes the caller signal to the operation', async () => {
    const clock = new ManualClock();
    const inner = wrap(timeout({ timeoutMs: 1000, clock, timers: clock }));
    const outer = pipeline(bulkhead({ maxConcurrent: 1 }), inner);
    expect(outer.policies).toHaveLength(2);
    const caller = new AbortController();
    const call = outer.execute(
      ({ signal }) =>
        new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
      caller.signal,
    );
    caller.abort('bye');
    await expect(call).rejects.toBe('bye');
  });

  it('turns a cooperative timeout into a TimeoutError through every layer', async () => {
    const clock = new ManualClock();
    const policy = pipeline(bulkhead({ maxConcurrent: 1 }), timeout({ timeoutMs: 5, clock, timers: clock }));
    const call = policy.execute(
      ({ signal }) =>
        new Promise((_resolve, reject) =>
          signal.addEventListener('abort', () => reject(new Error('aborted'))),
        ),
    );
    const settled = call.catch((error: unknown) => error);
    await clock.advanceAsync(5);
    expect(await settled).toBeInstanceOf(TimeoutError);
  });

  it('refuses an empty pipeline', () => {
    expect(() => pipeline()).toThrow("'policies' must hold at least one policy");
  });
});
