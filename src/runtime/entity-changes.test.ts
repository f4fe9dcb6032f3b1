// `runtime.onEntityChanges` reports what a committed transaction did to entities, on both shapes:
// these tests prove that only committed changes are reported (never a rejected command or a unit
// rolled back with its savepoint), that the report comes before the caller's `send` resolves,
// that one entity changed several times in a transaction is reported once from first to last,
// that sagas' commands are reported like direct ones, and that a disposed or throwing listener
// leaves the runtime alone.
import { afterEach, expect, it } from 'vitest';
import { ManualClock, seededRandom } from '../time.ts';
import { entity, saga } from './definitions.ts';
import type { EntityChange } from './entity-changes.ts';
import { describeShapes, openShape, type ShapeFixture } from './shapes.ts';

const Counter = entity('ChangedCounter', {
  initial: () => ({ value: 0 }),
  commands: {
    add(state, input: { by: number }) {
      if (input.by === 0) throw new Error('adding 0 is refused');
      return { state: { value: state.value + input.by }, reply: state.value + input.by };
    },
    read(state) {
      return { reply: state.value };
    },
    remove() {
      return { delete: true };
    },
  },
});

const Bump = saga('ChangedBump', async (ctx, input: { id: string }) => {
  await ctx.send(Counter, input.id, 'add', { by: 1 });
  return await ctx.send(Counter, input.id, 'add', { by: 1 });
});

describeShapes('entity changes', (shape) => {
  let fixture: ShapeFixture;
  afterEach(async () => {
    await fixture.destroy();
  });

  async function started() {
    const clock = new ManualClock(1_000);
    fixture = await openShape(shape, { clock, timers: clock, random: seededRandom(7) });
    const runtime = fixture.runtime().register(Counter, Bump);
    const seen: EntityChange[] = [];
    const calls: number[] = [];
    runtime.onEntityChanges((changes) => {
      calls.push(changes.length);
      seen.push(...changes);
    });
    return { runtime: await fixture.start(runtime), seen, calls };
  }

  it('reports a committed change with its versions and states before and after, before the send resolves', async () => {
    const { runtime, seen } = await started();
    const order: string[] = [];
    const sub = runtime.onEntityChanges(() => order.push('reported'));
    await runtime.send(Counter, 'a', 'add', { by: 2 });
    order.push('resolved');
    await runtime.send(Counter, 'a', 'add', { by: 3 });
    expect(order).toEqual(['reported', 'resolved', 'reported']);
    expect(seen).toEqual([
      {
        entity: 'ChangedCounter',
        id: 'a',
        version: 1,
        previousVersion: 0,
        state: { value: 2 },
        previousState: undefined,
      },
      {
        entity: 'ChangedCounter',
        id: 'a',
        version: 2,
        previousVersion: 1,
        state: { value: 5 },
        previousState: { value: 2 },
      },
    ]);
    // Disposed: no longer told.
    sub.dispose();
    await runtime.send(Counter, 'a', 'add', { by: 1 });
    expect(order).toHaveLength(3);
    expect(seen).toHaveLength(3);
  });

  it('reports nothing for a rejected command or a read-only one, and a deletion with version 0', async () => {
    const { runtime, seen } = await started();
    await runtime.send(Counter, 'b', 'add', { by: 4 });
    await expect(runtime.send(Counter, 'b', 'add', { by: 0 })).rejects.toThrow('adding 0 is refused');
    expect(await runtime.send(Counter, 'b', 'read', undefined)).toBe(4);
    await runtime.send(Counter, 'b', 'remove', undefined);
    // Removing what does not exist changes nothing.
    await runtime.send(Counter, 'never', 'remove', undefined);
    expect(
      seen.map(({ id, version, previousVersion, state }) => ({ id, version, previousVersion, state })),
    ).toEqual([
      { id: 'b', version: 1, previousVersion: 0, state: { value: 4 } },
      { id: 'b', version: 0, previousVersion: 1, state: undefined },
    ]);
  });

  it("drops a failed unit's transaction attempt: its neighbours' changes are reported once, from the commit that kept them", async () => {
    const { runtime, seen } = await started();
    // Submitted in one turn, the three share a transaction; the failing unit rolls it back and
    // the committer runs the others again, each in a savepoint of its own.
    const results = await Promise.allSettled([
      runtime.send(Counter, 'c1', 'add', { by: 1 }),
      runtime.transaction(async () => {
        throw new Error('this unit fails');
      }),
      runtime.send(Counter, 'c2', 'add', { by: 1 }),
    ]);
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(runtime.stats.commits.retriedTransactions).toBeGreaterThanOrEqual(1);
    expect(seen.map((change) => `${change.id}@${change.version}`).sort()).toEqual(['c1@1', 'c2@1']);
  });

  it('reports an entity changed several times in one transaction once per transaction, chained from first to last', async () => {
    const { runtime, seen } = await started();
    await Promise.all(Array.from({ length: 20 }, () => runtime.send(Counter, 'hot', 'add', { by: 1 })));
    const hot = seen.filter((change) => change.id === 'hot');
    expect(hot.length).toBeLessThan(20);
    // Each report starts where the previous one ended, and the last one ends at the last write.
    hot.forEach((change, index) => {
      expect(change.previousVersion).toBe(index === 0 ? 0 : hot[index - 1]!.version);
    });
    expect(hot.at(-1)).toMatchObject({ version: 20, state: { value: 20 } });
  });

  it("reports a saga's commands like direct ones", async () => {
    const { runtime, seen } = await started();
    const handle = await runtime.startSaga(Bump, 'bump-1', { id: 'd' });
    expect(await handle.result()).toBe(2);
    expect(seen.filter((change) => change.id === 'd').map((change) => change.version)).toEqual([1, 2]);
  });

  it('reports a throwing listener as a problem; the commit and the other listeners are unaffected', async () => {
    const { runtime, seen } = await started();
    runtime.onEntityChanges(() => {
      throw new Error('listener bug');
    });
    await expect(runtime.send(Counter, 'e', 'add', { by: 1 })).resolves.toBe(1);
    expect(seen).toHaveLength(1);
    expect(runtime.problems().at(-1)).toMatchObject({
      message: 'an onEntityChanges listener threw; the commit stands',
      error: 'listener bug',
    });
    expect(() => runtime.onEntityChanges(undefined as never)).toThrow(/needs a listener function/);
  });
});
