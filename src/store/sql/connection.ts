import { ClosedError, ValidationError } from '../../errors.ts';
import type { Clock } from '../../time.ts';
import type { Dialect, StoreTables } from './dialect.ts';
import type { BatchedTable, WriteBatch } from './write-batch.ts';

/** What the store binds into its SQL. Both drivers take these as they are. */
export type SqlValue = string | number | null | Uint8Array;

/** One database connection inside an open transaction, as the dialect drivers provide it. */
export interface SqlConnection {
  /** The rows a statement returns. SQL uses `$1, $2, ...` parameters. */
  query<Row>(sql: string, params: readonly SqlValue[]): Promise<Row[]>;
  /** Runs a statement; returns how many rows it changed. */
  execute(sql: string, params: readonly SqlValue[]): Promise<number>;
}

/**
 * How a dialect delivers `StoreTransaction.notify` once `session`'s transaction commits (and not
 * if it, or the savepoint that notified, rolls back). `channel` and `payload` are validated.
 */
export type SqlNotifier = (session: SqlSession, channel: string, payload: string) => Promise<void>;

/** What a statement is about, so that a batch's writes of other keys need not run first. */
export interface BatchKey {
  readonly table: BatchedTable;
  readonly key: string;
}

/**
 * One transaction's view of the database, shared by the sub-stores. It refuses every call
 * once the transaction has finished, so a `tx` kept past its transaction can neither write
 * outside it nor read from a pooled connection another transaction now owns.
 */
export class SqlSession implements SqlConnection {
  readonly dialect: Dialect;
  readonly tables: StoreTables;
  readonly clock: Clock;
  readonly #connection: SqlConnection;
  /** A read transaction's session (`Store.read`): statements that change rows are refused. */
  readonly readOnly: boolean;
  readonly #notifier: SqlNotifier | undefined;
  /** A batched transaction's deferred writes (PostgreSQL, `batchWrites`). */
  readonly batch: WriteBatch | undefined;
  #open = true;
  /** True while a nested transaction (savepoint) of this one runs. */
  childOpen = false;

  constructor(
    connection: SqlConnection,
    dialect: Dialect,
    tables: StoreTables,
    clock: Clock,
    options: { readOnly?: boolean; notifier?: SqlNotifier; batch?: WriteBatch } = {},
  ) {
    this.#connection = connection;
    this.readOnly = options.readOnly ?? false;
    this.#notifier = options.notifier;
    this.batch = options.batch;
    this.dialect = dialect;
    this.tables = tables;
    this.clock = clock;
  }

  get open(): boolean {
    return this.#open;
  }

  /**
   * The rows `sql` returns. In a batched transaction the deferred writes run first when `sql`
   * names a table they write, unless `about` says it concerns one key that has none.
   */
  async query<Row>(sql: string, params: readonly SqlValue[], about?: BatchKey): Promise<Row[]> {
    this.#assertOpen();
    if (this.batch?.mustRunBefore(sql, about)) await this.runBatch();
    return this.#connection.query<Row>(sql, params);
  }

  async execute(sql: string, params: readonly SqlValue[], about?: BatchKey): Promise<number> {
    this.assertWritable();
    if (this.batch?.mustRunBefore(sql, about)) await this.runBatch();
    return this.#connection.execute(sql, params);
  }

  /** Runs the deferred writes of a batched transaction now. */
  async runBatch(): Promise<void> {
    await this.batch?.run(this.#connection);
  }

  /** Throws unless this session may write: open, and not a read transaction's. */
  assertWritable(): void {
    this.#assertOpen();
    if (this.readOnly) {
      throw new ValidationError(
        'This store transaction is read-only (Store.read): write in a transaction() instead',
      );
    }
  }

  /** Hands a notification to the dialect, to be delivered once the transaction commits. */
  notify(channel: string, payload: string): Promise<void> {
    this.assertWritable();
    if (this.batch !== undefined) {
      this.batch.notify(channel, payload);
      return Promise.resolve();
    }
    if (this.#notifier === undefined) {
      throw new ValidationError('This store delivers no notifications: notify() is not available here');
    }
    return this.#notifier(this, channel, payload);
  }

  finish(): void {
    this.#open = false;
  }

  #assertOpen(): void {
    if (!this.#open) {
      throw new ClosedError(
        'This store transaction has finished: use the `tx` only inside the function passed to transaction()',
      );
    }
  }
}
