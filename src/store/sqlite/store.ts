import { AsyncLocalStorage } from 'node:async_hooks';
import { assert } from '../../assert.ts';
import { ClosedError, ConflictError, ValidationError } from '../../errors.ts';
import { type Clock, systemClock } from '../../time.ts';
import { requireChannel } from '../limits.ts';
import { type SqlConnection, type SqlNotifier, SqlSession, type SqlValue } from '../sql/connection.ts';
import { sqliteDialect, storeTables } from '../sql/dialect.ts';
import { ListenerRegistry, type NotificationListener, requireListener } from '../sql/listeners.ts';
import { storeComponent, storeMigrations } from '../sql/schema.ts';
import { createStoreTransaction } from '../sql/transaction.ts';
import type { StorageReport, Store, StoreReader, StoreTransaction } from '../types.ts';
import type { WriteCheck, WriteHealthListener } from '../write-health.ts';
import { type Durability, SqliteDatabase } from './database.ts';

export type SqliteStoreOptions =
  | {
      /** Path of the database file; the store opens it and closes it on close(). */
      path: string;
      /** @default 'process' (see Durability) */
      durability?: Durability;
      /** @default systemClock */
      clock?: Clock;
    }
  | {
      /**
       * A database shared with other components (the log): one `transaction` can then cover
       * the store's writes and log appends. The caller keeps ownership: close() leaves it open.
       */
      database: SqliteDatabase;
      /** @default systemClock */
      clock?: Clock;
    };

const tables = storeTables();

/** `$n` parameters (PostgreSQL's, which the shared SQL uses) become SQLite's `?n`. */
const rewritten = new Map<string, string>();
const maxRewrittenStatements = 1000;

function toSqliteSql(sql: string): string {
  let text = rewritten.get(sql);
  if (text === undefined) {
    text = sql.replace(/\$(\d+)/g, '?$1');
    if (rewritten.size >= maxRewrittenStatements) rewritten.clear();
    rewritten.set(sql, text);
  }
  return text;
}

/** SQLITE_BUSY and SQLITE_LOCKED: another process holds the file's write lock for too long. */
function isBusy(error: unknown): boolean {
  const code = (error as { errcode?: unknown } | null)?.errcode;
  return typeof code === 'number' && ((code & 0xff) === 5 || (code & 0xff) === 6);
}

function mapError(error: unknown): unknown {
  if (isBusy(error)) {
    return new ConflictError(`The SQLite database is locked by another process: retry the transaction`, {
      cause: error,
    });
  }
  return error;
}

/** Statements on the database's current connection (`prepare` picks it), while `inTransaction()` holds. */
function sqliteConnection(database: SqliteDatabase, inTransaction: () => boolean): SqlConnection {
  return {
    async query<Row>(sql: string, params: readonly SqlValue[]): Promise<Row[]> {
      assert(inTransaction(), 'store statements must run inside the store transaction');
      try {
        return database.prepare(toSqliteSql(sql)).all(...params) as Row[];
      } catch (error) {
        throw mapError(error);
      }
    },
    async execute(sql: string, params: readonly SqlValue[]): Promise<number> {
      assert(inTransaction(), 'store statements must run inside the store transaction');
      try {
        return Number(database.prepare(toSqliteSql(sql)).run(...params).changes);
      } catch (error) {
        throw mapError(error);
      }
    },
  };
}

/**
 * The store on SQLite: every transaction is one `SqliteDatabase.write`, so it is serialised
 * with every other write to the file (the log's appends included) and a log append called
 * inside it joins it. Reads inside it go to the writer connection and see its own changes.
 */
export class SqliteStore implements Store {
  readonly dialect = 'sqlite' as const;
  readonly database: SqliteDatabase;
  readonly #clock: Clock;
  readonly #ownsDatabase: boolean;
  readonly #connection: SqlConnection;
  readonly #readConnection: SqlConnection;
  readonly #current = new AsyncLocalStorage<SqlSession>();
  readonly #listeners = new ListenerRegistry();
  readonly #notifier: SqlNotifier;
  #closed = false;

  constructor(options: SqliteStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new ValidationError(`SqliteStore needs options with 'path' or 'database'`);
    }
    if ('database' in options) {
      if (!(options.database instanceof SqliteDatabase)) {
        throw new ValidationError(
          `'database' must be a SqliteDatabase: current value is ${typeof options.database}`,
        );
      }
      this.database = options.database;
      this.#ownsDatabase = false;
    } else {
      this.database = new SqliteDatabase({ path: options.path, durability: options.durability ?? 'process' });
      this.#ownsDatabase = true;
    }
    this.#clock = options.clock ?? systemClock;
    try {
      this.database.migrate(storeComponent, storeMigrations(sqliteDialect, tables));
    } catch (error) {
      if (this.#ownsDatabase) this.database.close();
      throw error;
    }
    const database = this.database;
    this.#connection = sqliteConnection(database, () => database.inWrite);
    this.#readConnection = sqliteConnection(database, () => database.inWrite || database.inRead);
    // The database runs after-commit callbacks only once the outermost write commits, and drops
    // those of a transaction or savepoint that rolls back.
    const listeners = this.#listeners;
    this.#notifier = async (_session, channel, payload) => {
      database.afterCommit(() => listeners.emit(channel, payload));
    };
  }

  /**
   * Calls `listener` with each notification this store's transactions commit on `channel`, in
   * commit order, right after the commit. In-process: other processes sharing the file are not
   * heard, and nothing is ever missed, so `listener` never receives `notificationsMayBeMissed`.
   */
  async listen(channel: string, listener: (payload: string) => void): Promise<() => Promise<void>> {
    if (this.#closed) throw new ClosedError('The SQLite store is closed');
    requireChannel('channel', channel);
    const callback: NotificationListener = requireListener(listener);
    // A wrapper of its own, so one function listening twice is removed once per unlisten.
    const entry: NotificationListener = (payload) => callback(payload);
    this.#listeners.add(channel, entry);
    return async () => {
      this.#listeners.remove(channel, entry);
    };
  }

  /**
   * Runs `fn` in one write transaction of the database. Called inside another transaction of
   * this store (or any write of the database), it becomes a savepoint: its failure rolls back
   * only its own work.
   */
  async transaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    if (this.#closed) throw new ClosedError('The SQLite store is closed');
    const parent = this.#current.getStore();
    if (parent === undefined || !parent.open) return this.#run(fn);
    assert(
      !parent.childOpen,
      'nested transactions of one transaction must run one at a time, not concurrently',
    );
    parent.childOpen = true;
    try {
      return await this.#run(fn);
    } finally {
      parent.childOpen = false;
    }
  }

  /**
   * Runs `fn` on one snapshot of committed data, on a read-only connection of the database
   * (`SqliteDatabase.read`): it neither waits for the writer nor holds it up.
   */
  async read<T>(fn: (tx: StoreReader) => Promise<T>): Promise<T> {
    if (this.#closed) throw new ClosedError('The SQLite store is closed');
    const parent = this.#current.getStore();
    if (parent?.open) return fn(createStoreTransaction(parent));
    return this.database.read(async () => {
      const session = new SqlSession(this.#readConnection, sqliteDialect, tables, this.#clock, {
        readOnly: true,
      });
      try {
        return await fn(createStoreTransaction(session));
      } finally {
        session.finish();
      }
    });
  }

  async storage(): Promise<StorageReport> {
    if (this.#closed) throw new ClosedError('The SQLite store is closed');
    return this.database.storage();
  }

  async reclaim(maxPages: number): Promise<number> {
    if (this.#closed) throw new ClosedError('The SQLite store is closed');
    return this.database.reclaim(maxPages);
  }

  async checkWrites(): Promise<WriteCheck> {
    if (this.#closed) return { ok: false, detail: 'the SQLite store is closed' };
    try {
      await this.database.probeWrite(this.#clock.now());
      return { ok: true, detail: 'sqlite store takes writes' };
    } catch (error) {
      return { ok: false, detail: `writes fail: ${(error as Error).message.slice(0, 300)}` };
    }
  }

  onWriteHealth(listener: WriteHealthListener): () => void {
    return this.database.writeHealth.onChange(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    if (this.#ownsDatabase) await this.database.close();
  }

  async #run<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    try {
      return await this.database.write(async () => {
        const session = new SqlSession(this.#connection, sqliteDialect, tables, this.#clock, {
          notifier: this.#notifier,
        });
        try {
          return await this.#current.run(session, () => fn(createStoreTransaction(session)));
        } finally {
          session.finish();
        }
      });
    } catch (error) {
      throw mapError(error);
    }
  }
}

/** Opens (and migrates) a SQLite store. */
export async function openSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  return new SqliteStore(options);
}
