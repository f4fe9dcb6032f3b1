import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AssertionFailedError } from '../../assert.ts';
import { ClosedError, ValidationError } from '../../errors.ts';
import { SchemaMismatchError } from '../schema-mismatch-error.ts';
import { type Migration, SqliteDatabase } from './database.ts';

const directories: string[] = [];
const databases: SqliteDatabase[] = [];

function open(options: { durability?: 'process' | 'fsync'; path?: string } = {}): SqliteDatabase {
  let path = options.path;
  if (path === undefined) {
    const directory = mkdtempSync(join(tmpdir(), 'meridian-db-'));
    directories.push(directory);
    path = join(directory, 'test.db');
  }
  const database = new SqliteDatabase({
    path,
    ...(options.durability ? { durability: options.durability } : {}),
  });
  databases.push(database);
  database.migrate('test', [{ version: 1, name: 'items', sql: 'CREATE TABLE items (name TEXT NOT NULL)' }]);
  return database;
}

afterEach(async () => {
  for (const database of databases.splice(0)) await database.close();
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

const insert = (database: SqliteDatabase, name: string) =>
  database.prepare('INSERT INTO items (name) VALUES (?)').run(name);
const names = (database: SqliteDatabase) =>
  (database.prepare('SELECT name FROM items ORDER BY rowid').all() as { name: string }[]).map(
    (row) => row.name,
  );

describe('SqliteDatabase', () => {
  it('checkpoints the WAL on a background thread, so that it restarts instead of growing', async () => {
    const database = open();
    expect(database.checkpointer).toBeDefined();
    const payload = 'x'.repeat(2000);
    for (let i = 0; i < 300; i++) await database.write(() => insert(database, payload));
    // The worker caught up with every frame written so far (the first answer may be that of a
    // checkpoint the commits asked for while the thread was starting)...
    await database.checkpointer!.checkpointNow();
    const caughtUp = await database.checkpointer!.checkpointNow();
    expect(caughtUp.kind).toBe('checkpointed');
    if (caughtUp.kind !== 'checkpointed') return;
    expect(caughtUp.walFrames).toBeGreaterThan(100);
    expect(caughtUp.backfilled).toBe(caughtUp.walFrames);
    expect(database.checkpointer!.stats.checkpoints).toBeGreaterThanOrEqual(2);
    // ...so the next write starts the WAL over from its beginning.
    await database.write(() => insert(database, payload));
    const restarted = await database.checkpointer!.checkpointNow();
    expect(restarted.kind === 'checkpointed' && restarted.walFrames).toBeLessThan(10);
    expect(await database.read(() => names(database).length)).toBe(301);
  });

  it('resolves close once the checkpointer thread let go of the file, so its directory can be removed', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'meridian-db-'));
    directories.push(directory);
    const database = open({ path: join(directory, 'close.db') });
    for (let i = 0; i < 20; i++) await database.write(() => insert(database, `item ${i}`));
    await database.checkpointer!.checkpointNow();
    // A WAL of some MB that no checkpoint copied yet: the thread, closing last, copies it then.
    await database.write(() => {
      for (let i = 0; i < 2000; i++) insert(database, 'x'.repeat(2000));
    });
    await database.close();
    // Nothing of this process holds a file of the database any more: the checkpointer thread's
    // connection used to close after close() returned, while a caller was already deleting the
    // directory (ENOTEMPTY). (Whether SQLite also removed the WAL on the last close depends on
    // which connection closed last; what matters is that none is left open.)
    const held = readdirSync('/proc/self/fd')
      .map((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`);
        } catch {
          return '';
        }
      })
      .filter((target) => target.startsWith(directory));
    expect(held).toEqual([]);
    expect(readdirSync(directory)).toContain('close.db');
    await database.close();
  });

  it('leaves checkpoints to SQLite inside COMMIT with checkpoints: inline, and refuses other values', () => {
    const directory = mkdtempSync(join(tmpdir(), 'meridian-db-'));
    directories.push(directory);
    const inline = new SqliteDatabase({ path: join(directory, 'inline.db'), checkpoints: 'inline' });
    databases.push(inline);
    expect(inline.checkpointer).toBeUndefined();
    expect(
      () =>
        new SqliteDatabase({
          path: join(directory, 'other.db'),
          checkpoints: 'never' as unknown as 'inline',
        }),
    ).toThrow(ValidationError);
  });

  it('reads snapshots on pooled read-only connections: more reads than connections queue, none sees an open write', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'meridian-db-'));
    directories.push(directory);
    const database = new SqliteDatabase({ path: join(directory, 'test.db'), maxSnapshotReaders: 2 });
    databases.push(database);
    database.migrate('test', [{ version: 1, name: 'items', sql: 'CREATE TABLE items (name TEXT NOT NULL)' }]);
    await database.write(() => insert(database, 'committed'));
    const gate = deferred();
    const held = deferred();
    const writing = database.write(async () => {
      insert(database, 'uncommitted');
      held.resolve();
      await gate.promise;
    });
    await held.promise;
    const release = deferred();
    // Two reads hold both connections; the third waits for one and still answers.
    const reads = [0, 1, 2].map((index) =>
      database.read(async () => {
        expect(database.inRead).toBe(true);
        const seen = names(database);
        if (index < 2) await release.promise;
        // A read inside a read is on the same snapshot.
        return database.read(async () => [...seen, ...names(database)]);
      }),
    );
    release.resolve();
    expect(await Promise.all(reads)).toEqual([0, 1, 2].map(() => ['committed', 'committed']));
    gate.resolve();
    await writing;
    expect(await database.read(() => names(database))).toEqual(['committed', 'uncommitted']);
    // Inside a write, a read sees the write's own changes.
    await database.write(async () => {
      insert(database, 'mine');
      expect(await database.read(() => names(database))).toEqual(['committed', 'uncommitted', 'mine']);
    });
    expect(() => new SqliteDatabase({ path: join(directory, 'x.db'), maxSnapshotReaders: 0 })).toThrow(
      RangeError,
    );
  });

  it('lets work that outlives a read stop using its snapshot connection', async () => {
    const database = open();
    await database.write(() => insert(database, 'first'));
    const later = deferred();
    let leaked: Promise<string[]> | undefined;
    await database.read(() => {
      // Not awaited by the read: runs after it ended, with the read's async context.
      leaked = later.promise.then(() => {
        expect(database.inRead).toBe(false);
        return names(database);
      });
    });
    await database.write(() => insert(database, 'second'));
    later.resolve();
    expect(await leaked).toEqual(['first', 'second']);
  });

  it('refuses writes on a read snapshot, and reads queued when it closes', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'meridian-db-'));
    directories.push(directory);
    const database = new SqliteDatabase({ path: join(directory, 'test.db'), maxSnapshotReaders: 1 });
    database.migrate('test', [{ version: 1, name: 'items', sql: 'CREATE TABLE items (name TEXT NOT NULL)' }]);
    await expect(database.read(() => insert(database, 'x'))).rejects.toThrow(/readonly/);
    const release = deferred();
    const first = database.read(() => release.promise);
    const queued = database.read(() => names(database));
    database.close();
    await expect(queued).rejects.toBeInstanceOf(ClosedError);
    release.resolve();
    await first;
    await expect(database.read(() => 1)).rejects.toBeInstanceOf(ClosedError);
  });

  it('serialises async writes: a write that awaits is never interleaved with another', async () => {
    const database = open();
    const events: string[] = [];
    const gate = deferred();
    const first = database.write(async () => {
      events.push('first:start');
      insert(database, 'first-1');
      await gate.promise;
      insert(database, 'first-2');
      events.push('first:end');
    });
    const second = database.write(async () => {
      events.push('second:start');
      insert(database, 'second-1');
      await Promise.resolve();
      insert(database, 'second-2');
      events.push('second:end');
    });
    // Let every queued microtask and I/O callback run: the second write must still be waiting.
    await new Promise((resolve) => setImmediate(resolve));
    expect(events).toEqual(['first:start']);
    gate.resolve();
    await Promise.all([first, second]);
    expect(events).toEqual(['first:start', 'first:end', 'second:start', 'second:end']);
    expect(names(database)).toEqual(['first-1', 'first-2', 'second-1', 'second-2']);
  });

  it('runs writes in the order they were called', async () => {
    const database = open();
    await Promise.all(
      Array.from({ length: 20 }, (_, n) =>
        database.write(async () => {
          await Promise.resolve();
          insert(database, `w${n}`);
        }),
      ),
    );
    expect(names(database)).toEqual(Array.from({ length: 20 }, (_, n) => `w${n}`));
  });

  it('makes a nested write a savepoint: an inner failure rolls back only the inner work', async () => {
    const database = open();
    await database.write(async () => {
      insert(database, 'outer-1');
      await expect(
        database.write(async () => {
          insert(database, 'inner-async');
          throw new Error('inner failed');
        }),
      ).rejects.toThrow('inner failed');
      expect(() =>
        database.writeSync(() => {
          insert(database, 'inner-sync');
          throw new Error('inner sync failed');
        }),
      ).toThrow('inner sync failed');
      database.writeSync(() => insert(database, 'inner-kept'));
      insert(database, 'outer-2');
    });
    expect(names(database)).toEqual(['outer-1', 'inner-kept', 'outer-2']);
  });

  it('rolls back everything, savepoints included, when the outer write fails', async () => {
    const database = open();
    await expect(
      database.write(async () => {
        insert(database, 'outer');
        await database.write(async () => insert(database, 'inner'));
        throw new Error('outer failed');
      }),
    ).rejects.toThrow('outer failed');
    expect(names(database)).toEqual([]);
    // The writer is usable again afterwards.
    database.writeSync(() => insert(database, 'after'));
    expect(names(database)).toEqual(['after']);
  });

  it('never shows a reader outside the write its uncommitted changes', async () => {
    const database = open();
    database.writeSync(() => insert(database, 'committed'));
    const inserted = deferred();
    const release = deferred();
    const write = database.write(async () => {
      insert(database, 'pending');
      expect(names(database)).toEqual(['committed', 'pending']);
      inserted.resolve();
      await release.promise;
    });
    await inserted.promise;
    expect(database.inWrite).toBe(false);
    expect(names(database)).toEqual(['committed']);
    release.resolve();
    await write;
    expect(names(database)).toEqual(['committed', 'pending']);
  });

  it('fires afterCommit callbacks after the commit only, and drops them on rollback', async () => {
    const database = open();
    const fired: string[] = [];
    await database.write(async () => {
      insert(database, 'a');
      database.afterCommit(() => {
        // Runs after COMMIT: a reader (outside the write) already sees the row.
        fired.push(`committed:${names(database).join(',')}`);
      });
      await database
        .write(async () => {
          database.afterCommit(() => fired.push('from-failed-savepoint'));
          throw new Error('savepoint failed');
        })
        .catch(() => undefined);
      expect(fired).toEqual([]);
    });
    expect(fired).toEqual(['committed:a']);
    await database
      .write(async () => {
        database.afterCommit(() => fired.push('from-rolled-back-write'));
        throw new Error('rolled back');
      })
      .catch(() => undefined);
    database.afterCommit(() => fired.push('outside-a-write'));
    expect(fired).toEqual(['committed:a', 'outside-a-write']);
  });

  it('refuses writeSync while another caller’s write is open', async () => {
    const database = open();
    const release = deferred();
    const write = database.write(async () => {
      await release.promise;
    });
    expect(database.writeIdle).toBe(false);
    expect(() => database.writeSync(() => insert(database, 'x'))).toThrow(AssertionFailedError);
    release.resolve();
    await write;
    expect(database.writeIdle).toBe(true);
    database.writeSync(() => insert(database, 'x'));
    expect(names(database)).toEqual(['x']);
  });

  it('refuses a writeSync callback that returns a promise, rolling it back', () => {
    const database = open();
    expect(() =>
      database.writeSync((() => {
        insert(database, 'x');
        return Promise.resolve();
      }) as () => void),
    ).toThrow(AssertionFailedError);
    expect(names(database)).toEqual([]);
  });

  it('rolls back a write whose COMMIT fails, so the next write can begin', async () => {
    const database = open();
    database.migrate('fk', [
      {
        version: 1,
        name: 'deferred foreign key',
        sql: 'CREATE TABLE parent (id INTEGER PRIMARY KEY); CREATE TABLE child (parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)',
      },
    ]);
    // A deferred foreign key is checked at COMMIT, which then fails and leaves the transaction open.
    await expect(
      database.write(async () => {
        insert(database, 'orphaned');
        database.prepare('INSERT INTO child (parent_id) VALUES (42)').run();
      }),
    ).rejects.toThrow(/FOREIGN KEY/);
    await database.write(async () => insert(database, 'next'));
    expect(names(database)).toEqual(['next']);
  });

  it('fails a write statement outside a write, because the reader is read-only', () => {
    const database = open();
    expect(() => insert(database, 'x')).toThrow(/readonly/);
  });

  it('applies migrations once, in order, and refuses a database with a newer schema', () => {
    const database = open();
    const migrations: Migration[] = [
      { version: 1, name: 'one', sql: 'CREATE TABLE m1 (x INTEGER)' },
      { version: 2, name: 'two', sql: 'CREATE TABLE m2 (x INTEGER)' },
    ];
    database.migrate('component', migrations.slice(0, 1));
    database.migrate('component', migrations);
    database.migrate('component', migrations);
    const applied = database
      .writeSync(() =>
        database
          .prepare(
            "SELECT version, name FROM meridian_migrations WHERE component = 'component' ORDER BY version",
          )
          .all(),
      )
      .map((row) => ({ ...row }));
    expect(applied).toEqual([
      { version: 1, name: 'one' },
      { version: 2, name: 'two' },
    ]);
    let error: unknown;
    try {
      database.migrate('component', migrations.slice(0, 1));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(SchemaMismatchError);
    expect((error as SchemaMismatchError).code).toBe('SCHEMA_MISMATCH');
    expect((error as SchemaMismatchError).details).toEqual({
      component: 'component',
      databaseVersion: 2,
      knownVersion: 1,
    });
    expect(() => database.migrate('gappy', [{ version: 2, name: 'x', sql: 'SELECT 1' }])).toThrow(
      AssertionFailedError,
    );
  });

  it('rolls back a migration that fails, leaving the version where it was', () => {
    const database = open();
    expect(() =>
      database.migrate('broken', [
        { version: 1, name: 'good', sql: 'CREATE TABLE good (x INTEGER)' },
        { version: 2, name: 'bad', sql: 'CREATE TABLE nonsense (' },
      ]),
    ).toThrow();
    const tables = database.prepare("SELECT name FROM sqlite_master WHERE name = 'good'").all();
    expect(tables).toEqual([]);
    database.migrate('broken', [{ version: 1, name: 'good', sql: 'CREATE TABLE good (x INTEGER)' }]);
  });

  it("maps durability to the writer's synchronous setting in WAL mode", () => {
    const pragma = (database: SqliteDatabase, name: string) =>
      database.writeSync(() => Object.values(database.prepare(`PRAGMA ${name}`).get() ?? {})[0]);
    const processDurable = open();
    expect(processDurable.durability).toBe('process');
    expect(pragma(processDurable, 'synchronous')).toBe(1); // NORMAL
    expect(pragma(processDurable, 'journal_mode')).toBe('wal');
    const fsyncDurable = open({ durability: 'fsync' });
    expect(pragma(fsyncDurable, 'synchronous')).toBe(2); // FULL
  });

  it('validates its options, naming the option and the value', () => {
    expect(() => new SqliteDatabase({ path: ':memory:' })).toThrow(ValidationError);
    expect(() => new SqliteDatabase({ path: '' })).toThrow("current value is ''");
    expect(() => new SqliteDatabase({ path: '/tmp/x.db', durability: 'never' as never })).toThrow(
      "'durability' must be 'process' or 'fsync': current value is 'never'",
    );
    expect(() => new SqliteDatabase({ path: '/tmp/x.db', busyTimeoutMs: -1 })).toThrow(
      "'busyTimeoutMs' must be an integer in [0, 600000]: current value is -1",
    );
  });

  it('refuses every call once closed', async () => {
    const database = open();
    database.close();
    database.close();
    expect(database.closed).toBe(true);
    expect(() => database.prepare('SELECT 1')).toThrow(ClosedError);
    expect(() => database.writeSync(() => 1)).toThrow(ClosedError);
    await expect(database.write(async () => 1)).rejects.toThrow(ClosedError);
  });
});

describe('SqliteDatabase hazards', () => {
  it('resolves a committed write even when an afterCommit callback throws, and reports the throw', async () => {
    const db = new SqliteDatabase({ path: join(mkdtempSync(join(tmpdir(), 'meridian-db-')), 'a.db') });
    db.writeSync(() => db.prepare('CREATE TABLE t (v INTEGER)').run());
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      await db.write(() => {
        db.prepare('INSERT INTO t (v) VALUES (1)').run();
        db.afterCommit(() => {
          throw new Error('wake-up bug');
        });
      });
      await new Promise<void>((resolve) => queueMicrotask(resolve));
      await new Promise<void>((resolve) => setImmediate(resolve));
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(db.prepare('SELECT COUNT(*) AS n FROM t').get()).toEqual({ n: 1 });
    expect(uncaught).toHaveLength(1);
    db.close();
  });

  it('refuses concurrent sibling writes inside one write, and allows them one after another', async () => {
    const db = new SqliteDatabase({ path: join(mkdtempSync(join(tmpdir(), 'meridian-db-')), 'b.db') });
    db.writeSync(() => db.prepare('CREATE TABLE t (v INTEGER)').run());
    await expect(
      db.write(async () => {
        await Promise.all([
          db.write(async () => {
            await Promise.resolve();
            db.prepare('INSERT INTO t (v) VALUES (1)').run();
          }),
          db.write(async () => {
            db.prepare('INSERT INTO t (v) VALUES (2)').run();
          }),
        ]);
      }),
    ).rejects.toThrow(/one after another/);
    expect(db.prepare('SELECT COUNT(*) AS n FROM t').get()).toEqual({ n: 0 });
    await db.write(async () => {
      await db.write(() => db.prepare('INSERT INTO t (v) VALUES (1)').run());
      await db.write(async () => {
        await db.write(() => db.prepare('INSERT INTO t (v) VALUES (2)').run());
      });
    });
    expect(db.prepare('SELECT COUNT(*) AS n FROM t').get()).toEqual({ n: 2 });
    db.close();
  });
});

describe('SqliteDatabase after-commit callbacks', () => {
  it('run outside the finished write: not in a write, free to start a write of their own', async () => {
    const db = new SqliteDatabase({ path: join(mkdtempSync(join(tmpdir(), 'meridian-db-')), 'c.db') });
    db.writeSync(() => db.prepare('CREATE TABLE t (v INTEGER)').run());
    const seen: boolean[] = [];
    await db.write(() => {
      db.prepare('INSERT INTO t (v) VALUES (1)').run();
      db.afterCommit(() => {
        seen.push(db.inWrite);
        db.writeSync(() => db.prepare('INSERT INTO t (v) VALUES (2)').run());
      });
    });
    expect(seen).toEqual([false]);
    expect(db.prepare('SELECT COUNT(*) AS n FROM t').get()).toEqual({ n: 2 });
    db.close();
  });
});
