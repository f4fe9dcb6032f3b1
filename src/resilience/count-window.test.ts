import { describe, expect, it } from 'vitest';
import { CountWindow } from './count-window.ts';

describe('CountWindow', () => {
  it('counts only the last `size` outcomes', () => {
    const window = new CountWindow(3);
    window.record(true, false);
    window.record(true, true);
    window.record(false, false);
    expect([window.calls, window.failures, window.slowCalls]).toEqual([3, 2, 1]);
    window.record(false, false);
    window.record(false, false);
    expect([window.calls, window.failures, window.slowCalls]).toEqual([3, 0, 0]);
    window.reset();
    expect([window.calls, window.failures, window.slowCalls]).toEqual([0, 0, 0]);
  });
});
