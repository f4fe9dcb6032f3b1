import { AsyncLocalStorage } from 'node:async_hooks';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import { assert } from '../../assert.ts';
import { ClosedError, ValidationError } from '../../errors.ts';
import { type Clock, systemClock } from '../../time.ts';
import { SchemaMismatchError } from '../schema-mismatch-error.ts';
import type { StorageReport } from '../types.ts';
import { StoreIntegrityError, WriteHealth } from '../write-health.ts';
import { BackgroundCheckpointer } from './checkpointer.ts';
import type { StorageThreadAnswer, StorageThreadData } from './storage-thread.ts';
import { threadUrl } from './thread-url.ts';

/**
 * What a committed transaction survives:
 * - `process` (default): WAL with synchronous=NORMAL. A committed transaction survives the
 *   process being killed (SIGKILL, crash). A power loss or OS crash may lose the last
 *   transactions committed before it, but never corrupts the file.
 * - `fsync`: WAL with synchronous=FULL. Every commit is fsynced before it returns, so it also
 *   survives power loss and OS crashes, at the cost of one fsync per transaction.
 */
export type Durability = 'process' | 'fsync';

export interface SqliteDatabaseOptions {
  /** Path of the database file. In-memory databases are not supported: readers use a second connection. */
  path: string;
  /** @default 'process' */
  durability?: Durability;
  /** How long a statement waits for a lock held by another process. @default 5000 */
  busyTimeoutMs?: number;
  /**
   * Read-only connections for snapshot reads (`read`), opened as needed; reads beyond wait for
   * one to free up. 1 to 64. @default 4
   */
  maxSnapshotReaders?: number;
  /**
   * Where WAL checkpoints (copying committed pages into the database file) run:
   * - `background` (default): on a worker thread with its own connection, every 32 commits, so
   *   that no COMMIT on the caller's thread pays for one; SQLite's own checkpoint in COMMIT
   *   stays as a backstop at 10,000 WAL pages (about 40 MB).
   * - `inline`: SQLite's default, inside the COMMIT that takes the WAL past 1,000 pages.
   */
  checkpoints?: 'background' | 'inline';
  /**
   * Checked at open: `quick` runs `PRAGMA quick_check` (reads every page once: seconds for
   * gigabytes) and refuses a damaged file with StoreIntegrityError; `off` skips it.
   * @default 'quick'
   */
  integrityCheck?: 'quick' | 'off';
  /** Timestamps of write-health changes. @default systemClock */
  clock?: Clock;
  /**
   * The most SQLite keeps in its own page cache per connection, in MiB: the writer and the
   * read-only reader each get this much, each snapshot reader a quarter of it (at least 1).
   * The bound on what the process's resident memory holds of the file beyond the operating
   * system's file cache, which serves what a smaller cache misses: 16 + 16 + 4 × 4 = 48 MiB with
   * the defaults (it was 64 + 64 + 4 × 16 = 192 MiB, which a long soak showed filling slowly
   * and lifting the resident memory for minutes). Memory-mapped reads stay off (`mmap_size` 0),
   * so the file's pages are never counted in the process's memory. 1 to 1024. @default 16
   */
  pageCacheMiB?: number;
}

/** Commits between two background checkpoints, and the WAL size (pages) of the inline backstop. */
const checkpointEveryCommits = 32;
const backstopCheckpointPages = 10_000;

/** A read-only connection that `read` holds for one snapshot, with its prepared statements. */
interface SnapshotReader {
  readonly connection: DatabaseSync;
  readonly statements: Map<string, StatementSync>;
}

export interface Migration {
  /** Numbered from 1, dense, never reused or edited once released. */
  version: number;
  name: string;
  sql: string;
}

/** One write transaction, shared by every savepoint inside it. */
interface WriteOwner {
  /** The savepoint (or the transaction itself) that nested work may start from. */
  innermost: WriteContext;
}

/** Where an async call chain stands inside a write: the transaction or one of its savepoints. */
interface WriteContext {
  readonly owner: WriteOwner;
  readonly parent: WriteContext | undefined;
}

/**
 * The SQLite file shared by the log and the store, so that one transaction can cover consuming
 * a record, changing state, appending output records and committing an offset.
 *
 * Two connections: a writer and a read-only reader. Writes are serialised by an async lock:
 * `write(fn)` runs `fn` in a transaction that nothing else on this database can interleave
 * with, even when `fn` awaits. Statements prepared with `prepare` inside a write go to the
 * writer (and see the transaction's own changes); outside one they go to the reader, which in
 * WAL mode sees only committed data. So no caller ever reads another's uncommitted writes.
 *
 * Nested `write`/`writeSync` calls inside a write become savepoints, so an inner failure rolls
 * back only the inner work (per-record isolation inside a group commit).
 */
export class SqliteDatabase {
  readonly path: string;
  readonly durability: Durability;
  readonly #writer: DatabaseSync;
  readonly #reader: DatabaseSync;
  readonly #writerStatements = new Map<string, StatementSync>();
  readonly #readerStatements = new Map<string, StatementSync>();
  readonly #context = new AsyncLocalStorage<WriteContext>();
  /**
   * The snapshot a `read` call chain holds. `open` turns false when the read ends, so work that
   * outlives it (a promise it did not await) stops using a connection another read may now hold.
   */
  readonly #snapshot = new AsyncLocalStorage<{ readonly reader: SnapshotReader; open: boolean }>();
  readonly #idleSnapshotReaders: SnapshotReader[] = [];
  #snapshotReaders = 0;
  readonly #maxSnapshotReaders: number;
  #snapshotQueue: Array<{ resolve(reader: SnapshotReader): void; reject(error: Error): void }> = [];
  readonly #busyTimeoutMs: number;
  readonly #pageCacheMiB: number;
  readonly #checkpointer: BackgroundCheckpointer | undefined;
  #owner: WriteOwner | undefined;
  /** Held from a write's start to its end; handed straight to the next queued write. */
  #locked = false;
  #queue: Array<() => void> = [];
  #afterCommit: Array<() => void> = [];
  #closed = false;
  /** Whether writes succeed: failing on a storage fault (disk full, read-only, I/O), healthy again on the next commit. */
  readonly writeHealth: WriteHealth;

  constructor(options: SqliteDatabaseOptions) {
    if (typeof options.path !== 'string' || options.path.length === 0 || options.path === ':memory:') {
      throw new ValidationError(
        `SqliteDatabase needs 'path' to be a file path: current value is '${String(options.path)}'`,
      );
    }
    const durability = options.durability ?? 'process';
    if (durability !== 'process' && durability !== 'fsync') {
      throw new ValidationError(
        `'durability' must be 'process' or 'fsync': current value is '${String(durability)}'`,
      );
    }
    const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0 || busyTimeoutMs > 600_000) {
      throw new RangeError(
        `'busyTimeoutMs' must be an integer in [0, 600000]: current value is ${busyTimeoutMs}`,
      );
    }
    const maxSnapshotReaders = options.maxSnapshotReaders ?? 4;
    if (!Number.isInteger(maxSnapshotReaders) || maxSnapshotReaders < 1 || maxSnapshotReaders > 64) {
      throw new RangeError(
        `'maxSnapshotReaders' must be an integer in [1, 64]: current value is ${maxSnapshotReaders}`,
      );
    }
    this.#maxSnapshotReaders = maxSnapshotReaders;
    this.#pageCacheMiB = validatedPageCacheMiB(options.pageCacheMiB);
    this.#busyTimeoutMs = busyTimeoutMs;
    this.path = options.path;
    this.durability = durability;
    this.writeHealth = new WriteHealth(() => (options.clock ?? systemClock).now());
    this.#writer = new DatabaseSync(options.path, { timeout: busyTimeoutMs });
    try {
      this.#checkIntegrity(options.integrityCheck ?? 'quick');
    } catch (error) {
      this.#writer.close();
      throw error;
    }
    // Only a file without tables takes it (others need a full VACUUM): pages that retention
    // frees can then be given back to the file system a few at a time (`reclaim`), not only
    // reused. Files made before keep reusing their free pages, which already stops growth.
    this.#writer.exec('PRAGMA auto_vacuum = INCREMENTAL');
    this.#writer.exec('PRAGMA journal_mode = WAL');
    this.#writer.exec(`PRAGMA synchronous = ${durability === 'fsync' ? 'FULL' : 'NORMAL'}`);
    this.#writer.exec('PRAGMA foreign_keys = ON');
    this.#writer.exec('PRAGMA temp_store = MEMORY');
    this.#writer.exec(`PRAGMA cache_size = ${-1024 * this.#pageCacheMiB}`);
    const checkpoints = options.checkpoints ?? 'background';
    if (checkpoints !== 'background' && checkpoints !== 'inline') {
      throw new ValidationError(
        `'checkpoints' must be 'background' or 'inline': current value is '${String(checkpoints)}'`,
      );
    }
    if (checkpoints === 'background') {
      this.#writer.exec(`PRAGMA wal_autocheckpoint = ${backstopCheckpointPages}`);
      this.#checkpointer = new BackgroundCheckpointer(options.path, busyTimeoutMs, checkpointEveryCommits);
    }
    this.#reader = new DatabaseSync(options.path, { timeout: busyTimeoutMs, readOnly: true });
    this.#reader.exec(`PRAGMA cache_size = ${-1024 * this.#pageCacheMiB}`);
  }

  /**
   * Refuses a damaged file before anything writes to it: SQLite reports a file that is not a
   * database, or pages that do not add up, and writing on would spread the damage.
   */
  #checkIntegrity(mode: 'quick' | 'off'): void {
    if (mode !== 'quick' && mode !== 'off') {
      throw new ValidationError(
        `'integrityCheck' must be 'quick' or 'off': current value is '${String(mode)}'`,
      );
    }
    try {
      if (mode === 'off') {
        this.#writer.prepare('SELECT count(*) FROM sqlite_schema').get();
        return;
      }
      const rows = this.#writer.prepare('PRAGMA quick_check(10)').all() as Array<Record<string, unknown>>;
      const findings = rows.map((row) => String(Object.values(row)[0]));
      if (findings.length !== 1 || findings[0] !== 'ok')
        throw new StoreIntegrityError(this.path, findings.join('; '));
    } catch (error) {
      if (error instanceof StoreIntegrityError) throw error;
      const code = (error as { errcode?: number }).errcode;
      if (code !== undefined && ((code & 0xff) === 11 || (code & 0xff) === 26)) {
        throw new StoreIntegrityError(this.path, (error as Error).message);
      }
      throw error;
    }
  }

  /**
   * Writes one small row and commits it: whether the storage takes writes now (a readiness
   * check's question). The outcome updates `writeHealth` like any write's.
   */
  async probeWrite(nowMs: number): Promise<void> {
    await this.write(() => {
      this.#writer.exec(
        'CREATE TABLE IF NOT EXISTS meridian_health (id INTEGER PRIMARY KEY CHECK (id = 1), probed_at INTEGER NOT NULL)',
      );
      this.#writerStatement(
        'INSERT INTO meridian_health (id, probed_at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at',
      ).run(nowMs);
    });
  }

  /** True when the caller runs inside a write of this database. */
  get inWrite(): boolean {
    const context = this.#context.getStore();
    return context !== undefined && context.owner === this.#owner;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The background checkpointer (undefined with `checkpoints: 'inline'`). */
  get checkpointer(): BackgroundCheckpointer | undefined {
    return this.#checkpointer;
  }

  /** True when the caller runs inside a `read` (outside any write). */
  get inRead(): boolean {
    return !this.inWrite && this.#snapshot.getStore()?.open === true;
  }

  /**
   * A cached prepared statement: on the writer inside a write, on the snapshot of a `read`
   * inside one, on the read-only reader elsewhere. A write statement outside `write` fails,
   * because the readers are read-only.
   */
  prepare(sql: string): StatementSync {
    this.#assertOpen();
    const inWrite = this.inWrite;
    if (!inWrite) {
      const snapshot = this.#snapshot.getStore();
      if (snapshot?.open === true) {
        return cached(snapshot.reader.connection, snapshot.reader.statements, sql);
      }
    }
    return inWrite
      ? cached(this.#writer, this.#writerStatements, sql)
      : cached(this.#reader, this.#readerStatements, sql);
  }

  /**
   * Runs `fn` in a write transaction, waiting for earlier writes to finish first. Commits when
   * `fn` settles, rolls back when it throws. Inside another write it becomes a savepoint.
   */
  async write<T>(fn: () => T | Promise<T>): Promise<T> {
    this.#assertOpen();
    const current = this.#context.getStore();
    if (current !== undefined && current.owner === this.#owner) return this.#savepoint(current, fn);
    await this.#acquire();
    const context = this.#begin();
    let committed: Array<() => void>;
    let result: T;
    try {
      this.#writerStatement('BEGIN IMMEDIATE').run();
      result = await this.#context.run(context, async () => {
        try {
          return await fn();
        } catch (error) {
          this.#rollback();
          throw error;
        }
      });
      committed = this.#commit();
    } catch (error) {
      this.writeHealth.failed(error);
      throw error;
    } finally {
      this.#owner = undefined;
      this.#release();
    }
    this.writeHealth.succeeded();
    this.#runAfterCommit(committed);
    return result;
  }

  /**
   * Runs `fn` on one consistent snapshot of the committed data: every statement it prepares
   * reads the database as it was when its first one ran, whatever commits meanwhile, and never
   * waits for (or holds up) a write. Reads go to a read-only connection of their own (see
   * `maxSnapshotReaders`). Inside a write, `fn` simply runs in it and sees its changes; inside
   * another `read`, on that read's snapshot. Keep `fn` short: a snapshot held open keeps the
   * WAL from being checkpointed past it.
   */
  async read<T>(fn: () => T | Promise<T>): Promise<T> {
    this.#assertOpen();
    if (this.inWrite || this.#snapshot.getStore()?.open === true) return fn();
    const reader = await this.#acquireSnapshotReader();
    const snapshot = { reader, open: true };
    try {
      // Prepared once per connection: exec() would parse the text on every read.
      cached(reader.connection, reader.statements, 'BEGIN').run();
      try {
        return await this.#snapshot.run(snapshot, fn);
      } finally {
        snapshot.open = false;
        if (reader.connection.isTransaction) cached(reader.connection, reader.statements, 'COMMIT').run();
      }
    } finally {
      this.#releaseSnapshotReader(reader);
    }
  }

  /**
   * The synchronous form of `write`, for callers with no awaits inside (the log's append).
   * Throws when another caller's async write is open: use `write` there instead.
   */
  writeSync<T>(fn: () => T): T {
    this.#assertOpen();
    const current = this.#context.getStore();
    if (current !== undefined && current.owner === this.#owner) return this.#savepointSync(current, fn);
    assert(
      !this.#locked,
      'writeSync was called while another write is open; call write() so it waits its turn',
    );
    this.#locked = true;
    const context = this.#begin();
    let committed: Array<() => void>;
    let result: T;
    try {
      this.#writerStatement('BEGIN IMMEDIATE').run();
      result = this.#context.run(context, () => {
        try {
          const value = fn();
          assert(!(value instanceof Promise), 'writeSync callbacks must be synchronous; use write()');
          return value;
        } catch (error) {
          this.#rollback();
          throw error;
        }
      });
      committed = this.#commit();
    } catch (error) {
      this.writeHealth.failed(error);
      throw error;
    } finally {
      this.#owner = undefined;
      this.#release();
    }
    this.writeHealth.succeeded();
    this.#runAfterCommit(committed);
    return result;
  }

  /**
   * Bytes per table with its indexes (from dbstat), the file's pages in all, and its free pages.
   * dbstat reads every page (seconds on a file of many GB), so it runs on a worker thread of its
   * own, on a read-only connection: this thread's event loop is not held meanwhile.
   */
  storage(): Promise<StorageReport> {
    this.#assertOpen();
    const data: StorageThreadData = { path: this.path, busyTimeoutMs: this.#busyTimeoutMs };
    const worker = new Worker(threadUrl('storage-thread'), { workerData: data });
    return new Promise<StorageReport>((resolve, reject) => {
      worker.once('message', (answer: StorageThreadAnswer) => {
        if (answer.ok) resolve(answer.report);
        else reject(new Error(`Measuring the storage of '${this.path}' failed: ${answer.message}`));
      });
      worker.once('error', reject);
      worker.once('exit', (code) =>
        reject(new Error(`The storage thread of '${this.path}' exited (${code}) without an answer`)),
      );
    });
  }

  /**
   * Gives up to `maxPages` free pages back to the file system (incremental vacuum), in a write
   * of its own; returns the bytes given back. Does nothing on a file made without
   * auto_vacuum = INCREMENTAL (its free pages are reused instead).
   */
  async reclaim(maxPages: number): Promise<number> {
    if (!Number.isInteger(maxPages) || maxPages < 1 || maxPages > 1_000_000) {
      throw new RangeError(`'maxPages' must be an integer in [1, 1000000]: current value is ${maxPages}`);
    }
    return this.write(() => {
      const pragma = (text: string) => Number(Object.values(this.prepare(text).get() ?? {})[0] ?? 0);
      if (pragma('PRAGMA auto_vacuum') !== 2) return 0;
      const before = pragma('PRAGMA freelist_count');
      if (before === 0) return 0;
      // The pragma frees one page per step of its statement: step it to the end.
      this.prepare(`PRAGMA incremental_vacuum(${maxPages})`).all();
      return (before - pragma('PRAGMA freelist_count')) * pragma('PRAGMA page_size');
    });
  }

  /** True when no write is open or queued, so `writeSync` would run at once. */
  get writeIdle(): boolean {
    return !this.#locked;
  }

  /**
   * Runs `callback` once the outermost write commits (at once outside a write). Dropped if the
   * write (or the savepoint it was registered in) rolls back. Used to wake consumers only for
   * records that really committed.
   */
  afterCommit(callback: () => void): void {
    if (this.inWrite) this.#afterCommit.push(callback);
    else callback();
  }

  /**
   * Applies the numbered migrations of one component (e.g. 'log', 'store') not applied yet,
   * each in its own transaction. Fails if the database has a newer version than the code knows,
   * so an old binary never writes to a newer schema.
   */
  migrate(component: string, migrations: readonly Migration[]): void {
    migrations.forEach((migration, index) => {
      assert(migration.version === index + 1, `migrations of '${component}' must be numbered 1..n densely`);
    });
    this.writeSync(() => {
      this.#writer.exec(
        'CREATE TABLE IF NOT EXISTS meridian_migrations (component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (component, version))',
      );
      const row = this.prepare(
        'SELECT MAX(version) AS version FROM meridian_migrations WHERE component = ?',
      ).get(component) as { version: number | null } | undefined;
      const current = row?.version ?? 0;
      if (current > migrations.length) {
        throw SchemaMismatchError.newerThanCode(`at '${this.path}'`, component, current, migrations.length);
      }
      for (const migration of migrations.slice(current)) {
        this.#writer.exec(migration.sql);
        this.prepare('INSERT INTO meridian_migrations (component, version, name) VALUES (?, ?, ?)').run(
          component,
          migration.version,
          migration.name,
        );
      }
    });
  }

  /**
   * Closes the connections at once; resolves once the checkpointer's thread has closed its own
   * too (await it before deleting the database's files).
   */
  close(): Promise<void> {
    if (this.#closed) return this.#checkpointer?.close() ?? Promise.resolve();
    this.#closed = true;
    const threadClosed = this.#checkpointer?.close() ?? Promise.resolve();
    this.#writerStatements.clear();
    this.#readerStatements.clear();
    for (const reader of this.#idleSnapshotReaders.splice(0)) reader.connection.close();
    for (const waiter of this.#snapshotQueue.splice(0)) {
      waiter.reject(
        new ClosedError(`The SQLite database at '${this.path}' was closed before the read started`),
      );
    }
    this.#reader.close();
    this.#writer.close();
    return threadClosed;
  }

  /** Commits and hands back the after-commit callbacks, to run once the write is fully over. */
  #commit(): Array<() => void> {
    try {
      this.#writerStatement('COMMIT').run();
    } catch (error) {
      // A failed COMMIT (disk full, I/O error) can leave the transaction open; roll it back so
      // the next write does not fail with "cannot start a transaction within a transaction".
      this.#rollback();
      throw error;
    }
    this.#checkpointer?.committed();
    const callbacks = this.#afterCommit;
    this.#afterCommit = [];
    return callbacks;
  }

  /**
   * Runs after-commit callbacks outside the write (the lock released, no write context), so a
   * callback that reads sees committed data through the reader and one that writes starts a
   * transaction of its own.
   */
  #runAfterCommit(callbacks: Array<() => void>): void {
    for (const callback of callbacks) {
      try {
        this.#context.exit(callback);
      } catch (error) {
        // The transaction is committed: failing the write now would invite a retry that applies
        // its effects twice. A throwing callback is a bug, so it surfaces as an uncaught error.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  #begin(): WriteContext {
    const owner = {} as WriteOwner;
    const context: WriteContext = { owner, parent: undefined };
    owner.innermost = context;
    this.#owner = owner;
    return context;
  }

  /**
   * Opens a savepoint below `current`. Savepoints nest like a stack, so nested work must run one
   * after another: two siblings started concurrently (Promise.all of writes inside one write)
   * would release or roll back each other's savepoints, so that is refused.
   */
  #enterSavepoint(current: WriteContext): { child: WriteContext; callbacksBefore: number } {
    assert(
      current.owner.innermost === current,
      'nested writes inside one write must run one after another, not concurrently (no Promise.all of writes)',
    );
    const child: WriteContext = { owner: current.owner, parent: current };
    current.owner.innermost = child;
    // Savepoints nest strictly (enforced above), so one name serves them all: SQLite releases or
    // rolls back the innermost savepoint of that name. A fixed name lets the statements be
    // prepared once instead of parsed on every savepoint.
    this.#writerStatement('SAVEPOINT meridian_savepoint').run();
    return { child, callbacksBefore: this.#afterCommit.length };
  }

  #leaveSavepoint(current: WriteContext, callbacksBefore: number, failed: boolean): void {
    current.owner.innermost = current;
    if (failed) {
      this.#writerStatement('ROLLBACK TO meridian_savepoint').run();
      this.#afterCommit.length = callbacksBefore;
    }
    this.#writerStatement('RELEASE meridian_savepoint').run();
  }

  #rollback(): void {
    this.#afterCommit = [];
    if (this.#writer.isTransaction) this.#writer.exec('ROLLBACK');
  }

  async #savepoint<T>(current: WriteContext, fn: () => T | Promise<T>): Promise<T> {
    const { child, callbacksBefore } = this.#enterSavepoint(current);
    let result: T;
    try {
      result = await this.#context.run(child, fn);
    } catch (error) {
      this.#leaveSavepoint(current, callbacksBefore, true);
      throw error;
    }
    this.#leaveSavepoint(current, callbacksBefore, false);
    return result;
  }

  #savepointSync<T>(current: WriteContext, fn: () => T): T {
    const { child, callbacksBefore } = this.#enterSavepoint(current);
    let result: T;
    try {
      result = this.#context.run(child, fn);
      assert(!(result instanceof Promise), 'writeSync callbacks must be synchronous; use write()');
    } catch (error) {
      this.#leaveSavepoint(current, callbacksBefore, true);
      throw error;
    }
    this.#leaveSavepoint(current, callbacksBefore, false);
    return result;
  }

  #acquire(): Promise<void> {
    if (!this.#locked) {
      this.#locked = true;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#queue.push(resolve));
  }

  #release(): void {
    const next = this.#queue.shift();
    // The lock passes straight to the next waiter, so no newcomer can slip in between.
    if (next === undefined) this.#locked = false;
    else next();
  }

  #writerStatement(sql: string): StatementSync {
    return cached(this.#writer, this.#writerStatements, sql);
  }

  #acquireSnapshotReader(): Promise<SnapshotReader> {
    const idle = this.#idleSnapshotReaders.pop();
    if (idle !== undefined) return Promise.resolve(idle);
    if (this.#snapshotReaders < this.#maxSnapshotReaders) {
      const connection = new DatabaseSync(this.path, { timeout: this.#busyTimeoutMs, readOnly: true });
      connection.exec(`PRAGMA cache_size = ${-256 * Math.max(4, this.#pageCacheMiB)}`);
      this.#snapshotReaders++;
      return Promise.resolve({ connection, statements: new Map() });
    }
    return new Promise((resolve, reject) => this.#snapshotQueue.push({ resolve, reject }));
  }

  #releaseSnapshotReader(reader: SnapshotReader): void {
    if (this.#closed) {
      reader.connection.close();
      return;
    }
    const next = this.#snapshotQueue.shift();
    if (next === undefined) this.#idleSnapshotReaders.push(reader);
    else next.resolve(reader);
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError(`The SQLite database at '${this.path}' is closed`);
  }
}

function validatedPageCacheMiB(value: number | undefined): number {
  const pageCacheMiB = value ?? 16;
  if (!Number.isInteger(pageCacheMiB) || pageCacheMiB < 1 || pageCacheMiB > 1024) {
    throw new RangeError(`'pageCacheMiB' must be an integer in [1, 1024]: current value is ${pageCacheMiB}`);
  }
  return pageCacheMiB;
}

function cached(
  connection: DatabaseSync,
  statements: Map<string, StatementSync>,
  sql: string,
): StatementSync {
  let statement = statements.get(sql);
  if (statement === undefined) {
    statement = connection.prepare(sql);
    statements.set(sql, statement);
  }
  return statement;
}
