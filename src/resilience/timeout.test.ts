import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time.ts';
import { isTimeoutError, TimeoutError } from './errors.ts';
import { timeout } from './timeout.ts';

/** An operation that settles only when its signal fires, the way fetch does. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    signal.addEventListener('abort', () => reject(new Error('operation saw the abort')), { once: true });
  });
}

describe('timeout', () => {
  it('cooperative: aborts the signal at the deadline and reports a TimeoutError caused by the operation error', async () => {
    const clock = new ManualClock();
    const policy = timeout({ timeoutMs: 100, clock, timers: clock });
    const timeouts: number[] = [];
    policy.onTimeout((event) => timeouts.push(event.timeoutMs));
    const call = policy.execute(({ signal }) => untilAborted(signal));
    const settled = call.catch((error: unknown) => error);
    await clock.advanceAsync(99);
    expect(timeouts).toEqual([]);
    await clock.advanceAsync(1);
    const error = await settled;
    expect(isTimeoutError(error)).toBe(true);
    expect((error as TimeoutError).cause).toMatchObject({ message: 'operation saw the abort' });
    expect(timeouts).toEqual([100]);
    expect(policy.inFlight).toBe(0);
  });

  it('cooperative: returns a value that arrives after the deadline, since the work is done', async () => {
    const clock = new ManualClock();
    const policy = timeout({ timeoutMs: 10, clock, timers: clock });
    const { promise, resolve } = Promise.withResolvers<string>();
    let sawAbort = false;
    const call = policy.execute(({ signal }) => {
      signal.addEventListener('abort', () => {
        sawAbort = true;
      });
      return promise;
    });
    await clock.advanceAsync(10);
    resolve('late but done');
    await expect(call).resolves.toBe('late but done');
    expect(sawAbort).toBe(true);
  });

  it('aggressive: rejects at the deadline even when the operation ignores its signal', async () => {
    const clock = new ManualClock();
    const policy = timeout({ timeoutMs: 50, strategy: 'aggressive', clock, timers: clock });
    let signal: AbortSignal | undefined;
    const call = policy.execute((context) => {
      signal = context.signal;
      return new Promise<never>(() => {});
    });
    const settled = call.catch((error: unknown) => error);
    await clock.advanceAsync(50);
    expect(await settled).toBeInstanceOf(TimeoutError);
    expect(signal?.aborted).toBe(true);
  });

  it('passes results and errors through untouched when the deadline is not reached', async () => {
    const clock = new ManualClock();
    for (const strategy of ['cooperative', 'aggressive'] as const) {
      const policy = timeout({ timeoutMs: 50, strategy, clock, timers: clock });
      await expect(policy.execute(() => 42)).resolves.toBe(42);
      await expect(
        policy.execute(() => {
          throw new Error('sync failure');
        }),
      ).rejects.toThrow('sync failure');
      await expect(policy.execute(async () => Promise.reject(new Error('async failure')))).rejects.toThrow(
        'async failure',
      );
      expect(policy.inFlight).toBe(0);
    }
    // The one shared deadline timer fires on an empty list and stops.
    clock.advance(50);
    expect(clock.pendingTimers).toBe(0);
  });

  it('does not create an AbortController for an operation that never reads its signal', async () => {
    const clock = new ManualClock();
    const policy = timeout({ timeoutMs: 50, clock, timers: clock });
    const original = globalThis.AbortController;
    let created = 0;
    globalThis.AbortController = class extends original {
      constructor() {
        super();
        created++;
      }
    };
    try {
      for (let index = 0; index < 10; index++) await policy.execute(() => index);
    } finally {
      globalThis.AbortController = original;
    }
    expect(created).toBe(0);
  });

  it('rejects at once when the caller signal is already aborted, without calling the operation', async () => {
    const clock = new ManualClock();
    const policy = timeout({ timeoutMs: 50, clock, timers: clock });
    let calls = 0;
    await expect(
      policy.execute(() => {
        calls++;
      }, AbortSignal.abort('no')),
    ).rejects.toMatchObject({ code: 'ABORTED' });
    expect(calls).toBe(0);
  });

  it('validates timeoutMs and strategy', () => {
    expect(() => timeout({ timeoutMs: 0 })).toThrow("'timeoutMs' must be >= 1: current value is 0");
    expect(() => timeout({} as { timeoutMs: number })).toThrow("'timeoutMs' must be given explicitly");
    expect(() => timeout({ timeoutMs: 10, strategy: 'eager' as 'aggressive' })).toThrow(
      "'strategy' must be one of",
    );
  });
});
