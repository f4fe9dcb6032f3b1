// The runtime's read side: typed entity listing (runtime.list), a running saga's progress as
// typed calls (runtime.progress), and both on one snapshot (runtime.read's view). Both shapes.
import { afterEach, beforeEach, expect, expectTypeOf, it } from 'vitest';
import { TerminalError } from '../errors.ts';
import { ManualClock, seededRandom } from '../time.ts';
import { entity, saga } from './definitions.ts';
import { describeShapes, openShape, type ShapeFixture } from './shapes.ts';

const accountEntity = (eventsTopic: string) =>
  entity('Account', {
    eventsTopic,
    initial: { balance: 0, owner: '' },
    commands: {
      open(state, input: { owner: string }) {
        return {
          state: { ...state, owner: input.owner },
          events: [{ type: 'opened' as const, owner: input.owner }],
        };
      },
      deposit(state, input: { amount: number }) {
        const balance = state.balance + input.amount;
        return {
          state: { ...state, balance },
          events: [{ type: 'deposited' as const, amount: input.amount }],
          reply: balance,
        };
      },
      withdraw(state, input: { amount: number }) {
        if (state.balance < input.amount)
          throw new TerminalError(`balance ${state.balance} is below ${input.amount}`);
        return {
          state: { ...state, balance: state.balance - input.amount },
          reply: state.balance - input.amount,
        };
      },
    },
  });

describeShapes('read side', (shape) => {
  let clock: ManualClock;
  let fixture: ShapeFixture;
  let Account: ReturnType<typeof accountEntity>;

  beforeEach(async () => {
    clock = new ManualClock(1_000_000);
    fixture = await openShape(shape, { clock, timers: clock, random: seededRandom(9) });
    Account = accountEntity(fixture.topic('Account.events'));
  });

  afterEach(async () => {
    await fixture.destroy();
  });

  it('lists an entity type page by page, in id order, with typed state', async () => {
    const runtime = await fixture.start(fixture.runtime().register(Account));
    for (const id of ['c', 'a', 'b', 'd'])
      await runtime.send(Account, id, 'open', { owner: id.toUpperCase() });
    const first = await runtime.list(Account, { limit: 3 });
    expectTypeOf(first[0]!.state).toEqualTypeOf<{ balance: number; owner: string }>();
    expect(first.map((account) => [account.id, account.state.owner, account.version])).toEqual([
      ['a', 'A', 1],
      ['b', 'B', 1],
      ['c', 'C', 1],
    ]);
    const rest = await runtime.list(Account, { afterId: 'c', limit: 3 });
    expect(rest.map((account) => account.id)).toEqual(['d']);
    await expect(runtime.list(Account, { limit: 0 })).rejects.toThrow(/limit/);
  });

  it("shows a saga's progress as typed calls while it runs, and its failure and compensations after", async () => {
    const release = { open: () => {} };
    const Transfer = saga('Transfer', async (ctx, input: { amount: number }) => {
      await ctx.send(
        Account,
        'from',
        'deposit',
        { amount: 5 },
        { compensate: { command: 'withdraw', input: { amount: 5 } } },
      );
      const note = await ctx.step('note', () => 'noted');
      await ctx.sleep('cool-off', 1_000);
      await new Promise<void>((resolve) => (release.open = resolve));
      await ctx.send(Account, 'from', 'withdraw', { amount: input.amount });
      return note;
    });
    const runtime = await fixture.start(fixture.runtime({ drainTimeoutMs: 0 }).register(Account, Transfer));
    const handle = await runtime.startSaga(Transfer, 't1', { amount: 50 });
    await fixture.eventually(async () => (await runtime.progress('t1'))?.calls.length === 3, 'three calls');
    const running = await runtime.progress('t1');
    expect(running).toMatchObject({
      id: 't1',
      type: 'Transfer',
      status: 'running',
      input: { amount: 50 },
      failure: null,
    });
    expect(running?.calls).toEqual([
      {
        kind: 'send',
        entity: 'Account',
        command: 'deposit',
        status: 'completed',
        reply: 5,
        error: null,
        at: 1_000_000,
      },
      {
        kind: 'step',
        name: 'note',
        status: 'completed',
        result: 'noted',
        error: null,
        attempts: 1,
        at: 1_000_000,
      },
      { kind: 'sleep', name: 'cool-off', wakeAt: 1_001_000, at: 1_000_000 },
    ]);
    await fixture.advance(clock, 1_000, 100);
    release.open();
    await expect(handle.result()).rejects.toThrow(/balance 5 is below 50/);
    const ended = await runtime.progress('t1');
    expect(ended?.status).toBe('compensated');
    expect(ended?.failure).toMatchObject({ code: 'STEP_FAILED', step: 'Account.withdraw' });
    expect(ended?.calls.slice(3).map((call) => call.kind)).toEqual(['send', 'compensation']);
    expect(ended?.calls[4]).toMatchObject({
      kind: 'compensation',
      step: null,
      send: { entity: 'Account', command: 'deposit' },
    });
    expect(await runtime.progress('nobody')).toBeNull();
  });

  it("reads entities and sagas' progress on one snapshot through runtime.read's view", async () => {
    const Open = saga('Open', async (ctx, input: { id: string }) =>
      ctx.send(Account, input.id, 'open', { owner: 'eve' }),
    );
    const runtime = await fixture.start(fixture.runtime().register(Account, Open));
    await (await runtime.startSaga(Open, 'o1', { id: 'e' })).result();
    const seen = await runtime.read(async (_tx, view) => ({
      account: await view.state(Account, 'e'),
      progress: await view.progress('o1'),
    }));
    expect(seen.account).toMatchObject({ state: { owner: 'eve', balance: 0 }, version: 1 });
    expect(seen.progress?.status).toBe('completed');
  });
});
