// Group commit is how the runtime reaches its throughput without giving up isolation: these tests
// prove that units share transactions, that one unit's failure undoes only its own writes, that
// promises settle only after the commit, and that a fenced path refuses everything.
import { afterEach, describe, expect, it } from 'vitest';
import { ClosedError, ValidationError } from '../errors.ts';
import { ManualClock } from '../time.ts';
import { EmbeddedCommitPath } from './embedded.ts';
import { FencedError } from './errors.ts';
import { GroupCommitter } from './group-commit.ts';
import { type EmbeddedFixture, openEmbedded } from './harness.ts';

describe('GroupCommitter', () => {
  let fixture: EmbeddedFixture;
  afterEach(async () => {
    await fixture.destroy();
  });

  async function committer(
    maxUnitsPerTransaction = 1000,
    linger: { lingerMs: number; timers: ManualClock } | Record<string, never> = {},
  ): Promise<{ path: EmbeddedCommitPath; committer: GroupCommitter }> {
    fixture = openEmbedded();
    const path = new EmbeddedCommitPath({
      store: fixture.store,
      log: fixture.log,
      clock: { now: () => 1, monotonicNow: () => 1 },
    });
    await path.open();
    return { path, committer: new GroupCommitter(path, { maxUnitsPerTransaction, ...linger }) };
  }

  function readState(id: string) {
    return fixture.store.transaction((tx) => tx.entities.get('T', id));
  }

  it('commits units submitted together in one transaction, each resolving with its own result', async () => {
    const { committer: c } = await committer();
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        c.submit(async (scope) => scope.tx.entities.put('T', `e${i}`, { i }, 0)),
      ),
    );
    expect(results).toEqual(Array(10).fill(1));
    expect(c.stats).toMatchObject({ transactions: 1, units: 10, failedUnits: 0 });
  });

  it('rolls back only the failing unit: the others in its transaction commit', async () => {
    const { committer: c } = await committer();
    const outcomes = await Promise.allSettled([
      c.submit((scope) => scope.tx.entities.put('T', 'a', 1, 0)),
      c.submit(async (scope) => {
        await scope.tx.entities.put('T', 'b', 1, 0);
        throw new Error('this unit fails after writing');
      }),
      c.submit((scope) => scope.tx.entities.put('T', 'c', 1, 0)),
    ]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(c.stats).toMatchObject({ transactions: 1, retriedTransactions: 1, failedUnits: 1 });
    expect(await readState('a')).not.toBeNull();
    expect(await readState('b')).toBeNull();
    expect(await readState('c')).not.toBeNull();
  });

  it('runs units without a savepoint each until one throws; then runs them again, each isolated, and commits each effect once', async () => {
    const { committer: c } = await committer();
    const runs = { a: 0, b: 0, c: 0 };
    const increment = (id: 'a' | 'c') => async (scope: Parameters<Parameters<typeof c.submit>[0]>[0]) => {
      runs[id]++;
      const current = await scope.tx.entities.get('T', id);
      return scope.tx.entities.put(
        'T',
        id,
        ((current?.state as number | undefined) ?? 0) + 1,
        current?.version ?? 0,
      );
    };
    // No failure: one optimistic transaction, every unit run once.
    await Promise.all([c.submit(increment('a')), c.submit(increment('c'))]);
    expect(runs).toEqual({ a: 1, b: 0, c: 1 });
    expect(c.stats.retriedTransactions).toBe(0);
    const outcomes = await Promise.allSettled([
      c.submit(increment('a')),
      c.submit(async (scope) => {
        runs.b++;
        await scope.tx.entities.put('T', 'b', 1, 0);
        throw new Error('fails');
      }),
      c.submit(increment('c')),
    ]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    // The first attempt stopped at 'b' and rolled back; the retry ran all three, isolated.
    expect(runs).toEqual({ a: 3, b: 2, c: 2 });
    expect(c.stats.retriedTransactions).toBe(1);
    expect((await readState('a'))?.state).toBe(2);
    expect((await readState('c'))?.state).toBe(2);
    expect(await readState('b')).toBeNull();
  });

  it("appends a transaction's records once at its end, without the records of units that rolled back", async () => {
    const { committer: c } = await committer();
    await fixture.log.createTopic('out', { partitions: 1 });
    const record = (text: string) => ({ key: text, value: new TextEncoder().encode(text) });
    const outcomes = await Promise.allSettled([
      c.submit((scope) => scope.publish('out', [record('a')])),
      c.submit(async (scope) => {
        await scope.publish('out', [record('b')]);
        throw new Error('rolled back after publishing');
      }),
      c.submit((scope) => scope.publish('missing-topic', [record('x')])),
      c.submit((scope) =>
        scope.publish('out', [{ ...record('h'), headers: { bad: 1 as unknown as string } }]),
      ),
      c.submit((scope) => scope.publish('out', [record('c')])),
    ]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual([
      'fulfilled',
      'rejected',
      'rejected',
      'rejected',
      'fulfilled',
    ]);
    expect(c.stats.transactions).toBe(1);
    const records = await fixture.log.read('out', 0, 0);
    expect(records.map((r) => new TextDecoder().decode(r.value!))).toEqual(['a', 'c']);
  });

  it('settles a unit only after its transaction committed: what it wrote is readable at once', async () => {
    const { committer: c } = await committer();
    await c.submit((scope) => scope.tx.entities.put('T', 'x', 'written', 0));
    expect((await readState('x'))?.state).toBe('written');
  });

  it('bounds a transaction to maxUnitsPerTransaction units', async () => {
    const { committer: c } = await committer(2);
    await Promise.all(
      Array.from({ length: 5 }, (_, i) => c.submit((scope) => scope.tx.entities.put('T', `m${i}`, i, 0))),
    );
    expect(c.stats.transactions).toBe(3);
  });

  it('with lingerMs, waits that long for more units before a transaction that is not full', async () => {
    const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
    const put = (c: GroupCommitter, id: string) => c.submit((scope) => scope.tx.entities.put('T', id, 0, 0));
    // Without linger, a unit submitted a few turns later gets a transaction of its own.
    const { committer: eager } = await committer();
    const first = put(eager, 'a');
    await turn();
    await turn();
    await Promise.all([first, put(eager, 'b')]);
    expect(eager.stats.transactions).toBe(2);
    await fixture.destroy();

    const clock = new ManualClock();
    const { committer: lingering } = await committer(3, { lingerMs: 5, timers: clock });
    const units = [put(lingering, 'c')];
    await turn();
    await turn();
    units.push(put(lingering, 'd'));
    expect(lingering.stats.transactions).toBe(0);
    clock.advance(5);
    await Promise.all(units);
    expect(lingering.stats).toMatchObject({ transactions: 1, units: 2 });
    // A queue that already fills a transaction does not wait.
    await Promise.all(['e', 'f', 'g'].map((id) => put(lingering, id)));
    expect(lingering.stats).toMatchObject({ transactions: 2, units: 5 });
  });

  it('refuses a lingerMs without timers, and one out of bounds', async () => {
    const { path } = await committer();
    expect(() => new GroupCommitter(path, { lingerMs: 1 })).toThrow(
      "'timers' must be given with a 'lingerMs' above 0",
    );
    expect(() => new GroupCommitter(path, { lingerMs: 1001, timers: new ManualClock() })).toThrow(
      "'lingerMs' must be <= 1000: current value is 1001",
    );
  });

  it('rejects every unit with a FencedError once another owner claimed the database', async () => {
    const { committer: c } = await committer();
    const usurper = new EmbeddedCommitPath({
      store: fixture.store,
      log: fixture.log,
      clock: { now: () => 2, monotonicNow: () => 2 },
    });
    await usurper.open();
    const outcomes = await Promise.allSettled([
      c.submit((scope) => scope.tx.entities.put('T', 'f1', 1, 0)),
      c.submit((scope) => scope.tx.entities.put('T', 'f2', 1, 0)),
    ]);
    for (const outcome of outcomes) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(FencedError);
    }
    expect(await readState('f1')).toBeNull();
  });

  it('refuses a submit from inside a unit, which would wait for itself', async () => {
    const { committer: c } = await committer();
    const inner = await c.submit(async () => c.submit(async () => 1).catch((error: unknown) => error));
    expect(inner).toBeInstanceOf(ValidationError);
  });

  it('refuses new units after close, once the queued ones have settled', async () => {
    const { committer: c } = await committer();
    const queued = c.submit((scope) => scope.tx.entities.put('T', 'q', 1, 0));
    await c.close();
    await expect(queued).resolves.toBe(1);
    await expect(c.submit(async () => 1)).rejects.toBeInstanceOf(ClosedError);
  });
});
