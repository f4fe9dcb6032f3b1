import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import { assert } from '../../assert.ts';
import {
  ClosedError,
  ConflictError,
  isMeridianError,
  RetryableError,
  ValidationError,
} from '../../errors.ts';
import { type Clock, systemClock } from '../../time.ts';
import { requireInteger } from '../limits.ts';
import { type SqlConnection, type SqlNotifier, SqlSession, type SqlValue } from '../sql/connection.ts';
import { postgresDialect, requireSchemaName, type StoreTables, storeTables } from '../sql/dialect.ts';
import { storeComponent, storeMigrations } from '../sql/schema.ts';
import { createStoreTransaction } from '../sql/transaction.ts';
import { WriteBatch } from '../sql/write-batch.ts';
import type { StorageReport, Store, StoreReader, StoreTransaction, TransactionOptions } from '../types.ts';
import { type WriteCheck, WriteHealth, type WriteHealthListener } from '../write-health.ts';
import { mapPostgresError } from './errors.ts';
import { failoverClient } from './failover-client.ts';
import { parsePostgresTarget } from './hosts.ts';
import { PostgresListener, postgresChannel } from './listener.ts';
import { migratePostgres } from './migrate.ts';

export interface PostgresStoreOptions {
  /** e.g. postgres://user@host:5432/database */
  connectionString: string;
  /** The schema every store table lives in, created if missing: one per tenant or test run. @default 'meridian' */
  schema?: string;
  /** Connections in the pool, so at most this many transactions run at once. 1 to 100. @default 10 */
  maxConnections?: number;
  /** How long a transaction waits for a connection (pool exhausted or server slow). 1 to 600000. @default 10000 */
  connectTimeoutMs?: number;
  /** A statement running longer is cancelled (TIMEOUT error). 1 to 3600000. @default 30000 */
  statementTimeoutMs?: number;
  /**
   * The server ends a session whose transaction sits idle (fn awaiting something else) longer
   * than this, releasing its row locks; the transaction then fails with a RetryableError. It also
   * bounds how long a frozen process (SIGSTOP, a long pause) holds locks others wait for — on the
   * cluster shape, the share lock of a partition's fence that the partition's next owner must
   * wait out before its claim. 1 to 3600000. @default 10000
   */
  idleInTransactionTimeoutMs?: number;
  /** @default systemClock */
  clock?: Clock;
}

/** Bytes as node-postgres sends them (a Buffer, as bytea), also inside an array parameter. */
function toDriverValue(value: unknown): unknown {
  return value instanceof Uint8Array && !Buffer.isBuffer(value)
    ? Buffer.from(value.buffer, value.byteOffset, value.byteLength)
    : value;
}

/**
 * COMMIT, watching for PostgreSQL's warning that it stopped waiting for the synchronous standby
 * (the wait was cancelled: statement_timeout, a cancel request). The transaction then committed
 * on the primary only, and a failover may lose it: it is reported as a commit of unknown
 * outcome (RetryableError), never as durable.
 */
async function commitReplicated(client: pg.PoolClient): Promise<pg.QueryResult> {
  let unreplicated: string | undefined;
  const onNotice = (notice: { message?: string }) => {
    if (notice.message?.includes('synchronous replication') === true) unreplicated ??= notice.message;
  };
  client.on('notice', onNotice);
  try {
    const commit = await client.query('COMMIT');
    if (unreplicated !== undefined) {
      throw new RetryableError(
        `PostgreSQL committed the transaction on the primary but stopped waiting for its synchronous standby (${unreplicated.slice(0, 200)}): a failover may lose it, so its outcome is unknown`,
      );
    }
    return commit;
  } finally {
    client.off('notice', onNotice);
  }
}

/**
 * One transaction's pooled connection, remembering whether PostgreSQL has aborted it. The pool's
 * clients are in pg's pipeline mode: a statement is written to the server as soon as it is
 * issued, behind those still running, and answered in order. So a transaction's BEGIN travels
 * with its first statement instead of costing a round trip of its own, and statements a
 * transaction function starts at once (Promise.all) go out together.
 */
class PostgresConnection implements SqlConnection {
  readonly client: pg.PoolClient;
  /** The first statement error: PostgreSQL refuses everything after it until ROLLBACK. */
  failure: unknown;
  /** Set when the connection itself failed (server restart, network, terminated backend). */
  lost: Error | undefined;

  constructor(client: pg.PoolClient) {
    this.client = client;
  }

  async query<Row>(sql: string, params: readonly SqlValue[]): Promise<Row[]> {
    return (await this.#run(sql, params)).rows as Row[];
  }

  async execute(sql: string, params: readonly SqlValue[]): Promise<number> {
    return (await this.#run(sql, params)).rowCount ?? 0;
  }

  async #run(sql: string, params: readonly SqlValue[]): Promise<pg.QueryResult> {
    const values = params.map((value) =>
      Array.isArray(value) ? (value as unknown[]).map(toDriverValue) : toDriverValue(value),
    );
    try {
      return await this.client.query({ text: sql, values });
    } catch (error) {
      this.failure ??= error;
      throw this.mapError(error);
    }
  }

  /** A pg error as a Meridian error; any error on a lost connection is retryable. */
  mapError(error: unknown): unknown {
    const mapped = mapPostgresError(error);
    if (mapped !== error || this.lost === undefined || isMeridianError(error)) return mapped;
    return new RetryableError(`The PostgreSQL connection was lost mid-transaction (${this.lost.message})`, {
      cause: error,
    });
  }
}

/** What a nested transaction needs from the transaction it runs in. */
interface Frame {
  readonly connection: PostgresConnection;
  readonly session: SqlSession;
}

function abortedError(failure: unknown): unknown {
  const mapped = mapPostgresError(failure);
  if (mapped !== failure) return mapped;
  return new ConflictError(
    'The PostgreSQL transaction was aborted by a failed statement that the transaction function caught; it was rolled back',
    { cause: failure },
  );
}

/**
 * The store on PostgreSQL. A transaction is BEGIN ... COMMIT on one pooled connection at READ
 * COMMITTED: every write is conditional (version checks, ON CONFLICT) or row-locked (idempotency
 * takeover), so lost races surface as ConflictError without serialisable isolation's aborts.
 */
export class PostgresStore implements Store {
  readonly dialect = 'postgres' as const;
  readonly schema: string;
  readonly #pool: pg.Pool;
  readonly #writeHealth: WriteHealth;
  readonly #tables: StoreTables;
  /** `durableReads`: a row lock (a WAL record) whose COMMIT waits for the synchronous standby. */
  readonly #durabilityLock: string;
  readonly #clock: Clock;
  readonly #current = new AsyncLocalStorage<Frame>();
  readonly #listener: PostgresListener;
  readonly #notifier: SqlNotifier;
  #closed = false;

  /** Use `openPostgresStore`, which also migrates the schema. */
  constructor(pool: pg.Pool, schema: string, clock: Clock = systemClock) {
    this.#pool = pool;
    this.#writeHealth = new WriteHealth(() => this.#clock.now());
    this.schema = requireSchemaName(schema);
    this.#tables = storeTables(schema);
    this.#durabilityLock = `SELECT 1 FROM "${schema}".meridian_migrations WHERE component = '${storeComponent}' AND version = 1 FOR KEY SHARE`;
    this.#clock = clock;
    this.#listener = new PostgresListener(pool.options, this.schema);
    // PostgreSQL queues a transaction's notifications until COMMIT and drops those of a
    // transaction or subtransaction (savepoint) that rolls back.
    this.#notifier = async (session, channel, payload) => {
      await session.query('SELECT pg_notify($1, $2)', [postgresChannel(this.schema, channel), payload]);
    };
  }

  /**
   * Calls `listener` with each notification committed on `channel` by any node using this schema,
   * over a dedicated connection. Notifications sent while that connection is down are lost: it
   * reconnects (backoff from 100 ms to 5 s) and then calls `listener` with
   * `notificationsMayBeMissed`. Fails (RetryableError) if the first connection cannot be made.
   */
  async listen(channel: string, listener: (payload: string) => void): Promise<() => Promise<void>> {
    if (this.#closed) throw new ClosedError('The PostgreSQL store is closed');
    return this.#listener.listen(channel, listener);
  }

  /**
   * Runs `fn` in one transaction. Called inside another transaction of this store it becomes a
   * savepoint on the same connection: its failure rolls back only its own work.
   */
  async transaction<T>(
    fn: (tx: StoreTransaction) => Promise<T>,
    options: TransactionOptions = {},
  ): Promise<T> {
    if (this.#closed) throw new ClosedError('The PostgreSQL store is closed');
    const parent = this.#current.getStore();
    // Inside a read, a transaction is a transaction of its own: a read has nothing to write to.
    if (parent?.session.open && !parent.session.readOnly) return this.#savepoint(parent, fn);
    return this.#transaction('BEGIN', false, fn, options.batchWrites === true, options.durableReads === true);
  }

  /**
   * Runs `fn` in a REPEATABLE READ, READ ONLY transaction: one snapshot for all its reads, and no
   * row locks. Inside another transaction of this store it reads through that transaction.
   */
  async read<T>(fn: (tx: StoreReader) => Promise<T>): Promise<T> {
    if (this.#closed) throw new ClosedError('The PostgreSQL store is closed');
    const parent = this.#current.getStore();
    if (parent?.session.open) return fn(createStoreTransaction(parent.session));
    return this.#transaction('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY', true, fn, false, false);
  }

  async #transaction<T>(
    begin: string,
    readOnly: boolean,
    fn: (tx: StoreTransaction) => Promise<T>,
    batchWrites: boolean,
    durableReads: boolean,
  ): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw mapPostgresError(error);
    }
    const connection = new PostgresConnection(client);
    // A checked-out client reports a dropped connection as an 'error' event, which would crash
    // the process without a listener; the pool listens only while the client is idle.
    const onError = (error: Error) => {
      connection.lost ??= error;
      connection.failure ??= error;
    };
    client.on('error', onError);
    const session = new SqlSession(connection, postgresDialect, this.#tables, this.#clock, {
      readOnly,
      notifier: this.#notifier,
      batch: batchWrites
        ? new WriteBatch(this.#tables, (channel) => postgresChannel(this.schema, channel))
        : undefined,
    });
    let broken: Error | undefined;
    let committing = false;
    try {
      // Not awaited: pipelined, BEGIN reaches the server with the transaction's first statement
      // (and always before it). Its failure is the connection's, seen at the latest below.
      const begun = connection.execute(begin, []);
      begun.catch(() => undefined);
      let result: T;
      try {
        result = await this.#current.run({ connection, session }, () => fn(createStoreTransaction(session)));
        await session.runBatch();
      } finally {
        session.finish();
      }
      await begun;
      if (connection.failure !== undefined) throw abortedError(connection.failure);
      if (readOnly) {
        // A read has nothing to commit: its COMMIT only ends the snapshot. Not awaited: the
        // connection goes back to the pool at once, and pipelined, whatever its next transaction
        // sends runs after this COMMIT (a failure of it is that transaction's lost connection).
        client.query('COMMIT').catch(() => undefined);
        return result;
      }
      if (durableReads) {
        // Not awaited: a failure aborts the transaction, and COMMIT then answers ROLLBACK.
        connection.execute(this.#durabilityLock, []).catch(() => undefined);
      }
      committing = true;
      const commit = await commitReplicated(client);
      // COMMIT of a transaction PostgreSQL had aborted answers ROLLBACK instead of failing: by a
      // statement still running when COMMIT was sent (the cluster's fence), whose error says why.
      if (commit.command !== 'COMMIT' && connection.failure !== undefined) {
        throw abortedError(connection.failure);
      }
      if (commit.command !== 'COMMIT') {
        throw new ConflictError(`PostgreSQL rolled the transaction back at COMMIT (${commit.command})`);
      }
      this.#writeHealth.succeeded();
      return result;
    } catch (error) {
      if (!readOnly) this.#writeHealth.failed(error);
      try {
        await client.query('ROLLBACK');
      } catch (rollbackError) {
        // The connection is unusable (lost, or mid-protocol): destroy it rather than pool it.
        broken = rollbackError as Error;
      }
      if (committing && connection.lost !== undefined) {
        throw new RetryableError(
          `The PostgreSQL connection was lost during COMMIT: the transaction may or may not have committed (${connection.lost.message})`,
          { cause: error },
        );
      }
      throw connection.mapError(error);
    } finally {
      client.off('error', onError);
      client.release(broken ?? connection.lost);
    }
  }

  /** Each table of the schema with its indexes and TOAST (pg_total_relation_size). */
  async storage(): Promise<StorageReport> {
    if (this.#closed) throw new ClosedError('The PostgreSQL store is closed');
    let result: pg.QueryResult<{ table: string; bytes: string }>;
    try {
      result = await this.#pool.query(
        `SELECT c.relname AS table, pg_total_relation_size(c.oid) AS bytes
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 2 DESC`,
        [this.schema],
      );
    } catch (error) {
      throw mapPostgresError(error);
    }
    const tables = result.rows.map((row) => ({ table: row.table, bytes: Number(row.bytes) }));
    return { tables, totalBytes: tables.reduce((sum, row) => sum + row.bytes, 0), freeBytes: 0 };
  }

  /** Autovacuum gives PostgreSQL's dead rows back for reuse; nothing to do here. */
  async reclaim(maxPages: number): Promise<number> {
    if (!Number.isInteger(maxPages) || maxPages < 1 || maxPages > 1_000_000) {
      throw new RangeError(`'maxPages' must be an integer in [1, 1000000]: current value is ${maxPages}`);
    }
    return 0;
  }

  async checkWrites(): Promise<WriteCheck> {
    if (this.#closed) return { ok: false, detail: 'the PostgreSQL store is closed' };
    try {
      // txid_current() assigns a transaction id: refused on a read-only server or transaction.
      await this.#transaction(
        'BEGIN',
        false,
        async () => {
          await this.#current.getStore()!.connection.execute('SELECT txid_current()', []);
        },
        false,
        false,
      );
      return { ok: true, detail: 'postgres store takes writes' };
    } catch (error) {
      return { ok: false, detail: `writes fail: ${(error as Error).message.slice(0, 300)}` };
    }
  }

  onWriteHealth(listener: WriteHealthListener): () => void {
    return this.#writeHealth.onChange(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#listener.close();
    await this.#pool.end();
  }

  async #savepoint<T>(parent: Frame, fn: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    assert(
      !parent.session.childOpen,
      'nested transactions of one transaction must run one at a time, not concurrently',
    );
    parent.session.childOpen = true;
    const { connection } = parent;
    // The parent's deferred writes are the parent's: they must not roll back with the savepoint.
    await parent.session.runBatch();
    const failureBefore = connection.failure;
    const name = `meridian_savepoint`;
    try {
      // One name suffices: savepoints nest strictly, and ROLLBACK TO / RELEASE act on the
      // innermost savepoint of that name.
      await connection.execute(`SAVEPOINT ${name}`, []);
      const session = new SqlSession(connection, postgresDialect, this.#tables, this.#clock, {
        notifier: this.#notifier,
      });
      try {
        let result: T;
        try {
          result = await this.#current.run({ connection, session }, () =>
            fn(createStoreTransaction(session)),
          );
        } finally {
          session.finish();
        }
        if (connection.failure !== failureBefore) throw abortedError(connection.failure);
        await connection.execute(`RELEASE SAVEPOINT ${name}`, []);
        return result;
      } catch (error) {
        await connection.execute(`ROLLBACK TO SAVEPOINT ${name}`, []);
        await connection.execute(`RELEASE SAVEPOINT ${name}`, []);
        connection.failure = failureBefore;
        throw error;
      }
    } finally {
      parent.session.childOpen = false;
    }
  }
}

/** Connects, creates `schema` if needed, migrates it, and returns the store. */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  if (typeof options?.connectionString !== 'string' || options.connectionString.length === 0) {
    throw new ValidationError(
      `'connectionString' must be a non-empty string: current value is ${String(options?.connectionString)}`,
    );
  }
  const schema = requireSchemaName(options.schema ?? 'meridian');
  const maxConnections = requireInteger('maxConnections', options.maxConnections ?? 10, 1, 100);
  const connectTimeoutMs = requireInteger('connectTimeoutMs', options.connectTimeoutMs ?? 10_000, 1, 600_000);
  const statementTimeoutMs = requireInteger(
    'statementTimeoutMs',
    options.statementTimeoutMs ?? 30_000,
    1,
    3_600_000,
  );
  const idleInTransactionTimeoutMs = requireInteger(
    'idleInTransactionTimeoutMs',
    options.idleInTransactionTimeoutMs ?? 10_000,
    1,
    3_600_000,
  );
  // Several hosts (postgres://u@h1:p1,h2:p2/db): each connection finds the one accepting writes.
  const target = parsePostgresTarget(options.connectionString);
  const Client = target.hosts.length > 1 ? failoverClient(target) : undefined;
  await Client?.locate(connectTimeoutMs);
  const pool = new pg.Pool({
    connectionString: target.url,
    ...(Client === undefined ? {} : { Client }),
    max: maxConnections,
    connectionTimeoutMillis: connectTimeoutMs,
    statement_timeout: statementTimeoutMs,
    idle_in_transaction_session_timeout: idleInTransactionTimeoutMs,
    application_name: 'meridian',
    // Statements are written without waiting for the previous answer (PostgresConnection).
    pipeline: true,
  });
  // An idle pooled connection that the server drops emits 'error' on the pool; pg discards the
  // connection itself, and the next transaction gets a fresh one. Without a listener the error
  // would crash the process.
  pool.on('error', () => {});
  try {
    await migratePostgres(
      pool,
      schema,
      storeComponent,
      storeMigrations(postgresDialect, storeTables(schema)),
    );
  } catch (error) {
    await pool.end();
    throw error;
  }
  return new PostgresStore(pool, schema, options.clock ?? systemClock);
}
