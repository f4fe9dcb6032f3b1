import { describe, expect, it } from 'vitest';
import { flushMicrotasks } from '../time.ts';
import { bulkhead } from './bulkhead.ts';
import { BulkheadRejectedError } from './errors.ts';

/** An operation held open until the test releases it; records when it started. */
function gate(log: string[], name: string) {
  const { promise, resolve } = Promise.withResolvers<string>();
  return {
    operation: () => {
      log.push(`start ${name}`);
      return promise;
    },
    release: () => resolve(name),
  };
}

describe('bulkhead', () => {
  it('runs at most maxConcurrent calls, queues up to maxQueued in order, and refuses the rest', async () => {
    const policy = bulkhead({ maxConcurrent: 2, maxQueued: 1 });
    const log: string[] = [];
    const rejects: number[] = [];
    policy.onReject(({ maxConcurrent }) => rejects.push(maxConcurrent));
    const a = gate(log, 'a');
    const b = gate(log, 'b');
    const c = gate(log, 'c');
    const callA = policy.execute(a.operation);
    const callB = policy.execute(b.operation);
    const callC = policy.execute(c.operation);
    await expect(policy.execute(() => 'd')).rejects.toBeInstanceOf(BulkheadRejectedError);
    expect(rejects).toEqual([2]);
    expect(policy.snapshot()).toEqual({ active: 2, queued: 1, maxConcurrent: 2, maxQueued: 1 });
    expect(log).toEqual(['start a', 'start b']);
    a.release();
    await callA;
    await flushMicrotasks();
    expect(log).toEqual(['start a', 'start b', 'start c']);
    b.release();
    c.release();
    await expect(Promise.all([callB, callC])).resolves.toEqual(['b', 'c']);
    expect(policy.snapshot()).toMatchObject({ active: 0, queued: 0 });
  });

  it('frees the slot when a call throws synchronously', async () => {
    const policy = bulkhead({ maxConcurrent: 1 });
    await expect(
      policy.execute(() => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    await expect(policy.execute(() => 'next')).resolves.toBe('next');
  });

  it('removes an aborted call from the queue at once and never runs it', async () => {
    const policy = bulkhead({ maxConcurrent: 1, maxQueued: 2 });
    const log: string[] = [];
    const running = gate(log, 'running');
    const runningCall = policy.execute(running.operation);
    const caller = new AbortController();
    const abandoned = policy.execute(() => log.push('abandoned ran'), caller.signal);
    const kept = policy.execute(() => 'kept');
    expect(policy.queued).toBe(2);
    caller.abort();
    await expect(abandoned).rejects.toMatchObject({ code: 'ABORTED' });
    expect(policy.queued).toBe(1);
    running.release();
    await runningCall;
    await expect(kept).resolves.toBe('kept');
    expect(log).toEqual(['start running']);
  });

  it('validates its options', () => {
    expect(() => bulkhead({} as { maxConcurrent: number })).toThrow(
      "'maxConcurrent' must be given explicitly",
    );
    expect(() => bulkhead({ maxConcurrent: 0 })).toThrow("'maxConcurrent' must be >= 1");
    expect(() => bulkhead({ maxConcurrent: 1, maxQueued: -1 })).toThrow("'maxQueued' must be >= 0");
  });
});
