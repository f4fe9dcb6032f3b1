import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BatchedWriteConflictError } from '../sql/write-batch.ts';
import type { StoreTransaction } from '../types.ts';
import { openPostgresStore, type PostgresStore } from './store.ts';
import { testSchemas } from './test-schema.ts';

// Needs a PostgreSQL server: set MERIDIAN_TEST_PG_URL. Without it this file is skipped.
const url = process.env.MERIDIAN_TEST_PG_URL;

const batched = { batchWrites: true } as const;

const step = (sagaId: string, sequence: number) => ({
  sagaId,
  sequence,
  kind: 'step' as const,
  name: `s${sequence}`,
  status: 'completed' as const,
  result: { n: sequence },
  error: null,
  attempts: 1,
  at: 1,
});

async function newSaga(tx: StoreTransaction, id: string): Promise<void> {
  await tx.sagas.create({ id, type: 'T', status: 'running', input: null, createdAt: 1 });
}

describe.skipIf(!url)('PostgreSQL batched transactions (batchWrites)', () => {
  const schemas = testSchemas(url ?? '', 'batch');
  let store: PostgresStore;
  let schema: string;
  beforeEach(async () => {
    schema = schemas.next();
    store = await openPostgresStore({ connectionString: url ?? '', schema, maxConnections: 4 });
  });
  afterEach(async () => {
    await store.close();
    await schemas.drop(schema);
  });
  afterAll(() => schemas.end());

  it('commits every deferred kind, and reads in the transaction see the writes before them', async () => {
    await store.transaction(async (tx) => {
      await tx.entities.put('E', 'a', { n: 1 }, 0);
      await newSaga(tx, 's1');
    });
    const seen = await store.transaction(async (tx) => {
      expect(await tx.entities.put('E', 'a', { n: 2 }, 1)).toBe(2);
      expect(await tx.entities.put('E', 'b', { n: 1 }, 0)).toBe(1);
      expect(await tx.entities.put('E', 'a', { n: 3 }, 2)).toBe(3); // same key again: runs the first
      await tx.sagas.appendJournal(step('s1', 0));
      await tx.sagas.appendJournal(step('s1', 1));
      expect(await tx.sagas.update('s1', { status: 'completed', output: { ok: true }, at: 5 }, 1)).toBe(2);
      return {
        a: await tx.entities.get('E', 'a'),
        journal: (await tx.sagas.journal('s1')).map((entry) => entry.sequence),
        saga: await tx.sagas.get('s1'),
      };
    }, batched);
    expect(seen.a).toMatchObject({ state: { n: 3 }, version: 3 });
    expect(seen.journal).toEqual([0, 1]);
    expect(seen.saga).toMatchObject({ status: 'completed', output: { ok: true }, version: 2 });
    const after = await store.read(async (tx) => ({
      b: await tx.entities.get('E', 'b'),
      saga: await tx.sagas.get('s1'),
    }));
    expect(after.b).toMatchObject({ state: { n: 1 }, version: 1 });
    expect(after.saga).toMatchObject({ status: 'completed', reason: null, output: { ok: true } });
  });

  it('a deferred write whose condition fails fails the transaction, and nothing of it commits', async () => {
    await store.transaction(async (tx) => {
      await tx.entities.put('E', 'a', { n: 1 }, 0);
      await newSaga(tx, 's1');
    });
    const cases: Array<(tx: StoreTransaction) => Promise<unknown>> = [
      (tx) => tx.entities.put('E', 'a', { n: 9 }, 7), // wrong version
      (tx) => tx.entities.put('E', 'a', { n: 9 }, 0), // exists already
      (tx) => tx.sagas.update('s1', { status: 'failed', reason: 'x', at: 2 }, 4),
      (tx) => tx.sagas.appendJournal(step('s1', 3)), // a gap
      (tx) => newSaga(tx, 's1'), // the id is taken
    ];
    for (const write of cases) {
      const attempt = store.transaction(async (tx) => {
        await tx.entities.put('E', 'other', { n: 1 }, 0);
        await write(tx);
      }, batched);
      await expect(attempt).rejects.toBeInstanceOf(BatchedWriteConflictError);
      expect(await store.read((tx) => tx.entities.get('E', 'other'))).toBeNull();
    }
    expect(await store.read((tx) => tx.entities.get('E', 'a'))).toMatchObject({ version: 1 });
  });

  it('journal entries of many sagas in one batch go in only when each is the next of its saga', async () => {
    await store.transaction(async (tx) => {
      for (let index = 0; index < 50; index++) await newSaga(tx, `s${index}`);
    }, batched);
    await store.transaction(async (tx) => {
      for (let index = 0; index < 50; index++) {
        for (let sequence = 0; sequence < 3; sequence++)
          await tx.sagas.appendJournal(step(`s${index}`, sequence));
      }
    }, batched);
    const journals = await store.read(async (tx) =>
      Promise.all([tx.sagas.journal('s0'), tx.sagas.journal('s49')]),
    );
    expect(journals.map((journal) => journal.map((entry) => entry.sequence))).toEqual([
      [0, 1, 2],
      [0, 1, 2],
    ]);
    // A duplicate of an entry that exists fails the batch, as a second runner's append would.
    await expect(
      store.transaction((tx) => tx.sagas.appendJournal(step('s7', 2)), batched),
    ).rejects.toBeInstanceOf(BatchedWriteConflictError);
  });

  it('defers inbox claims and replies as new rows: a second claim in the transaction is refused, one from before fails the batch', async () => {
    const reply = (requestId: string) => ({
      requestId,
      partition: 1,
      ok: true,
      reply: { n: 1 },
      error: null,
      code: null,
      createdAt: 3,
    });
    const firsts = await store.transaction(async (tx) => {
      const claims = [await tx.inbox.markApplied('c', 'm1', 1), await tx.inbox.markApplied('c', 'm1', 1)];
      return [...claims, await tx.replies.put(reply('r1')), await tx.replies.put(reply('r1'))];
    }, batched);
    expect(firsts).toEqual([true, false, true, false]);
    expect(await store.read((tx) => tx.replies.get('r1'))).toMatchObject({ ok: true, reply: { n: 1 } });
    for (const again of [
      (tx: StoreTransaction) => tx.inbox.markApplied('c', 'm1', 2),
      (tx: StoreTransaction) => tx.replies.put(reply('r1')),
    ]) {
      await expect(store.transaction(again, batched)).rejects.toBeInstanceOf(BatchedWriteConflictError);
      expect(await store.transaction(again)).toBe(false);
    }
  });

  it('checks required replies with the batch: a missing one fails the transaction, one put in the batch counts', async () => {
    const reply = (requestId: string) => ({
      requestId,
      partition: 1,
      ok: true,
      reply: 1,
      error: null,
      code: null,
      createdAt: 1,
    });
    await store.transaction((tx) => tx.replies.put(reply('stored')).then(() => undefined));
    await store.transaction(async (tx) => {
      await tx.replies.require('stored');
      await tx.replies.put(reply('new'));
      await tx.replies.require('new');
      await tx.entities.put('E', 'a', { n: 1 }, 0);
    }, batched);
    expect(await store.read((tx) => tx.entities.get('E', 'a'))).toMatchObject({ version: 1 });
    const failed = await store
      .transaction(async (tx) => {
        await tx.entities.put('E', 'b', { n: 1 }, 0);
        await tx.replies.require('stored');
        await tx.replies.require('missing');
      }, batched)
      .catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(BatchedWriteConflictError);
    expect((failed as Error).message).toContain('1 of 2 batched replies required were not stored');
    expect(await store.read((tx) => tx.entities.get('E', 'b'))).toBeNull();
  });

  it('a failed batch fails the transaction even when the code that saw the failure caught it', async () => {
    await store.transaction((tx) => tx.entities.put('E', 'a', { n: 1 }, 0));
    const attempt = store.transaction(async (tx) => {
      await tx.entities.put('E', 'lost', { n: 1 }, 0);
      await tx.entities.put('E', 'a', { n: 2 }, 9); // fails when the batch runs
      // A savepoint runs the batch first; a unit that catches its failure and goes on...
      await store
        .transaction((inner) => inner.entities.put('E', 'inner', { n: 1 }, 0))
        .catch(() => undefined);
      await tx.entities.put('E', 'after', { n: 1 }, 0);
    }, batched);
    // ...still cannot commit what is left: the batch's other writes were never applied.
    await expect(attempt).rejects.toBeInstanceOf(BatchedWriteConflictError);
    const rows = await store.read(async (tx) =>
      Promise.all(['lost', 'inner', 'after'].map((id) => tx.entities.get('E', id))),
    );
    expect(rows).toEqual([null, null, null]);
  });

  it('a savepoint rolls back its own writes only: the batch before it stays', async () => {
    await store.transaction(async (tx) => {
      await tx.entities.put('E', 'kept', { n: 1 }, 0);
      await expect(
        store.transaction(async (inner) => {
          await inner.entities.put('E', 'dropped', { n: 1 }, 0);
          throw new Error('unit failed');
        }),
      ).rejects.toThrow('unit failed');
    }, batched);
    const rows = await store.read(async (tx) => [
      await tx.entities.get('E', 'kept'),
      await tx.entities.get('E', 'dropped'),
    ]);
    expect(rows.map((row) => row?.id ?? null)).toEqual(['kept', null]);
  });

  it('delivers deferred notifications once the transaction commits, none when it rolls back', async () => {
    const received: string[] = [];
    const stop = await store.listen('batch.test', (payload) => received.push(payload));
    await store.transaction(async (tx) => {
      await tx.notify('batch.test', 'one');
      await tx.notify('batch.test', 'two');
    }, batched);
    await expect(
      store.transaction(async (tx) => {
        await tx.notify('batch.test', 'never');
        throw new Error('rolled back');
      }, batched),
    ).rejects.toThrow('rolled back');
    // A marker sent after both: once it arrives, everything before it has been delivered.
    await store.transaction((tx) => tx.notify('batch.test', 'marker'));
    await expect.poll(() => received.at(-1), { timeout: 5000, interval: 5 }).toBe('marker');
    expect(received).toEqual(['one', 'two', 'marker']);
    await stop();
  });
});
