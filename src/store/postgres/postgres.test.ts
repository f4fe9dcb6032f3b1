import { afterAll, describe, expect, it } from 'vitest';
import { ConflictError, RetryableError, ValidationError } from '../../errors.ts';
import { SchemaMismatchError } from '../schema-mismatch-error.ts';
import { notificationsMayBeMissed } from '../types.ts';
import { mapPostgresError } from './errors.ts';
import { postgresChannel } from './listener.ts';
import { openPostgresStore } from './store.ts';
import { testSchemas } from './test-schema.ts';

// Needs a PostgreSQL server: set MERIDIAN_TEST_PG_URL (e.g. postgres://postgres@127.0.0.1:5432/test).
// Without it this file is skipped, so `npm test` passes on a machine without PostgreSQL.
const url = process.env.MERIDIAN_TEST_PG_URL ?? '';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

describe('mapPostgresError', () => {
  it('turns serialization failures, deadlocks and unique violations into ConflictError and leaves others alone', () => {
    for (const code of ['40001', '40P01', '23505', '55P03']) {
      const original = Object.assign(new Error('lost'), { code });
      const mapped = mapPostgresError(original);
      expect(mapped).toBeInstanceOf(ConflictError);
      expect((mapped as ConflictError).cause).toBe(original);
    }
    for (const code of ['08006', '57P01']) {
      expect(mapPostgresError(Object.assign(new Error('gone'), { code }))).toBeInstanceOf(RetryableError);
    }
    const other = Object.assign(new Error('syntax'), { code: '42601' });
    expect(mapPostgresError(other)).toBe(other);
    expect(
      (mapPostgresError(Object.assign(new Error('slow'), { code: '57014' })) as ConflictError).code,
    ).toBe('TIMEOUT');
  });

  it('turns the errors of a connection that is gone (no SQLSTATE) into RetryableError', () => {
    for (const error of [
      Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }),
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5442'), { code: 'ECONNREFUSED' }),
      new Error('Connection terminated unexpectedly'),
      new Error('Client has encountered a connection error and is not queryable'),
    ]) {
      const mapped = mapPostgresError(error);
      expect(mapped).toBeInstanceOf(RetryableError);
      expect((mapped as RetryableError).cause).toBe(error);
    }
    const plain = new Error('a bug');
    expect(mapPostgresError(plain)).toBe(plain);
  });
});

describe.skipIf(!url)('PostgresStore migrations and transactions', () => {
  const schemas = testSchemas(url, 'pg');
  const opened: string[] = [];
  const schema = () => {
    const name = schemas.next();
    opened.push(name);
    return name;
  };
  afterAll(async () => {
    for (const name of opened) await schemas.drop(name);
    await schemas.end();
  });

  it('creates every table in its own schema and records the migration once, even when two nodes start together', async () => {
    const name = schema();
    const [first, second] = await Promise.all([
      openPostgresStore({ connectionString: url, schema: name, maxConnections: 2 }),
      openPostgresStore({ connectionString: url, schema: name, maxConnections: 2 }),
    ]);
    await first.close();
    await second.close();
    const third = await openPostgresStore({ connectionString: url, schema: name, maxConnections: 1 });
    await third.close();
    const migrations = await schemas.query(
      `SELECT component, version FROM "${name}".meridian_migrations ORDER BY version`,
    );
    expect(migrations.rows).toEqual([
      { component: 'store', version: 1 },
      { component: 'store', version: 2 },
      { component: 'store', version: 3 },
      { component: 'store', version: 4 },
      { component: 'store', version: 5 },
      { component: 'store', version: 6 },
      { component: 'store', version: 7 },
      { component: 'store', version: 8 },
      { component: 'store', version: 9 },
      { component: 'store', version: 10 },
    ]);
    const tables = await schemas.query(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
      [name],
    );
    expect(tables.rows.map((row: { table_name: string }) => row.table_name)).toEqual([
      'meridian_migrations',
      'store_entities',
      'store_idempotency_keys',
      'store_inbox',
      'store_outbox',
      'store_partitions',
      'store_replies',
      'store_saga_journal',
      'store_sagas',
      'store_timers',
    ]);
  });

  it('refuses a schema migrated by a newer Meridian with a SchemaMismatchError', async () => {
    const name = schema();
    const store = await openPostgresStore({ connectionString: url, schema: name, maxConnections: 1 });
    await store.close();
    await schemas.query(
      `INSERT INTO "${name}".meridian_migrations (component, version, name) VALUES ('store', 11, 'from the future')`,
    );
    const error = await openPostgresStore({ connectionString: url, schema: name }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(SchemaMismatchError);
    expect((error as SchemaMismatchError).code).toBe('SCHEMA_MISMATCH');
    expect((error as SchemaMismatchError).message).toContain(
      `has schema version 11 of 'store', newer than this Meridian knows (10)`,
    );
    expect((error as SchemaMismatchError).details).toEqual({
      component: 'store',
      databaseVersion: 11,
      knownVersion: 10,
    });
  });

  it('validates its options, naming the option and the value', async () => {
    const open = (options: Record<string, unknown>) =>
      openPostgresStore({ connectionString: url, ...options }).catch((caught: unknown) => caught);
    expect(((await open({ schema: 'Bad-Name' })) as Error).message).toContain("'schema' must match");
    expect(((await open({ schema: 'ok', maxConnections: 0 })) as Error).message).toBe(
      "'maxConnections' must be >= 1: current value is 0",
    );
    expect(((await open({ schema: 'ok', statementTimeoutMs: 1.5 })) as Error).message).toBe(
      "'statementTimeoutMs' must be an integer: current value is 1.5",
    );
    expect(await open({ connectionString: '' })).toBeInstanceOf(ValidationError);
  });

  it('surfaces a deadlock as ConflictError, and rolls back a transaction that caught it instead of committing', async () => {
    const name = schema();
    const store = await openPostgresStore({ connectionString: url, schema: name, maxConnections: 4 });
    await store.transaction(async (tx) => {
      await tx.entities.put('account', 'a', 0, 0);
      await tx.entities.put('account', 'b', 0, 0);
    });
    const aLocked = deferred();
    const bLocked = deferred();
    // Each transaction locks one row, waits for the other to lock the second, then wants the
    // other's row: PostgreSQL breaks the cycle by failing one of them with 40P01.
    const first = store.transaction(async (tx) => {
      await tx.entities.put('account', 'a', 1, 1);
      aLocked.resolve();
      await bLocked.promise;
      // Whichever transaction PostgreSQL picks as the victim swallows the error and goes on:
      // the store must still not commit it.
      await tx.entities.put('account', 'b', 1, 1).catch((error: unknown) => {
        expect(error).toBeInstanceOf(ConflictError);
      });
      return 'first';
    });
    const second = store.transaction(async (tx) => {
      await tx.entities.put('account', 'b', 2, 1);
      bLocked.resolve();
      await aLocked.promise;
      await tx.entities.put('account', 'a', 2, 1).catch((error: unknown) => {
        expect(error).toBeInstanceOf(ConflictError);
      });
      return 'second';
    });
    const results = await Promise.allSettled([first, second]);
    const fulfilled = results.filter((result) => result.status === 'fulfilled');
    const rejected = results.filter((result) => result.status === 'rejected');
    expect(fulfilled).toHaveLength(1);
    expect(rejected).toHaveLength(1);
    expect((rejected[0] as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError);
    const winner = (fulfilled[0] as PromiseFulfilledResult<string>).value;
    const value = winner === 'first' ? 1 : 2;
    const accounts = await store.transaction((tx) => tx.entities.list('account'));
    expect(accounts.map((record) => [record.id, record.state, record.version])).toEqual([
      ['a', value, 2],
      ['b', value, 2],
    ]);
    await store.close();
  });

  it('fails a transaction whose connection is killed with a RetryableError, commits nothing, and keeps working', async () => {
    const name = schema();
    const store = await openPostgresStore({ connectionString: url, schema: name, maxConnections: 2 });
    const error = await store
      .transaction(async (tx) => {
        await tx.entities.put('account', 'a', 1, 0);
        // The last statement names this test's own schema, so no other test's session is hit.
        const killed = await schemas.query(
          `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE state = 'idle in transaction' AND query LIKE $1`,
          [`%"${name}"%`],
        );
        expect(killed.rows).toEqual([{ killed: true }]);
        await tx.entities.put('account', 'b', 1, 0);
      })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RetryableError);
    expect(await store.transaction((tx) => tx.entities.list('account'))).toEqual([]);
    await store.transaction((tx) => tx.entities.put('account', 'a', 1, 0));
    await store.close();
  });

  it('reports a COMMIT that stopped waiting for the synchronous standby as of unknown outcome, not as durable', async () => {
    const name = schema();
    const store = await openPostgresStore({ connectionString: url, schema: name, maxConnections: 2 });
    // PostgreSQL's own warning when a commit's wait for the synchronous standby is cancelled
    // (statement_timeout, a cancel request), raised here by a deferred trigger: it arrives
    // during COMMIT, as the server's does.
    await schemas.query(`CREATE FUNCTION "${name}".warn() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE WARNING 'canceling wait for synchronous replication due to user request';
        RETURN NULL;
      END $$`);
    await schemas.query(`CREATE CONSTRAINT TRIGGER warn AFTER INSERT ON "${name}".store_entities
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "${name}".warn()`);
    const error = await store
      .transaction((tx) => tx.entities.put('account', 'a', 1, 0))
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RetryableError);
    expect((error as Error).message).toContain('stopped waiting for its synchronous standby');
    // Its outcome is unknown to the caller; here the primary kept it. The store goes on (an
    // update does not fire the trigger).
    expect(await store.read((tx) => tx.entities.get('account', 'a'))).toMatchObject({ version: 1 });
    expect(await store.transaction((tx) => tx.entities.put('account', 'a', 2, 1))).toBe(2);
    await store.close();
  });

  it('commits a transaction with durableReads as a write: it row-locks, so its COMMIT waits for a synchronous standby', async () => {
    const name = schema();
    const store = await openPostgresStore({ connectionString: url, schema: name, maxConnections: 2 });
    // A row lock leaves the locker's transaction id in the row's xmax (and a WAL record): the
    // transaction has an id and wrote WAL, which is what makes PostgreSQL's COMMIT wait for
    // the synchronous standby.
    const lockedBy = async () =>
      (
        await schemas.query(
          `SELECT xmax::text AS xmax FROM "${name}".meridian_migrations WHERE component = 'store' AND version = 1`,
        )
      ).rows[0]?.xmax as string;
    const before = await lockedBy();
    await store.transaction((tx) => tx.outbox.pending(1));
    expect(await lockedBy()).toBe(before);
    await store.transaction((tx) => tx.outbox.pending(1), { durableReads: true });
    const after = await lockedBy();
    expect(after).not.toBe(before);
    expect(Number(after)).toBeGreaterThan(0);
    await store.close();
  });

  it('ends a transaction left idle longer than idleInTransactionTimeoutMs with a RetryableError', async () => {
    const name = schema();
    const store = await openPostgresStore({
      connectionString: url,
      schema: name,
      maxConnections: 2,
      idleInTransactionTimeoutMs: 100,
    });
    const error = await store
      .transaction(async (tx) => {
        await tx.entities.put('account', 'a', 1, 0);
        // A handler stuck on something else for longer than the limit (real time: the server's timer).
        await new Promise((resolve) => setTimeout(resolve, 400));
        await tx.entities.put('account', 'b', 1, 0);
      })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RetryableError);
    // Nothing of it committed, and the pool hands out a working connection again.
    await store.transaction((tx) => tx.entities.put('account', 'a', 2, 0));
    expect((await store.transaction((tx) => tx.entities.get('account', 'a')))?.state).toBe(2);
    await store.close();
  });

  it('reconnects a listener whose connection was killed, tells it notifications may be missed, and delivers again', async () => {
    const name = schema();
    const store = await openPostgresStore({ connectionString: url, schema: name, maxConnections: 2 });
    const heard: string[] = [];
    let wake = () => {};
    const until = async (count: number) => {
      const deadline = Date.now() + 15_000;
      while (heard.length < count) {
        if (Date.now() > deadline) throw new Error(`heard ${JSON.stringify(heard)}, expected ${count}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 100);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      return heard;
    };
    const stop = await store.listen('replies', (payload) => {
      heard.push(payload);
      wake();
    });
    await store.transaction((tx) => tx.notify('replies', 'before'));
    expect(await until(1)).toEqual(['before']);
    const killed = await schemas.query(
      `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = 'meridian-listen' AND query = $1`,
      [`LISTEN ${postgresChannel(name, 'replies')}`],
    );
    expect(killed.rows).toEqual([{ killed: true }]);
    expect(await until(2)).toEqual(['before', notificationsMayBeMissed]);
    await store.transaction((tx) => tx.notify('replies', 'after'));
    expect(await until(3)).toEqual(['before', notificationsMayBeMissed, 'after']);
    await stop();
    await store.close();
  });
});
