// Concurrent durable calls in one saga (Promise.all over steps, sends and sleeps) and the
// journaled ctx.now()/ctx.random(): outcomes reach the code in journal order, so a restart
// replays every call with the outcome it had. Both shapes: embedded and a one-node cluster.
import { afterEach, beforeEach, expect, it } from 'vitest';
import { TerminalError } from '../errors.ts';
import { ManualClock, seededRandom } from '../time.ts';
import { entity, type SagaFailure, saga } from './definitions.ts';
import type { SagaNotCompletedError } from './errors.ts';
import type { Runtime } from './runtime.ts';
import { untag } from './saga-calls.ts';
import { describeShapes, openShape, type ShapeFixture } from './shapes.ts';

const stockEntity = (eventsTopic: string) =>
  entity('Stock', {
    eventsTopic,
    initial: { available: 10 },
    commands: {
      reserve(state, input: { qty: number }) {
        if (state.available < input.qty) throw new TerminalError(`only ${state.available} left`);
        return { state: { available: state.available - input.qty }, reply: state.available - input.qty };
      },
      release(state, input: { qty: number }) {
        return { state: { available: state.available + input.qty } };
      },
    },
  });

function gate<T = void>() {
  let open!: (value: T) => void;
  const opened = new Promise<T>((resolve) => (open = resolve));
  return { opened, open };
}

describeShapes('concurrent saga calls', (shape) => {
  let clock: ManualClock;
  let fixture: ShapeFixture;
  let Stock: ReturnType<typeof stockEntity>;

  beforeEach(async () => {
    clock = new ManualClock(1_000_000);
    fixture = await openShape(shape, { clock, timers: clock, random: seededRandom(7) });
    Stock = stockEntity(fixture.topic('Stock.events'));
  });

  afterEach(async () => {
    await fixture.destroy();
  });

  async function runtimeWith(definitions: Parameters<Runtime['register']>) {
    return fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(...definitions));
  }

  async function namesOf(runtime: Runtime, id: string) {
    return (await runtime.journal(id)).map((entry) => `${entry.kind}:${untag(entry.name).name}`);
  }

  it('runs steps and sends of one Promise.all at once, and a restart replays them without running them again', async () => {
    const ran: string[] = [];
    const slow = gate();
    let blockLast = true;
    const flow = saga('Fanout', async (ctx) => {
      const results = await Promise.all([
        ctx.step('slow', async () => {
          ran.push('slow started');
          await slow.opened;
          ran.push('slow done');
          return 'S';
        }),
        ctx.step('fast', () => {
          ran.push('fast');
          return 'F';
        }),
        ctx.send(Stock, 'x', 'reserve', { qty: 1 }),
        ctx.send(Stock, 'y', 'reserve', { qty: 2 }),
      ]);
      const last = await ctx.step('last', () => (blockLast ? new Promise<never>(() => {}) : 'L'));
      return [...results, last];
    });
    const first = await runtimeWith([Stock, flow]);
    await first.startSaga(flow, 'f1', undefined);
    // The fast step and both sends finish while the slow step is still running.
    await fixture.eventually(async () => (await first.journal('f1')).length === 4);
    expect(ran).toEqual(['slow started', 'fast']);
    slow.open();
    await fixture.eventually(() => ran.includes('slow done'));
    await fixture.eventually(async () => (await first.journal('f1')).length === 5);
    await first.stop();

    blockLast = false;
    const second = await runtimeWith([Stock, flow]);
    await expect(second.handle('f1').result()).resolves.toEqual(['S', 'F', 9, 8, 'L']);
    expect(ran).toEqual(['slow started', 'fast', 'slow done']);
    expect((await second.state(Stock, 'x'))?.state).toEqual({ available: 9 });
    expect((await second.state(Stock, 'y'))?.state).toEqual({ available: 8 });
    // Entries in the order they finished; those written while others ran carry their call's index.
    const journal = await second.journal('f1');
    expect(journal.slice(1, 4).every((entry) => untag(entry.name).call !== undefined)).toBe(true);
    expect((await namesOf(second, 'f1')).slice(4)).toEqual(['step:slow', 'step:last']);
  });

  it('gives two concurrent sends of one command their own replies on replay', async () => {
    let blockLast = true;
    const flow = saga('Twins', async (ctx) => {
      const replies = await Promise.all(
        ['a', 'b', 'c', 'd'].map((id, index) => ctx.send(Stock, id, 'reserve', { qty: index + 1 })),
      );
      await ctx.step('last', () => (blockLast ? new Promise<never>(() => {}) : null));
      return replies;
    });
    const first = await runtimeWith([Stock, flow]);
    await first.startSaga(flow, 't1', undefined);
    await fixture.eventually(async () => (await first.journal('t1')).length === 5);
    await first.stop();
    blockLast = false;
    const second = await runtimeWith([Stock, flow]);
    await expect(second.handle('t1').result()).resolves.toEqual([9, 8, 7, 6]);
  });

  it('when one concurrent call fails, lets the others finish, then undoes every finished one with the failure', async () => {
    const undone: Array<{ what: string; failure: SagaFailure }> = [];
    const release = gate();
    const flow = saga('PartlyFailing', async (ctx) => {
      await Promise.all([
        ctx.step(
          'slow-ok',
          async () => {
            await release.opened;
            return 1;
          },
          { compensate: (_step, _result, failure) => void undone.push({ what: 'slow-ok', failure }) },
        ),
        ctx.step('declined', () => {
          throw new TerminalError('card declined', { details: { reason: 'declined' } });
        }),
        ctx.send(
          Stock,
          'z',
          'reserve',
          { qty: 3 },
          {
            compensate: {
              command: 'release',
              input: (reply, failure) => {
                undone.push({ what: `release ${reply}`, failure });
                return { qty: 3 };
              },
            },
          },
        ),
      ]);
    });
    const runtime = await runtimeWith([Stock, flow]);
    const handle = await runtime.startSaga(flow, 'p1', undefined);
    await fixture.eventually(async () => (await runtime.journal('p1')).length >= 3);
    release.open();
    const error = (await handle.result().catch((caught: unknown) => caught)) as SagaNotCompletedError;
    expect(error.status).toBe('compensated');
    expect(error.reason).toBe("Step 'declined' failed after 1 attempt(s): card declined");
    // Undone last finished first: the slow step finished after the send.
    expect(undone.map((entry) => entry.what)).toEqual(['slow-ok', 'release 7']);
    expect(undone[0]!.failure).toMatchObject({ code: 'STEP_FAILED', step: 'declined' });
    expect((await runtime.state(Stock, 'z'))?.state).toEqual({ available: 10 });
    const progress = await runtime.progress('p1');
    expect(progress?.failure).toMatchObject({ step: 'declined', code: 'STEP_FAILED' });
  });

  it('journals ctx.now() and ctx.random(), so a resumed saga sees the same values', async () => {
    let blockLast = true;
    const seen: number[][] = [];
    const flow = saga('Clocked', async (ctx) => {
      const values = [await ctx.now(), await ctx.random()];
      seen.push(values);
      await ctx.step('last', () => (blockLast ? new Promise<never>(() => {}) : null));
      return values;
    });
    const first = await runtimeWith([flow]);
    await first.startSaga(flow, 'c1', undefined);
    await fixture.eventually(() => seen.length === 1);
    await first.stop();
    clock.advance(5_000);
    blockLast = false;
    const second = await runtimeWith([flow]);
    const values = (await second.handle('c1').result()) as number[];
    expect(values[0]).toBe(1_000_000);
    expect(values[1]).toBeGreaterThanOrEqual(0);
    expect(values[1]).toBeLessThan(1);
    expect(seen).toEqual([values, values]);
  });

  it('replays a sleep that ran beside steps in the order its end was journaled', async () => {
    const order: string[] = [];
    let blockLast = true;
    const flow = saga('SleepBeside', async (ctx) => {
      await Promise.all([
        ctx.sleep('nap', 100).then(() => ctx.step('after-nap', () => order.push('after-nap'))),
        ctx.step('x', () => 1).then(() => ctx.step('after-x', () => order.push('after-x'))),
      ]);
      await ctx.step('last', () => (blockLast ? new Promise<never>(() => {}) : null));
      return 'done';
    });
    const first = await runtimeWith([flow]);
    await first.startSaga(flow, 's1', undefined);
    await fixture.eventually(async () => (await first.journal('s1')).length === 4);
    await fixture.advance(clock, 100);
    await fixture.eventually(() => order.length === 2);
    await first.stop();
    const before = await namesOf(first, 's1');
    expect(before).toEqual([
      'event:$start',
      'sleep:nap',
      'step:x',
      'step:after-x',
      'event:$wake:nap',
      'step:after-nap',
    ]);
    blockLast = false;
    const second = await runtimeWith([flow]);
    await expect(second.handle('s1').result()).resolves.toBe('done');
    expect(order).toEqual(['after-x', 'after-nap']);
  });
});
