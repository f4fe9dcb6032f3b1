// Group commit is how the runtime reaches its throughput without giving up isolation: these tests
// prove that units share transactions, that one unit's failure undoes only its own writes, that
// promises settle only after the commit, and that a fenced path refuses everything. They run
// over both commit paths: embedded (SQLite log and store in one transaction) and cluster (one
// PostgreSQL transaction with an outbox, fenced per work partition; a relay publishes to Kafka).
import { afterEach, describe, expect, it } from 'vitest';
import { Ownership } from '../cluster/ownership.ts';
import { OutboxRelay } from '../cluster/relay.ts';
import { ClosedError, ConflictError, ValidationError } from '../errors.ts';
import { type Clock, ManualClock, systemTimers } from '../time.ts';
import { ClusterCommitPath } from './cluster-commit-path.ts';
import type { CommitPath } from './commit-path.ts';
import { EmbeddedCommitPath } from './embedded.ts';
import { FencedError } from './errors.ts';
import { GroupCommitter } from './group-commit.ts';
import { openEmbedded } from './harness.ts';
import {
  describeShapes,
  openShape,
  type ShapeFixture,
  type ShapeName,
  testWorkPartitions,
} from './shapes.ts';

const fixedClock: Clock = { now: () => 1, monotonicNow: () => 1 };

/**
 * A commit path of `shape` on `fixture`, owning everything: the embedded path claims the
 * database; the cluster path's node claims every work partition, and a relay publishes its
 * outbox. `usurp` makes another owner claim what this one holds.
 */
async function commitPath(shape: ShapeName, fixture: ShapeFixture) {
  if (shape === 'embedded') {
    const path = new EmbeddedCommitPath({ store: fixture.store, log: fixture.log, clock: fixedClock });
    await path.open();
    return {
      path: path as CommitPath,
      usurp: () =>
        new EmbeddedCommitPath({ store: fixture.store, log: fixture.log, clock: fixedClock }).open(),
      stop: async () => {},
    };
  }
  const ownership = new Ownership({
    store: fixture.store,
    node: 'node-1',
    partitions: testWorkPartitions,
    clock: fixedClock,
  });
  await ownership.claim(Array.from({ length: testWorkPartitions }, (_, partition) => partition));
  const relay = new OutboxRelay({
    store: fixture.store,
    log: fixture.log,
    ownership,
    timers: systemTimers,
    onError: () => undefined,
  });
  relay.start();
  const path = new ClusterCommitPath({
    store: fixture.store,
    log: fixture.log,
    ownership,
    clock: fixedClock,
    onOutbox: () => relay.wake(),
  });
  return {
    path: path as CommitPath,
    usurp: () =>
      fixture.store.transaction(async (tx) => {
        for (let partition = 0; partition < testWorkPartitions; partition++) {
          await tx.partitions.claim(partition, 'intruder', 2);
        }
      }),
    stop: () => relay.stop(),
  };
}

describeShapes('GroupCommitter', (shape) => {
  let fixture: ShapeFixture;
  let stop: () => Promise<void> = async () => {};
  afterEach(async () => {
    await stop();
    await fixture.destroy();
  });

  async function committer(
    maxUnitsPerTransaction = 1000,
    linger: { lingerMs: number; timers: ManualClock } | Record<string, never> = {},
  ) {
    fixture = await openShape(shape);
    const opened = await commitPath(shape, fixture);
    stop = opened.stop;
    return {
      path: opened.path,
      usurp: opened.usurp,
      committer: new GroupCommitter(opened.path, { maxUnitsPerTransaction, ...linger }),
    };
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
    // The rerun with savepoints takes only the units of the failed attempt (a and b): c, still
    // queued then, commits in the next transaction.
    expect(c.stats).toMatchObject({ transactions: 2, retriedTransactions: 1, failedUnits: 1 });
    expect(await readState('a')).not.toBeNull();
    expect(await readState('b')).toBeNull();
    expect(await readState('c')).not.toBeNull();
  });

  it('fails only the unit whose write loses its version check, even when the check runs at the end of a batched transaction', async () => {
    const { committer: c } = await committer();
    await c.submit((scope) => scope.tx.entities.put('T', 'v', 1, 0));
    const outcomes = await Promise.allSettled([
      c.submit((scope) => scope.tx.entities.put('T', 'a', 1, 0)),
      // Version 1 is stored: the cluster path defers this write, the embedded one refuses it at once.
      c.submit((scope) => scope.tx.entities.put('T', 'v', 2, 5)),
      c.submit((scope) => scope.tx.entities.put('T', 'c', 1, 0)),
    ]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[1] as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError);
    expect(c.stats).toMatchObject({ retriedTransactions: 1, failedUnits: 1 });
    expect((await readState('v'))?.state).toBe(1);
    expect(await readState('a')).not.toBeNull();
    expect(await readState('c')).not.toBeNull();
  });

  it('never writes over state it did not read: a write that bypassed the committer costs a retry, not an update', async () => {
    const { committer: c } = await committer();
    const increment = async (scope: Parameters<Parameters<typeof c.submit>[0]>[0]) => {
      const current = await scope.tx.entities.get('T', 'n');
      const value = ((current?.state as number | undefined) ?? 0) + 1;
      await scope.tx.entities.put('T', 'n', value, current?.version ?? 0);
      return value;
    };
    expect(await c.submit(increment)).toBe(1);
    // Another writer (not this committer, so not this node's entity cache) moves it to 10.
    await fixture.store.transaction((tx) => tx.entities.put('T', 'n', 10, 1));
    expect(await c.submit(increment)).toBe(11);
    expect(await readState('n')).toMatchObject({ state: 11, version: 3 });
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
    const out = fixture.topic('out');
    await fixture.log.createTopic(out, { partitions: 1 });
    const record = (text: string) => ({ key: text, value: new TextEncoder().encode(text) });
    const outcomes = await Promise.allSettled([
      c.submit((scope) => scope.publish(out, [record('a')])),
      c.submit(async (scope) => {
        await scope.publish(out, [record('b')]);
        throw new Error('rolled back after publishing');
      }),
      c.submit((scope) => scope.publish(fixture.topic('missing-topic'), [record('x')])),
      c.submit((scope) => scope.publish(out, [{ ...record('h'), headers: { bad: 1 as unknown as string } }])),
      c.submit((scope) => scope.publish(out, [record('c')])),
    ]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual([
      'fulfilled',
      'rejected',
      'rejected',
      'rejected',
      'fulfilled',
    ]);
    await fixture.published();
    const records = await fixture.log.read(out, 0, 0);
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
    const { committer: c, usurp } = await committer();
    await usurp();
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

  it('reads ahead the entities its units name, once per transaction, and each unit still sees what the units before it wrote', async () => {
    const { path } = await committer();
    await new GroupCommitter(path).submit((scope) => scope.tx.entities.put('T', 'x', { n: 1 }, 0));
    const prefetches: string[][] = [];
    const counting: CommitPath = {
      shape: path.shape,
      open: () => path.open(),
      transaction: (fn, options) =>
        path.transaction(
          (scope) =>
            fn({
              ...scope,
              prefetch: (reads) => {
                prefetches.push(reads.map((read) => `${read.entity}/${read.id}`));
                return scope.prefetch(reads);
              },
            }),
          options,
        ),
    };
    const c = new GroupCommitter(counting);
    const bump = (id: string) =>
      c.submit(
        async (scope) => {
          const record = await scope.tx.entities.get('T', id);
          const n = ((record?.state as { n: number } | undefined)?.n ?? 0) + 1;
          await scope.tx.entities.put('T', id, { n }, record?.version ?? 0);
          return n;
        },
        { reads: [{ entity: 'T', id }] },
      );
    // Two units of one entity: the second reads what the first wrote, not what was read ahead.
    expect(await Promise.all([bump('x'), bump('y'), bump('x'), bump('z')])).toEqual([2, 1, 3, 1]);
    expect(prefetches).toEqual([['T/x', 'T/y', 'T/x', 'T/z']]);
    expect(c.stats).toMatchObject({ transactions: 1, units: 4 });
    expect((await readState('x'))?.state).toEqual({ n: 3 });
    expect((await readState('z'))?.state).toEqual({ n: 1 });
  });

  it('refuses new units after close, once the queued ones have settled', async () => {
    const { committer: c } = await committer();
    const queued = c.submit((scope) => scope.tx.entities.put('T', 'q', 1, 0));
    await c.close();
    await expect(queued).resolves.toBe(1);
    await expect(c.submit(async () => 1)).rejects.toBeInstanceOf(ClosedError);
  });
});

// Embedded only: that a unit submitted two turns of the event loop later finds the first
// transaction committed holds for SQLite, which commits within them; a PostgreSQL transaction is
// still open then, and the committer rightly takes the late unit into it.
describe('GroupCommitter on the embedded path', () => {
  it('without lingerMs, a unit submitted a few turns later gets a transaction of its own', async () => {
    const fixture = openEmbedded();
    try {
      const path = new EmbeddedCommitPath({ store: fixture.store, log: fixture.log, clock: fixedClock });
      await path.open();
      const eager = new GroupCommitter(path);
      const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
      const put = (id: string) => eager.submit((scope) => scope.tx.entities.put('T', id, 0, 0));
      const first = put('a');
      await turn();
      await turn();
      await Promise.all([first, put('b')]);
      expect(eager.stats.transactions).toBe(2);
    } finally {
      await fixture.destroy();
    }
  });
});
