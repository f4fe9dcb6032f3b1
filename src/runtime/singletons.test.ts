// Singletons on the embedded shape: the one runtime leads, so a singleton starts with the runtime,
// writes through fenced transactions, is restarted after it fails, and stops with the runtime.
import { afterEach, describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { ManualClock } from '../time.ts';
import { advance, type EmbeddedFixture, eventually, openEmbedded } from './harness.ts';
import type { SingletonContext } from './singletons.ts';

describe('singletons (embedded)', () => {
  let fixture: EmbeddedFixture;
  afterEach(async () => {
    await fixture.destroy();
  });

  it('run on the runtime while it runs, write through its transactions, and restart after a failure', async () => {
    const clock = new ManualClock(1_000);
    fixture = openEmbedded({ clock, timers: clock });
    const ticks: number[] = [];
    let failures = 0;
    let stopped = false;
    const runtime = fixture.runtime().singleton({
      name: 'ticker',
      async run(ctx: SingletonContext) {
        if (failures === 0) {
          failures++;
          throw new Error('first run fails');
        }
        while (!ctx.signal.aborted) {
          const version = await ctx.transaction(async (tx) => {
            const current = await tx.entities.get('Tick', 'count');
            return tx.entities.put('Tick', 'count', { at: clock.now() }, current?.version ?? 0);
          });
          ticks.push(version);
          await ctx.wait(100);
        }
        stopped = true;
      },
    });
    await runtime.start();
    expect(runtime.leader).toBe(true);
    await eventually(() => runtime.problems().length === 1);
    expect(runtime.problems()[0]?.message).toContain(`singleton 'ticker' failed; restarting it`);
    await advance(clock, 1000, 50);
    await eventually(() => ticks.length >= 1);
    await advance(clock, 300, 50);
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    expect(ticks).toEqual(ticks.map((_, index) => index + 1));
    await runtime.stop();
    expect(stopped).toBe(true);
    expect(runtime.leader).toBe(false);
  });

  it('are added before start, once per name', async () => {
    const clock = new ManualClock(1_000);
    fixture = openEmbedded({ clock, timers: clock });
    const runtime = fixture.runtime();
    const job = { name: 'job', run: async () => {} };
    runtime.singleton(job);
    expect(() => runtime.singleton(job)).toThrow(`A singleton named 'job' is registered`);
    expect(() => runtime.singleton({ name: 'bad' } as never)).toThrow(ValidationError);
    await runtime.start();
    expect(() => runtime.singleton({ name: 'late', run: async () => {} })).toThrow(
      'Add singletons before start()',
    );
  });
});
