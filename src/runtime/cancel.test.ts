// Cancelling a saga (runtime.cancelSaga): a durable request that stops the saga at its next
// durable boundary — a wait ends at once, a running step finishes, the next one never starts —
// compensates its finished steps in reverse, and ends it `cancelled`, journaled, on both shapes;
// a second cancellation is a no-op, an ended saga refuses one, and a restart in the middle of
// the compensations replays the journal to the same end.
import { afterEach, beforeEach, expect, it } from 'vitest';
import { NotFoundError, ValidationError } from '../errors.ts';
import { ManualClock, seededRandom } from '../time.ts';
import { type SagaContext, saga } from './definitions.ts';
import { SagaCancelledError, SagaEndedError, SagaNotCompletedError } from './errors.ts';
import type { RuntimeMeasurement } from './meter.ts';
import type { Runtime } from './runtime.ts';
import { describeShapes, openShape, type ShapeFixture } from './shapes.ts';

/** What the outside world saw: effects and undos, in order. */
let effects: string[];

/** A step that records its effect, undone by a compensation that records the undo. */
function recorded(ctx: SagaContext, name: string): Promise<string> {
  return ctx.step(
    name,
    () => {
      effects.push(name);
      return name;
    },
    {
      compensate: (_step, _result, failure) => {
        effects.push(`undo ${name} (${failure.code})`);
      },
    },
  );
}

const Sleepy = saga('Sleepy', async (ctx) => {
  await recorded(ctx, 'reserve');
  await recorded(ctx, 'charge');
  await ctx.sleep('cool-off', 86_400_000);
  await recorded(ctx, 'ship');
  return 'shipped';
});

const Waiting = saga('Waiting', async (ctx) => {
  await recorded(ctx, 'reserve');
  // Both at once: one cancellation ends them both, journaled once.
  await Promise.all([ctx.waitForSignal('approval', { timeoutMs: 3_600_000 }), ctx.sleep('nap', 60_000)]);
  await recorded(ctx, 'ship');
});

describeShapes('cancelling sagas', (shape) => {
  let clock: ManualClock;
  let fixture: ShapeFixture;

  beforeEach(async () => {
    effects = [];
    clock = new ManualClock(1_000_000);
    fixture = await openShape(shape, { clock, timers: clock, random: seededRandom(5) });
  });

  afterEach(async () => {
    await fixture.destroy();
  });

  async function started(...definitions: Parameters<Runtime['register']>): Promise<Runtime> {
    return fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(...definitions));
  }

  async function journaled(runtime: Runtime, id: string, name: string): Promise<void> {
    await fixture.eventually(
      async () => (await runtime.journal(id)).some((entry) => entry.name.startsWith(name)),
      `saga '${id}' journaling '${name}'`,
    );
  }

  it('ends a sleep at once, compensates the finished steps in reverse, and ends cancelled', async () => {
    const runtime = await started(Sleepy);
    const ended: RuntimeMeasurement[] = [];
    runtime.onMeasurement((measurement) => {
      if (measurement.kind === 'saga-ended') ended.push(measurement);
    });
    const handle = await runtime.startSaga(Sleepy, 'o1', undefined);
    await journaled(runtime, 'o1', 'cool-off');
    await expect(runtime.cancelSaga('o1', { reason: 'customer changed their mind' })).resolves.toBe(
      'requested',
    );
    // No clock moved: the day-long sleep did not run to its end.
    const error = await handle.result().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SagaNotCompletedError);
    expect(error).toMatchObject({ status: 'cancelled', code: 'SAGA_CANCELLED' });
    expect(effects).toEqual([
      'reserve',
      'charge',
      'undo charge (SAGA_CANCELLED)',
      'undo reserve (SAGA_CANCELLED)',
    ]);
    const progress = await runtime.progress('o1');
    expect(progress).toMatchObject({
      status: 'cancelled',
      reason: "Saga 'o1' was cancelled: customer changed their mind",
      failure: { code: 'SAGA_CANCELLED' },
    });
    expect(progress?.calls.map((call) => call.kind)).toEqual([
      'step',
      'step',
      'sleep',
      'cancelled',
      'compensation',
      'compensation',
    ]);
    expect(progress?.calls[3]).toMatchObject({ kind: 'cancelled', reason: 'customer changed their mind' });
    expect(ended).toEqual([expect.objectContaining({ sagaType: 'Sleepy', outcome: 'cancelled' })]);
    // Asked again: the saga ended cancelled, which is what was asked.
    await expect(runtime.cancelSaga('o1')).resolves.toBe('duplicate');
  });

  it('ends a signal wait and a sleep running together, journaling the cancellation once', async () => {
    const runtime = await started(Waiting);
    const handle = await runtime.startSaga(Waiting, 'w1', undefined);
    await journaled(runtime, 'w1', 'nap');
    await journaled(runtime, 'w1', '$await:approval');
    await expect(runtime.cancelSaga('w1')).resolves.toBe('requested');
    await expect(runtime.cancelSaga('w1', { reason: 'again' })).resolves.toBe('duplicate');
    await expect(handle.result()).rejects.toMatchObject({ status: 'cancelled' });
    const journal = await runtime.journal('w1');
    expect(journal.filter((entry) => entry.name.startsWith('$cancelled'))).toHaveLength(1);
    expect(effects).toEqual(['reserve', 'undo reserve (SAGA_CANCELLED)']);
    expect((await runtime.saga('w1'))?.reason).toBe("Saga 'w1' was cancelled: cancelled by request");
    // The saga ended: a signal has nobody to take it, and the mailbox went with it.
    await expect(runtime.signal('w1', 'approval', true)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('lets a running step finish and be undone, and never starts the next one', async () => {
    let release!: () => void;
    const running = new Promise<void>((resolve) => (release = resolve));
    const Slow = saga('Slow', async (ctx) => {
      await ctx.step(
        'slow',
        async () => {
          await running;
          effects.push('slow');
        },
        { compensate: () => void effects.push('undo slow') },
      );
      await recorded(ctx, 'next');
    });
    const runtime = await started(Slow);
    const handle = await runtime.startSaga(Slow, 's1', undefined);
    await fixture.eventually(() => runtime.stats.activeSagas === 1, 'the step running');
    await expect(runtime.cancelSaga('s1')).resolves.toBe('requested');
    release();
    await expect(handle.result()).rejects.toMatchObject({ status: 'cancelled' });
    expect(effects).toEqual(['slow', 'undo slow']);
  });

  it('refuses to cancel an ended saga, a missing one, or with a bad reason, saying why', async () => {
    const Quick = saga('Quick', async (ctx) => recorded(ctx, 'only'));
    const runtime = await started(Quick);
    await (await runtime.startSaga(Quick, 'q1', undefined)).result();
    const ended = await runtime.cancelSaga('q1').catch((caught: unknown) => caught);
    expect(ended).toBeInstanceOf(SagaEndedError);
    expect((ended as Error).message).toMatch(/has ended \(completed\)/);
    expect((await runtime.saga('q1'))?.status).toBe('completed');
    await expect(runtime.cancelSaga('nobody')).rejects.toBeInstanceOf(NotFoundError);
    await expect(runtime.cancelSaga('q1', { reason: '' })).rejects.toBeInstanceOf(ValidationError);
    await expect(runtime.cancelSaga('q1', { reason: 'x'.repeat(501) })).rejects.toThrow(
      /1 to 500 characters/,
    );
  });

  it('a restart in the middle of the compensations replays to the same cancelled end', async () => {
    let hang = true;
    const Stubborn = saga('Stubborn', async (ctx) => {
      await recorded(ctx, 'first');
      await ctx.step('second', () => void effects.push('second'), {
        compensate: async () => {
          effects.push('undo second');
          // The first attempt never returns: the runtime stops under it, as in a crash.
          if (hang) await new Promise<never>(() => {});
        },
      });
      await Promise.all([ctx.waitForSignal('never'), ctx.sleep('long', 3_600_000)]);
      await recorded(ctx, 'unreached');
    });
    const first = await started(Stubborn);
    await first.startSaga(Stubborn, 'c1', undefined);
    await journaled(first, 'c1', 'long');
    await first.cancelSaga('c1', { reason: 'ops' });
    await fixture.eventually(() => effects.includes('undo second'), 'the compensation attempted');
    await first.stop();
    expect((await first.saga('c1'))?.status).toBe('compensating');
    hang = false;
    const second = await started(Stubborn);
    await expect(second.handle('c1').result()).rejects.toMatchObject({ status: 'cancelled' });
    expect(effects).toEqual(['first', 'second', 'undo second', 'undo second', 'undo first (SAGA_CANCELLED)']);
    const journal = await second.journal('c1');
    expect(journal.filter((entry) => entry.name.startsWith('$cancelled'))).toHaveLength(1);
    expect(journal.map((entry) => entry.name.replace(/#\d+$/, ''))).toEqual(
      ['$start', 'first', 'second', 'never', 'long', '$cancelled', '$failed', 'second', 'first'].map(
        (name) => (name === 'never' ? '$await:never' : name),
      ),
    );
  });

  it('a replayed sleep beside the call that journaled the cancellation ends with it, not as live', async () => {
    let hang = true;
    let letFirstFinish!: () => void;
    const firstRuns = new Promise<void>((resolve) => (letFirstFinish = resolve));
    const Racing = saga('Racing', async (ctx) => {
      await ctx.step('first', () => firstRuns.then(() => void effects.push('first')), {
        compensate: async () => {
          effects.push('undo first');
          // The first attempt never returns: the runtime stops under it, as in a crash.
          if (hang) await new Promise<never>(() => {});
        },
      });
      // The sleep journals its start; the step, at its boundary, the cancellation asked meanwhile.
      await Promise.all([ctx.sleep('settle', 5), recorded(ctx, 'charge')]);
    });
    const first = await started(Racing);
    await first.startSaga(Racing, 'r1', undefined);
    await first.cancelSaga('r1', { reason: 'ops' });
    letFirstFinish();
    await fixture.eventually(() => effects.includes('undo first'), 'the compensation attempted');
    await first.stop();
    const before = (await first.journal('r1')).map((entry) => entry.name.replace(/#\d+$/, ''));
    expect(before).toEqual(['$start', 'first', 'settle', '$cancelled', '$failed']);
    // The restart comes after the sleep's end: replayed, it must not go on as if live.
    clock.advance(60_000);
    hang = false;
    const second = await started(Racing);
    await expect(second.handle('r1').result()).rejects.toMatchObject({ status: 'cancelled' });
    expect(effects).toEqual(['first', 'undo first', 'undo first']);
    const journal = await second.journal('r1');
    expect(journal.map((entry) => entry.name.replace(/#\d+$/, ''))).toEqual([...before, 'first']);
  });

  it('a cancellation reaches a saga whose code throws it away: the saga still ends cancelled', async () => {
    const Stubborn = saga('Swallower', async (ctx) => {
      await recorded(ctx, 'held');
      try {
        await ctx.sleep('wait', 60_000);
      } catch (error) {
        expect(error).toBeInstanceOf(SagaCancelledError);
        // Every durable call after the cancellation is refused too.
        await expect(ctx.step('after', () => 1)).rejects.toBeInstanceOf(SagaCancelledError);
      }
      return 'carried on';
    });
    const runtime = await started(Stubborn);
    const handle = await runtime.startSaga(Stubborn, 'x1', undefined);
    await journaled(runtime, 'x1', 'wait');
    await runtime.cancelSaga('x1');
    await expect(handle.result()).rejects.toMatchObject({ status: 'cancelled' });
    expect(effects).toEqual(['held', 'undo held (SAGA_CANCELLED)']);
  });

  it('a saga queued behind a full runtime, or resumed after a restart, still finds its cancellation', async () => {
    let release!: () => void;
    let blocked = new Promise<void>((resolve) => (release = resolve));
    const Queued = saga('Queued', async (ctx, input: { block: boolean }) => {
      if (input.block) await ctx.step('block', () => blocked);
      await recorded(ctx, 'work');
    });
    const runtimeWithOneSlot = () =>
      fixture.start(fixture.runtime({ drainTimeoutMs: 0, maxActiveSagas: 1 }).register(Queued));
    const first = await runtimeWithOneSlot();
    await first.startSaga(Queued, 'blocker', { block: true });
    await fixture.eventually(() => first.stats.activeSagas === 1, 'the blocker holding the slot');
    // Queued in memory: told when it starts. Behind a second blocker: still queued at the stop.
    const queued = await first.startSaga(Queued, 'queued', { block: false });
    await first.startSaga(Queued, 'blocker-2', { block: true });
    await first.startSaga(Queued, 'parked', { block: false });
    expect(first.stats.queuedSagas).toBe(3);
    await expect(first.cancelSaga('queued')).resolves.toBe('requested');
    await expect(first.cancelSaga('parked')).resolves.toBe('requested');
    release();
    // The second blocker's step, once it starts, never returns in this runtime.
    blocked = new Promise<void>(() => {});
    await expect(queued.result()).rejects.toMatchObject({ status: 'cancelled' });
    await fixture.eventually(
      () => first.stats.activeSagas === 1 && first.stats.queuedSagas === 1,
      'blocker-2 holding the slot, parked queued',
    );
    await first.stop();
    // The next runtime reads 'parked''s cancellation from the store when it resumes it.
    blocked = Promise.resolve();
    const second = await runtimeWithOneSlot();
    await expect(second.handle('parked').result()).rejects.toMatchObject({ status: 'cancelled' });
    await expect(second.handle('blocker-2').result()).resolves.toBeNull();
    // The blockers ran their work; neither cancelled saga did any.
    expect(effects.filter((effect) => effect === 'work')).toHaveLength(2);
  });
});
