import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../time.ts';
import { constantBackoff, exponentialBackoff } from './backoff.ts';

describe('backoff', () => {
  it('grows geometrically up to the cap without jitter', () => {
    const backoff = exponentialBackoff({ initialDelayMs: 100, maxDelayMs: 1000, jitter: 'none' });
    const random = seededRandom(1);
    expect([1, 2, 3, 4, 5, 6].map((retry) => backoff.delayMs(retry, 0, random))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
    expect(constantBackoff({ delayMs: 250 }).delayMs(9, 0, random)).toBe(250);
  });

  it('keeps every delay within [0, maxDelayMs] for any options, jitter, retry number and seed (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 0, max: 100_000 }),
        fc.double({ min: 1, max: 10, noNaN: true }),
        fc.constantFrom('none' as const, 'full' as const, 'equal' as const, 'decorrelated' as const),
        fc.integer(),
        fc.integer({ min: 1, max: 100 }),
        (initialDelayMs, extraMs, multiplier, jitter, seed, retries) => {
          const maxDelayMs = initialDelayMs + extraMs;
          const backoff = exponentialBackoff({ initialDelayMs, maxDelayMs, multiplier, jitter });
          const random = seededRandom(seed);
          let previous = 0;
          for (let retry = 1; retry <= retries; retry++) {
            const delay = backoff.delayMs(retry, previous, random);
            expect(Number.isInteger(delay)).toBe(true);
            const ceiling = Math.min(maxDelayMs, initialDelayMs * multiplier ** (retry - 1));
            const floor = { none: 0, full: 0, equal: Math.floor(ceiling / 2), decorrelated: initialDelayMs }[
              jitter
            ];
            expect(delay).toBeGreaterThanOrEqual(floor);
            expect(delay).toBeLessThanOrEqual(maxDelayMs);
            previous = delay;
          }
        },
      ),
    );
  });

  it('stays finite on retries far past where the power overflows', () => {
    const random = seededRandom(5);
    for (const jitter of ['none', 'full', 'equal'] as const) {
      expect(exponentialBackoff({ initialDelayMs: 0, multiplier: 10, jitter }).delayMs(5000, 0, random)).toBe(
        0,
      );
      const capped = exponentialBackoff({ initialDelayMs: 1, maxDelayMs: 500, multiplier: 10, jitter });
      const delay = capped.delayMs(5000, 0, random);
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThanOrEqual(500);
    }
  });

  it('spreads full-jitter delays over the whole range rather than clustering at the ceiling', () => {
    const backoff = exponentialBackoff({ initialDelayMs: 1000, maxDelayMs: 1000, jitter: 'full' });
    const random = seededRandom(42);
    const delays = Array.from({ length: 1000 }, () => backoff.delayMs(1, 0, random));
    expect(Math.min(...delays)).toBeLessThan(50);
    expect(Math.max(...delays)).toBeGreaterThan(950);
  });

  it('validates its options', () => {
    expect(() => exponentialBackoff({ initialDelayMs: 500, maxDelayMs: 100 })).toThrow(
      "'maxDelayMs' must be >= 500: current value is 100",
    );
    expect(() => exponentialBackoff({ multiplier: 0.5 })).toThrow("'multiplier' must be >= 1");
    expect(() => constantBackoff({ delayMs: 86_400_001 })).toThrow("'delayMs' must be <= 86400000");
  });
});
