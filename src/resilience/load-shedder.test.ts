import { describe, expect, it } from 'vitest';
import { ManualClock } from '../time.ts';
import { aimdLimit } from './aimd-limit.ts';
import { ShedError, TimeoutError } from './errors.ts';
import { type LimitChangeEvent, loadShedder, type ShedEvent } from './load-shedder.ts';

describe('load shedder', () => {
  it('refuses calls beyond the limit with ShedError before running them', async () => {
    const shedder = loadShedder({ limit: aimdLimit({ initialLimit: 2 }) });
    const sheds: ShedEvent[] = [];
    shedder.onShed((event) => sheds.push(event));
    const gates = [Promise.withResolvers<string>(), Promise.withResolvers<string>()];
    const running = gates.map((gate) => shedder.execute(() => gate.promise));
    let ran = false;
    const refused = await shedder
      .execute(() => {
        ran = true;
      })
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ShedError);
    expect(refused).toMatchObject({ code: 'SHED', limit: 2 });
    expect(ran).toBe(false);
    expect(sheds).toEqual([{ limit: 2, inFlight: 2 }]);
    for (const gate of gates) gate.resolve('done');
    await Promise.all(running);
    expect(shedder.snapshot()).toMatchObject({ inFlight: 0 });
  });

  it('shrinks the limit on timeouts and grows it on successes under load', async () => {
    const clock = new ManualClock();
    const shedder = loadShedder({ limit: aimdLimit({ initialLimit: 10, backoffRatio: 0.5 }), clock });
    const changes: LimitChangeEvent[] = [];
    shedder.onLimitChange((event) => changes.push(event));
    await shedder.execute(() => Promise.reject(new TimeoutError(100))).catch(() => undefined);
    expect(shedder.limit).toBe(5);
    // A plain error says nothing about overload and is not sampled.
    await shedder.execute(() => Promise.reject(new Error('bug'))).catch(() => undefined);
    expect(shedder.limit).toBe(5);
    // Growth needs the limit at least half used: with 4 in flight against 5, then 3 against 6.
    const gates = Array.from({ length: 4 }, () => Promise.withResolvers<void>());
    const calls = gates.map((gate) => shedder.execute(() => gate.promise));
    for (const gate of gates) gate.resolve();
    await Promise.all(calls);
    expect(shedder.limit).toBe(7);
    expect(changes.map(({ to }) => to)).toEqual([5, 6, 7]);
  });

  it('hands out permits for work that is not one function call, and counts them against the limit', () => {
    const clock = new ManualClock();
    const shedder = loadShedder({
      limit: aimdLimit({ initialLimit: 1, slowCallDurationMs: 50, minLimit: 1 }),
      clock,
    });
    const permit = shedder.tryAcquire();
    expect(permit).toBeDefined();
    expect(shedder.tryAcquire()).toBeUndefined();
    clock.advance(10);
    permit?.release('success');
    expect(shedder.limit).toBe(2);
    const again = shedder.tryAcquire();
    expect(() => {
      again?.release('ignored');
      again?.release('ignored');
    }).toThrow('released exactly once');
  });
});
