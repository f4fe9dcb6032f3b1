import { describe, expect, it } from 'vitest';
import { TimeWindow } from './time-window.ts';

describe('TimeWindow', () => {
  it('forgets calls once their bucket leaves the window', () => {
    const window = new TimeWindow(1000, 10);
    window.record(true, false, 0);
    window.record(false, true, 450);
    expect([window.calls(450), window.failures(450), window.slowCalls(450)]).toEqual([2, 1, 1]);
    expect(window.calls(999)).toBe(2);
    // The bucket [0, 100) leaves the window when time reaches 1000.
    expect([window.calls(1000), window.failures(1000)]).toEqual([1, 0]);
    expect(window.calls(1499)).toBe(0);
  });

  it('empties completely after a jump longer than the window', () => {
    const window = new TimeWindow(1000, 4);
    for (let t = 0; t < 1000; t += 10) window.record(true, false, t);
    expect(window.calls(999)).toBe(100);
    expect(window.calls(1_000_000)).toBe(0);
    window.record(false, false, 1_000_001);
    expect([window.calls(1_000_001), window.failures(1_000_001)]).toEqual([1, 0]);
  });
});
