import { describe, expect, it } from 'vitest';
import { aimdLimit } from './aimd-limit.ts';
import { gradientLimit } from './gradient-limit.ts';

describe('AIMD limit', () => {
  it('grows by one per good sample while at least half used, and shrinks multiplicatively on a drop', () => {
    const limit = aimdLimit({ initialLimit: 10, backoffRatio: 0.5 });
    limit.update({ rttMs: 5, inFlight: 5, dropped: false });
    limit.update({ rttMs: 5, inFlight: 6, dropped: false });
    expect(limit.limit).toBe(12);
    limit.update({ rttMs: 5, inFlight: 1, dropped: false });
    expect(limit.limit).toBe(12);
    limit.update({ rttMs: 5, inFlight: 12, dropped: true });
    expect(limit.limit).toBe(6);
  });

  it('treats slow calls as drops when slowCallDurationMs is set, and stays within its bounds', () => {
    const limit = aimdLimit({ initialLimit: 4, minLimit: 2, maxLimit: 5, slowCallDurationMs: 100 });
    for (let index = 0; index < 10; index++) limit.update({ rttMs: 1, inFlight: 5, dropped: false });
    expect(limit.limit).toBe(5);
    for (let index = 0; index < 10; index++) limit.update({ rttMs: 100, inFlight: 5, dropped: false });
    expect(limit.limit).toBe(2);
  });

  it('validates its bounds', () => {
    expect(() => aimdLimit({ minLimit: 10, maxLimit: 5 })).toThrow(
      "'minLimit' must be <= 5: current value is 10",
    );
    expect(() => aimdLimit({ initialLimit: 1, minLimit: 2 })).toThrow("'initialLimit' must be >= 2");
    expect(() => aimdLimit({ backoffRatio: 1 })).toThrow("'backoffRatio' must be <= 0.99");
  });
});

describe('gradient limit', () => {
  it('grows while latency holds at its baseline and shrinks when latency rises well above it', () => {
    const limit = gradientLimit({ initialLimit: 20, maxLimit: 200 });
    for (let index = 0; index < 200; index++)
      limit.update({ rttMs: 10, inFlight: limit.limit, dropped: false });
    const grown = limit.limit;
    expect(grown).toBeGreaterThan(20);
    expect(limit.baselineRttMs).toBeCloseTo(10);
    for (let index = 0; index < 30; index++)
      limit.update({ rttMs: 100, inFlight: limit.limit, dropped: false });
    expect(limit.limit).toBeLessThan(grown / 2);
  });

  it('recovers once latency returns to normal after an overload that inflated the baseline', () => {
    const limit = gradientLimit({ initialLimit: 50, minLimit: 5, maxLimit: 100, longWindowSamples: 50 });
    for (let index = 0; index < 100; index++)
      limit.update({ rttMs: 10, inFlight: limit.limit, dropped: false });
    for (let index = 0; index < 40; index++)
      limit.update({ rttMs: 200, inFlight: limit.limit, dropped: false });
    const during = limit.limit;
    expect(limit.baselineRttMs).toBeGreaterThan(50);
    for (let index = 0; index < 300; index++)
      limit.update({ rttMs: 10, inFlight: limit.limit, dropped: false });
    expect(limit.limit).toBeGreaterThan(during);
    expect(limit.limit).toBe(100);
    // The baseline decays back toward normal faster than the 50-sample average alone would.
    expect(limit.baselineRttMs).toBeLessThan(15);
  });

  it('holds the limit while less than half of it is used', () => {
    const limit = gradientLimit({ initialLimit: 40 });
    for (let index = 0; index < 100; index++) limit.update({ rttMs: 10, inFlight: 3, dropped: false });
    expect(limit.limit).toBe(40);
  });
});
