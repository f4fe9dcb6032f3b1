import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConflictError } from '../../errors.ts';
import { describeStoreContract } from '../contract.ts';
import { SqliteDatabase } from './database.ts';
import { SqliteStore } from './store.ts';

const directories: string[] = [];

function freshDirectory(): string {
  const directory = mkdtempSync(join(tmpdir(), 'meridian-store-'));
  directories.push(directory);
  return directory;
}

afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

describeStoreContract('sqlite', async (clock) => {
  const store = new SqliteStore({ path: join(freshDirectory(), 'store.db'), clock });
  return {
    store,
    cleanup: () => store.close(),
    // A second transaction queues for the writer lock as soon as it starts.
    untilLockWait: () => new Promise<void>((resolve) => setImmediate(resolve)),
  };
});

describe('SqliteStore on a shared database', () => {
  function openShared() {
    const database = new SqliteDatabase({ path: join(freshDirectory(), 'shared.db') });
    // Stands in for the log: a component with its own migrations in the same file, writing
    // with writeSync as SqliteLog.append does.
    database.migrate('test-log', [
      {
        version: 1,
        name: 'records',
        sql: 'CREATE TABLE test_log (offset_value INTEGER PRIMARY KEY, payload TEXT NOT NULL)',
      },
    ]);
    const append = (payload: string) =>
      database.writeSync(() => database.prepare('INSERT INTO test_log (payload) VALUES (?)').run(payload));
    const logged = () =>
      (
        database.prepare('SELECT payload FROM test_log ORDER BY offset_value').all() as { payload: string }[]
      ).map((row) => row.payload);
    return { database, store: new SqliteStore({ database }), append, logged };
  }

  it('commits store writes and log appends made in one transaction together', async () => {
    const { database, store, append, logged } = openShared();
    await store.transaction(async (tx) => {
      await tx.entities.put('account', 'a', 1, 0);
      append('event-1');
      await tx.inbox.markApplied('consumer', 'record-0', 1);
    });
    expect(logged()).toEqual(['event-1']);
    expect(await store.transaction((tx) => tx.entities.get('account', 'a'))).toMatchObject({ version: 1 });
    await store.close();
    expect(database.closed).toBe(false);
    database.close();
  });

  it('rolls back log appends with the store writes when the transaction throws', async () => {
    const { database, store, append, logged } = openShared();
    await expect(
      store.transaction(async (tx) => {
        await tx.entities.put('account', 'a', 1, 0);
        append('event-1');
        throw new Error('handler failed');
      }),
    ).rejects.toThrow('handler failed');
    expect(logged()).toEqual([]);
    expect(await store.transaction((tx) => tx.entities.get('account', 'a'))).toBeNull();
    database.close();
  });

  it('joins a write the caller opened on the database, as a savepoint of it', async () => {
    const { database, store, append, logged } = openShared();
    await database.write(async () => {
      append('before');
      await store
        .transaction(async (tx) => {
          await tx.entities.put('account', 'a', 1, 0);
          throw new Error('inner');
        })
        .catch(() => undefined);
      await store.transaction((tx) => tx.entities.put('account', 'b', 1, 0));
      append('after');
    });
    expect(logged()).toEqual(['before', 'after']);
    const ids = (await store.transaction((tx) => tx.entities.list('account'))).map((record) => record.id);
    expect(ids).toEqual(['b']);
    database.close();
  });

  it('reopens a file written before and keeps its data and schema version', async () => {
    const path = join(freshDirectory(), 'reopen.db');
    const first = new SqliteStore({ path });
    await first.transaction((tx) => tx.entities.put('account', 'a', { balance: 5 }, 0));
    await first.close();
    const second = new SqliteStore({ path });
    expect(await second.transaction((tx) => tx.entities.get('account', 'a'))).toMatchObject({
      state: { balance: 5 },
    });
    await second.close();
  });

  it('reports the file locked by another connection beyond its busy timeout as ConflictError', async () => {
    const path = join(freshDirectory(), 'busy.db');
    // Two SqliteDatabase objects on one file behave like two processes sharing it.
    const holder = new SqliteDatabase({ path });
    const holderStore = new SqliteStore({ database: holder });
    const impatient = new SqliteDatabase({ path, busyTimeoutMs: 0 });
    const store = new SqliteStore({ database: impatient });
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let started = () => {};
    const holding = new Promise<void>((resolve) => {
      started = resolve;
    });
    const holderWrite = holderStore.transaction(async (tx) => {
      await tx.entities.put('account', 'held', 1, 0);
      started();
      await held;
    });
    await holding;
    await expect(store.transaction((tx) => tx.entities.put('account', 'a', 1, 0))).rejects.toBeInstanceOf(
      ConflictError,
    );
    release();
    await holderWrite;
    await store.transaction((tx) => tx.entities.put('account', 'a', 1, 0));
    expect((await store.transaction((tx) => tx.entities.list('account'))).map((record) => record.id)).toEqual(
      ['a', 'held'],
    );
    impatient.close();
    holder.close();
  });
});
