import { describe, expect, it } from 'vitest';
import { fallback } from './fallback.ts';

describe('fallback', () => {
  it('answers with the substitute when the operation fails, and passes successes through', async () => {
    const policy = fallback({ fallback: (error) => ({ degraded: true, reason: (error as Error).message }) });
    const used: unknown[] = [];
    policy.onFallback(({ error }) => used.push(error));
    await expect(policy.execute(() => ({ degraded: false }))).resolves.toEqual({ degraded: false });
    await expect(policy.execute(() => Promise.reject(new Error('auth down')))).resolves.toEqual({
      degraded: true,
      reason: 'auth down',
    });
    expect(used).toHaveLength(1);
  });

  it('lets errors it does not handle, and cancellations, propagate', async () => {
    const policy = fallback({
      fallback: () => 'cached',
      handle: (error) => (error as Error).message !== 'bug',
    });
    await expect(policy.execute(() => Promise.reject(new Error('bug')))).rejects.toThrow('bug');
    const caller = new AbortController();
    const call = policy.execute(({ signal }) => {
      caller.abort();
      return Promise.reject(signal.reason);
    }, caller.signal);
    await expect(call).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('requires the fallback function', () => {
    expect(() => fallback({} as { fallback: () => number })).toThrow("'fallback' must be given explicitly");
  });
});
