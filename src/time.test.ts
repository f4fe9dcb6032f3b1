import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock, seededRandom } from './time.ts';

describe('ManualClock', () => {
  it('fires timers in due order, ties in creation order, and only when time reaches them', () => {
    const clock = new ManualClock(1000);
    const fired: string[] = [];
    clock.setTimeout(() => fired.push('b@20'), 20);
    clock.setTimeout(() => fired.push('a@10'), 10);
    clock.setTimeout(() => fired.push('c@20'), 20);
    clock.advance(9);
    expect(fired).toEqual([]);
    clock.advance(11);
    expect(fired).toEqual(['a@10', 'b@20', 'c@20']);
    expect(clock.now()).toBe(1020);
  });

  it('reports the due time as now() inside a firing callback, and fires timers those callbacks add', () => {
    const clock = new ManualClock(0);
    const seen: number[] = [];
    clock.setTimeout(() => {
      seen.push(clock.now());
      clock.setTimeout(() => seen.push(clock.now()), 5);
    }, 10);
    clock.advance(100);
    expect(seen).toEqual([10, 15]);
    expect(clock.now()).toBe(100);
  });

  it('never fires a cancelled timer', () => {
    const clock = new ManualClock();
    let fired = false;
    const handle = clock.setTimeout(() => {
      fired = true;
    }, 1);
    handle.cancel();
    expect(clock.pendingTimers).toBe(0);
    expect(clock.runNext()).toBe(false);
    clock.advance(10);
    expect(fired).toBe(false);
  });

  it('runNext jumps straight to the next due timer', () => {
    const clock = new ManualClock(0);
    clock.setTimeout(() => {}, 500);
    expect(clock.runNext()).toBe(true);
    expect(clock.now()).toBe(500);
  });
});

describe('seededRandom', () => {
  it('replays the same sequence from the same seed and stays within [0, 1)', () => {
    fc.assert(
      fc.property(fc.integer(), (seed) => {
        const a = seededRandom(seed);
        const b = seededRandom(seed);
        for (let i = 0; i < 50; i++) {
          const value = a.next();
          expect(value).toBe(b.next());
          expect(value).toBeGreaterThanOrEqual(0);
          expect(value).toBeLessThan(1);
        }
      }),
    );
  });

  it('gives different sequences for different seeds', () => {
    expect(seededRandom(1).next()).not.toBe(seededRandom(2).next());
  });
});
