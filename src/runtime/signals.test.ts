// Signals: a saga waits durably for a value from outside (ctx.waitForSignal), delivered by id
// with runtime.signal, before or during the wait, with a timeout that survives restarts; and
// the saga's progress (runtime.progress) shows it. Both shapes: embedded and a one-node cluster.
import { afterEach, beforeEach, expect, it } from 'vitest';
import { NotFoundError } from '../errors.ts';
import { ManualClock, seededRandom } from '../time.ts';
import { saga } from './definitions.ts';
import { SignalTimeoutError } from './errors.ts';
import type { Runtime, RuntimeOptions } from './runtime.ts';
import { describeShapes, openShape, type ShapeFixture } from './shapes.ts';

const Approval = saga('Approval', async (ctx, input: { timeoutMs?: number }) => {
  const requestedAt = await ctx.now();
  try {
    const decision = await ctx.waitForSignal<{ approved: boolean; by: string }>(
      'decision',
      input.timeoutMs === undefined ? {} : { timeoutMs: input.timeoutMs },
    );
    return { ...decision, requestedAt };
  } catch (error) {
    if (error instanceof SignalTimeoutError) return { approved: false, by: 'timeout', requestedAt };
    throw error;
  }
});

describeShapes('signals', (shape) => {
  let clock: ManualClock;
  let fixture: ShapeFixture;

  beforeEach(async () => {
    clock = new ManualClock(1_000_000);
    fixture = await openShape(shape, { clock, timers: clock, random: seededRandom(3) });
  });

  afterEach(async () => {
    await fixture.destroy();
  });

  async function runtimeWith(options: Partial<RuntimeOptions> = {}): Promise<Runtime> {
    return fixture.start(fixture.runtime({ drainTimeoutMs: 0, ...options }).register(Approval));
  }

  async function waiting(runtime: Runtime, id: string): Promise<void> {
    await fixture.eventually(
      async () => (await runtime.journal(id)).some((entry) => entry.name === '$await:decision'),
      `saga '${id}' waiting for its signal`,
    );
  }

  it('a waiting saga takes the signal delivered to it by id, once; the value is journaled', async () => {
    const runtime = await runtimeWith();
    const handle = await runtime.startSaga(Approval, 'a1', { timeoutMs: 60_000 });
    await waiting(runtime, 'a1');
    expect(await fixture.store.read((tx) => tx.timers.nextDueAt())).toBe(1_060_000);
    await expect(runtime.signal('a1', 'decision', { approved: true, by: 'ada' })).resolves.toBe('delivered');
    await expect(handle.result()).resolves.toEqual({ approved: true, by: 'ada', requestedAt: 1_000_000 });
    // Taken in time: the deadline's timer went with it.
    expect(await fixture.store.read((tx) => tx.timers.nextDueAt())).toBeNull();
    const progress = await runtime.progress('a1');
    expect(progress?.calls.map((call) => call.kind)).toEqual(['now', 'signal']);
    expect(progress?.calls[1]).toMatchObject({
      kind: 'signal',
      name: 'decision',
      status: 'received',
      value: { approved: true, by: 'ada' },
    });
    // The saga ended: a signal now has nobody to take it.
    await expect(runtime.signal('a1', 'decision', {})).rejects.toBeInstanceOf(NotFoundError);
    await expect(runtime.signal('nobody', 'decision', {})).rejects.toBeInstanceOf(NotFoundError);
  });

  it('keeps a signal delivered before the saga waits for it, and a second delivery of the name changes nothing', async () => {
    const early = saga('Early', async (ctx) => {
      await ctx.sleep('first', 1_000);
      return ctx.waitForSignal<string>('go');
    });
    const runtime = await fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(early));
    const handle = await runtime.startSaga(early, 'e1', undefined);
    await expect(runtime.signal('e1', 'go', 'first value')).resolves.toBe('delivered');
    await expect(runtime.signal('e1', 'go', 'second value')).resolves.toBe('duplicate');
    await fixture.advance(clock, 1_000, 100);
    await expect(handle.result()).resolves.toBe('first value');
  });

  it('times out on the runtime clock, and the deadline survives a restart', async () => {
    const first = await runtimeWith();
    await first.startSaga(Approval, 't1', { timeoutMs: 5_000 });
    await waiting(first, 't1');
    await fixture.advance(clock, 3_000, 500);
    await first.stop();
    // Down for 3 s more: the wait's deadline passed meanwhile.
    clock.advance(3_000);
    const second = await runtimeWith();
    await expect(second.handle('t1').result()).resolves.toEqual({
      approved: false,
      by: 'timeout',
      requestedAt: 1_000_000,
    });
    const progress = await second.progress('t1');
    expect(progress?.calls[1]).toMatchObject({ kind: 'signal', status: 'timed-out', value: null });
  });

  it('a saga resumed after a restart finds the signal that arrived while it was down', async () => {
    const first = await runtimeWith();
    await first.startSaga(Approval, 'r1', {});
    await waiting(first, 'r1');
    await first.stop();
    const second = await runtimeWith();
    await expect(second.signal('r1', 'decision', { approved: true, by: 'bo' })).resolves.toBe('delivered');
    await expect(second.handle('r1').result()).resolves.toMatchObject({ approved: true, by: 'bo' });
  });

  it('a saga waiting for a signal gives its slot to other sagas', async () => {
    const runtime = await runtimeWith({ maxActiveSagas: 1 });
    await runtime.startSaga(Approval, 's1', {});
    await waiting(runtime, 's1');
    await runtime.startSaga(Approval, 's2', {});
    await waiting(runtime, 's2');
    // With one slot, s2 could only run because s1 gave it back while waiting.
    await fixture.eventually(() => runtime.stats.sleepingSagas === 2, 'both sagas waiting without a slot');
    await runtime.signal('s2', 'decision', { approved: true, by: 'cy' });
    await expect(runtime.handle('s2').result()).resolves.toMatchObject({ by: 'cy' });
    await runtime.signal('s1', 'decision', { approved: false, by: 'di' });
    await expect(runtime.handle('s1').result()).resolves.toMatchObject({ by: 'di' });
  });

  it('races a signal against a sleep: the loser is left behind, and the saga completes either way', async () => {
    const Race = saga('Race', async (ctx) => {
      const winner = await Promise.race([
        ctx.waitForSignal<string>('answer').then((answer) => `answered ${answer}`),
        ctx.sleep('patience', 1_000).then(() => 'gave up'),
      ]);
      return ctx.step('record', () => winner);
    });
    const runtime = await fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(Race));
    const answered = await runtime.startSaga(Race, 'r-answered', undefined);
    const patient = await runtime.startSaga(Race, 'r-patient', undefined);
    await fixture.eventually(
      async () =>
        (await runtime.progress('r-answered'))?.calls.some((call) => call.kind === 'sleep') === true,
    );
    await runtime.signal('r-answered', 'answer', 'yes');
    await expect(answered.result()).resolves.toBe('answered yes');
    await fixture.advance(clock, 1_000, 100);
    await expect(patient.result()).resolves.toBe('gave up');
    // The mailbox went with the saga: a late answer is refused.
    await expect(runtime.signal('r-patient', 'answer', 'late')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('refuses a bad signal name and a value that is not JSON, with errors that say why', async () => {
    const runtime = await runtimeWith();
    await expect(runtime.signal('a', 'bad name!', 1)).rejects.toThrow(/A signal name must match/);
    await expect(runtime.signal('a', 'decision', () => 1)).rejects.toThrow(/signal 'decision'/);
  });
});
