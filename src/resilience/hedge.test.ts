import { describe, expect, it } from 'vitest';
import { TerminalError } from '../errors.ts';
import { ManualClock } from '../time.ts';
import { type HedgeEvent, hedge } from './hedge.ts';

interface Attempt {
  attempt: number;
  signal: AbortSignal;
  resolve: (value: string) => void;
  reject: (error: unknown) => void;
}

/** An operation whose attempts the test settles by hand. */
function controlled() {
  const attempts: Attempt[] = [];
  return {
    attempts,
    operation: ({ attempt, signal }: { attempt: number; signal: AbortSignal }) => {
      const { promise, resolve, reject } = Promise.withResolvers<string>();
      attempts.push({ attempt, signal, resolve, reject });
      return promise;
    },
  };
}

describe('hedge', () => {
  it('starts a second attempt after delayMs; the first success wins and the loser is aborted', async () => {
    const clock = new ManualClock();
    const policy = hedge({ delayMs: 100, clock, timers: clock });
    const hedges: HedgeEvent[] = [];
    policy.onHedge((event) => hedges.push(event));
    const { attempts, operation } = controlled();
    const call = policy.execute(operation);
    await clock.advanceAsync(99);
    expect(attempts).toHaveLength(1);
    await clock.advanceAsync(1);
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2]);
    expect(hedges).toEqual([{ attempt: 2, trigger: 'delay' }]);
    attempts[1]?.resolve('from the hedge');
    await expect(call).resolves.toBe('from the hedge');
    expect(attempts[0]?.signal.aborted).toBe(true);
    expect(attempts[1]?.signal.aborted).toBe(false);
  });

  it('never starts more than maxHedges extra attempts', async () => {
    const clock = new ManualClock();
    const policy = hedge({ delayMs: 10, maxHedges: 2, clock, timers: clock });
    const { attempts, operation } = controlled();
    const call = policy.execute(operation);
    await clock.advanceAsync(1000);
    expect(attempts).toHaveLength(3);
    attempts[0]?.resolve('first');
    await expect(call).resolves.toBe('first');
    expect(attempts.slice(1).every((a) => a.signal.aborted)).toBe(true);
  });

  it('starts the hedge at once when an attempt fails, and fails only when every attempt has failed', async () => {
    const clock = new ManualClock();
    const policy = hedge({ delayMs: 1000, clock, timers: clock });
    const hedges: HedgeEvent[] = [];
    policy.onHedge((event) => hedges.push(event));
    const { attempts, operation } = controlled();
    const call = policy.execute(operation);
    const settled = call.catch((error: unknown) => error);
    attempts[0]?.reject(new Error('replica 1 down'));
    await clock.advanceAsync(0);
    expect(hedges).toEqual([{ attempt: 2, trigger: 'failure' }]);
    attempts[1]?.reject(new Error('replica 2 down'));
    expect(await settled).toMatchObject({ message: 'replica 2 down' });
    expect(clock.pendingTimers).toBe(1);
    await clock.advanceAsync(5000);
    expect(attempts).toHaveLength(2);
  });

  it('does not hedge a terminal error', async () => {
    const clock = new ManualClock();
    const policy = hedge({ delayMs: 10, clock, timers: clock });
    const { attempts, operation } = controlled();
    const call = policy.execute(operation);
    attempts[0]?.reject(new TerminalError('not found'));
    await expect(call).rejects.toBeInstanceOf(TerminalError);
    await clock.advanceAsync(100);
    expect(attempts).toHaveLength(1);
  });

  it('answers without hedging when the first attempt is fast', async () => {
    const clock = new ManualClock();
    const policy = hedge({ delayMs: 10, clock, timers: clock });
    let calls = 0;
    await expect(policy.execute(() => ++calls)).resolves.toBe(1);
    await clock.advanceAsync(100);
    expect(calls).toBe(1);
  });

  it('stops hedging when the caller aborts', async () => {
    const clock = new ManualClock();
    const policy = hedge({ delayMs: 10, clock, timers: clock });
    const caller = new AbortController();
    const { attempts, operation } = controlled();
    const call = policy.execute(operation, caller.signal).catch((error: unknown) => error);
    caller.abort('user left');
    expect(attempts[0]?.signal.aborted).toBe(true);
    await clock.advanceAsync(10);
    expect(await call).toMatchObject({ code: 'ABORTED' });
    expect(attempts).toHaveLength(1);
  });

  it('validates its options', () => {
    expect(() => hedge({} as { delayMs: number })).toThrow("'delayMs' must be given explicitly");
    expect(() => hedge({ delayMs: 10, maxHedges: 11 })).toThrow("'maxHedges' must be <= 10");
  });
});
