import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock, seededRandom } from '../time.ts';
import { entity, saga } from './definitions.ts';
import { type EmbeddedFixture, openEmbedded } from './harness.ts';

describe('runtime smoke', () => {
  let fixture: EmbeddedFixture | undefined;
  afterEach(async () => {
    await fixture?.destroy();
  });

  it('runs a saga that commands an entity, calls out and emits', async () => {
    const clock = new ManualClock(1_000_000);
    fixture = openEmbedded({ clock, timers: clock, random: seededRandom(1) });
    const Counter = entity('Counter', {
      initial: { count: 0 },
      commands: {
        add(state, input: { by: number }) {
          return {
            state: { count: state.count + input.by },
            events: [{ added: input.by }],
            reply: state.count + input.by,
          };
        },
      },
    });
    const calls: string[] = [];
    const flow = saga('Flow', async (ctx, input: { by: number }) => {
      const first = await ctx.send(Counter, 'c1', 'add', { by: input.by });
      const external = await ctx.step('call', (step) => {
        calls.push(step.idempotencyKey);
        return { ok: true };
      });
      await ctx.emit('flow.done', { key: ctx.sagaId, value: { first, external } });
      return { first };
    });
    const runtime = fixture.runtime().register(Counter, flow);
    await runtime.start();
    const handle = await runtime.startSaga(flow, 's1', { by: 2 });
    await expect(handle.result()).resolves.toEqual({ first: 2 });
    expect(calls).toEqual(['s1/call']);
    const journal = await runtime.journal('s1');
    expect(journal.map((entry) => [entry.kind, entry.name, entry.status])).toEqual([
      ['event', '$start', 'completed'],
      ['step', 'Counter.add', 'completed'],
      ['step', 'call', 'completed'],
      ['event', 'emit:flow.done', 'completed'],
    ]);
    expect((await runtime.saga('s1'))?.status).toBe('completed');
    expect(await runtime.state(Counter, 'c1')).toEqual({ state: { count: 2 }, version: 1 });
  });
});
