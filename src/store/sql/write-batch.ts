import { ConflictError } from '../../errors.ts';
import type { SqlConnection, SqlValue } from './connection.ts';
import type { StoreTables } from './dialect.ts';

/**
 * A write a batched transaction deferred failed when the batch ran: a version or journal
 * sequence that did not match. The writes were reported done to the units that made them, so
 * the transaction must not commit: run it again without batching, where the failing write
 * fails in the unit that made it (the runtime's group commit does exactly that).
 */
export class BatchedWriteConflictError extends ConflictError {
  constructor(message: string, options: ConstructorParameters<typeof ConflictError>[1] = {}) {
    super(message, options);
    this.name = 'BatchedWriteConflictError';
  }
}

/** The tables whose writes a batch defers. */
export type BatchedTable = 'entities' | 'sagas' | 'journal' | 'inbox' | 'replies';

/** Rows of one table that must all be new: one INSERT ... ON CONFLICT DO NOTHING for them all. */
class NewRows {
  readonly #columns: ReadonlyArray<readonly [name: string, type: string]>;
  readonly #rows = new Map<string, SqlValue[]>();

  constructor(columns: ReadonlyArray<readonly [name: string, type: string]>) {
    this.#columns = columns;
  }

  get size(): number {
    return this.#rows.size;
  }

  has(key: string): boolean {
    return this.#rows.has(key);
  }

  /** `values` in the order of the columns. */
  add(key: string, values: SqlValue[]): void {
    this.#rows.set(key, values);
  }

  /** The INSERT of every row as a part of the batch's statement (none when there are no rows). */
  part(statement: BatchStatement, table: string, what: string): void {
    if (this.#rows.size === 0) return;
    const rows = [...this.#rows.values()];
    this.#rows.clear();
    const names = this.#columns.map(([name]) => name).join(', ');
    const arrays = this.#columns
      .map(([, type], index) =>
        statement.array(
          rows.map((row) => row[index]),
          type,
        ),
      )
      .join(', ');
    statement.add(
      `INSERT INTO ${table} (${names}) SELECT * FROM unnest(${arrays}) ON CONFLICT DO NOTHING RETURNING 1`,
      { what, expected: rows.length, reason: 'already existed' },
    );
  }
}

interface PartCheck {
  readonly what: string;
  /** Rows the part must change; a part with no check (notifications) is not counted. */
  readonly expected: number;
  readonly reason: string;
}

/**
 * The deferred writes of a run as one statement: each write a data-modifying CTE (PostgreSQL runs
 * every one of them exactly once, on the same snapshot), and a SELECT of how many rows each
 * changed. One round trip instead of one per kind of write, which was most of a small
 * transaction's. No two parts touch the same row: a second write of a key runs the batch first.
 */
class BatchStatement {
  readonly params: SqlValue[] = [];
  readonly #ctes: string[] = [];
  readonly #checks: Array<PartCheck | undefined> = [];

  /** A parameter holding `values` as an array of `type`. */
  array(values: readonly unknown[], type: string): string {
    this.params.push(values as unknown as SqlValue);
    return `$${this.params.length}::${type}[]`;
  }

  /** A plain CTE the parts can read (not counted). */
  with(name: string, sql: string): void {
    this.#ctes.push(`${name} AS (${sql})`);
  }

  /** A part whose rows (one per row changed, or per notification) are counted. */
  add(sql: string, check?: PartCheck): void {
    this.#ctes.push(`p${this.#checks.length} AS (${sql})`);
    this.#checks.push(check);
  }

  async run(connection: SqlConnection): Promise<void> {
    if (this.#checks.length === 0) return;
    const counts = this.#checks.map((_, index) => `(SELECT count(*) FROM p${index})::integer AS c${index}`);
    const rows = await connection.query<Record<string, number>>(
      `WITH ${this.#ctes.join(',\n')}\nSELECT ${counts.join(', ')}`,
      this.params,
    );
    this.#checks.forEach((check, index) => {
      const changed = Number(rows[0]?.[`c${index}`] ?? 0);
      if (check !== undefined && changed !== check.expected) {
        throw conflict(check.what, check.expected, changed, check.reason);
      }
    });
  }
}

interface EntityWrite {
  type: string;
  id: string;
  /** The state's columns (see entityStateColumns): JSON text, or '' and the packed state. */
  state: string;
  packed: Uint8Array | null;
  at: number;
  expected: number;
}

interface SagaWrite {
  id: string;
  expected: number;
  status: string;
  at: number;
  /** undefined keeps the stored value. */
  output: string | null | undefined;
  reason: string | null | undefined;
}

interface JournalWrite {
  sagaId: string;
  sequence: number;
  kind: string;
  name: string;
  status: string;
  result: string | null;
  error: string | null;
  attempts: number;
  at: number;
}

/** The key of an entity in a batch. */
export function entityKey(type: string, id: string): string {
  return `${type}\u0000${id}`;
}

/**
 * The writes of one PostgreSQL transaction that need no answer until it commits — entity puts,
 * saga inserts and status updates, journal appends and notifications — sent as one multi-row statement per
 * kind instead of one round trip each. A transaction of a thousand units then makes a handful of
 * round trips for them instead of thousands.
 *
 * A deferred write is reported done at once; the batch runs before any statement that reads or
 * writes the same table (keyed reads of other keys go first: they cannot see these rows), before
 * a savepoint and before COMMIT. Every row's condition (the expected version, the next journal
 * sequence) is still checked by the statement; a row that fails it fails the whole batch with a
 * BatchedWriteConflictError, and the transaction rolls back.
 */
export class WriteBatch {
  readonly #tables: StoreTables;
  readonly #channelOf: (channel: string) => string;
  /** New entities (expected version 0) by entity key. */
  readonly #entityInserts = new NewRows([
    ['type', 'text'],
    ['id', 'text'],
    ['state', 'text'],
    ['state_packed', 'bytea'],
    ['version', 'bigint'],
    ['updated_at', 'bigint'],
  ]);
  readonly #entityUpdates = new Map<string, EntityWrite>();
  /** New sagas by id. */
  readonly #sagaInserts = new NewRows([
    ['id', 'text'],
    ['type', 'text'],
    ['status', 'text'],
    ['input', 'text'],
    ['output', 'text'],
    ['reason', 'text'],
    ['created_at', 'bigint'],
    ['updated_at', 'bigint'],
    ['version', 'bigint'],
    ['partition', 'integer'],
  ]);
  readonly #sagaUpdates = new Map<string, SagaWrite>();
  /** Per saga, its deferred entries in sequence order. */
  readonly #journal = new Map<string, JournalWrite[]>();
  #journalRows = 0;
  readonly #notifications: Array<[string, string]> = [];
  /** Request ids whose replies must be stored (`ReplyStore.require`), checked with the writes. */
  readonly #requiredReplies = new Set<string>();
  /** The error of a run that failed: the transaction can no longer commit. */
  #failed: unknown;
  /** Inbox rows by `consumer NUL message id`. */
  readonly inbox = new NewRows([
    ['consumer', 'text'],
    ['message_id', 'text'],
    ['applied_at', 'bigint'],
  ]);
  /** Replies by request id. */
  readonly replies = new NewRows([
    ['request_id', 'text'],
    ['partition', 'integer'],
    ['ok', 'integer'],
    ['reply', 'text'],
    ['error', 'text'],
    ['code', 'text'],
    ['created_at', 'bigint'],
  ]);

  /** `channelOf`: the database's channel for a store channel (PostgreSQL: one per schema). */
  constructor(tables: StoreTables, channelOf: (channel: string) => string) {
    this.#tables = tables;
    this.#channelOf = channelOf;
  }

  get size(): number {
    return (
      this.#entityInserts.size +
      this.#entityUpdates.size +
      this.#sagaInserts.size +
      this.#sagaUpdates.size +
      this.#journalRows +
      this.inbox.size +
      this.replies.size +
      this.#requiredReplies.size +
      this.#notifications.length
    );
  }

  /** Whether a deferred write is pending for `key` of `table` (an entity key, or a saga id). */
  has(table: BatchedTable, key: string): boolean {
    if (table === 'entities') return this.#entityInserts.has(key) || this.#entityUpdates.has(key);
    if (table === 'sagas') return this.#sagaInserts.has(key) || this.#sagaUpdates.has(key);
    if (table === 'inbox') return this.inbox.has(key);
    if (table === 'replies') return this.replies.has(key);
    return this.#journal.has(key);
  }

  /**
   * Whether `sql` must wait for the batch: it names a table with deferred writes and is not a
   * statement about one `key` that has none.
   */
  mustRunBefore(sql: string, key?: { table: BatchedTable; key: string }): boolean {
    if (this.size === 0) return false;
    const names: Array<[BatchedTable, string, boolean]> = [
      ['entities', this.#tables.entities, this.#entityInserts.size + this.#entityUpdates.size > 0],
      ['sagas', this.#tables.sagas, this.#sagaInserts.size + this.#sagaUpdates.size > 0],
      ['journal', this.#tables.sagaJournal, this.#journalRows > 0],
      ['inbox', this.#tables.inbox, this.inbox.size > 0],
      ['replies', this.#tables.replies, this.replies.size > 0],
    ];
    for (const [table, name, pending] of names) {
      if (!pending || !sql.includes(name)) continue;
      if (key === undefined || key.table !== table || this.has(table, key.key)) return true;
    }
    return false;
  }

  putEntity(write: EntityWrite): void {
    const key = entityKey(write.type, write.id);
    if (write.expected !== 0) this.#entityUpdates.set(key, write);
    else this.#entityInserts.add(key, [write.type, write.id, write.state, write.packed, 1, write.at]);
  }

  createSaga(saga: {
    id: string;
    type: string;
    status: string;
    input: string;
    createdAt: number;
    partition: number;
  }): void {
    const { id, type, status, input, createdAt, partition } = saga;
    this.#sagaInserts.add(id, [id, type, status, input, null, null, createdAt, createdAt, 1, partition]);
  }

  updateSaga(write: SagaWrite): void {
    this.#sagaUpdates.set(write.id, write);
  }

  /** Whether `entry` follows the deferred entries of its saga (or it has none). */
  follows(sagaId: string, sequence: number): boolean {
    const pending = this.#journal.get(sagaId);
    return pending === undefined || pending[pending.length - 1]!.sequence + 1 === sequence;
  }

  appendJournal(write: JournalWrite): void {
    const pending = this.#journal.get(write.sagaId);
    if (pending === undefined) this.#journal.set(write.sagaId, [write]);
    else pending.push(write);
    this.#journalRows++;
  }

  /** The transaction fails (BatchedWriteConflictError) unless the reply to `requestId` is stored. */
  requireReply(requestId: string): void {
    this.#requiredReplies.add(requestId);
  }

  notify(channel: string, payload: string): void {
    this.#notifications.push([this.#channelOf(channel), payload]);
  }

  /**
   * Runs every deferred write, and empties the batch. Once a run failed, every later run (the one
   * before COMMIT included) fails with the same error: the writes of that run are gone, so the
   * transaction must not commit even if the caller that saw the failure caught it (a unit
   * catching a savepoint's error, say) and went on.
   */
  async run(connection: SqlConnection): Promise<void> {
    if (this.#failed !== undefined) throw this.#failed;
    if (this.size === 0) return;
    try {
      await this.#runAll(connection);
    } catch (error) {
      this.#failed = error;
      throw error;
    }
  }

  async #runAll(connection: SqlConnection): Promise<void> {
    const statement = new BatchStatement();
    const updates = [...this.#entityUpdates.values()];
    const sagas = [...this.#sagaUpdates.values()];
    const journal = [...this.#journal.values()].flat();
    const notifications = this.#notifications.splice(0);
    this.#entityUpdates.clear();
    this.#sagaUpdates.clear();
    this.#journal.clear();
    this.#journalRows = 0;
    this.#entityInserts.part(statement, this.#tables.entities, 'entity inserts');
    this.#updateEntities(statement, updates);
    this.#sagaInserts.part(statement, this.#tables.sagas, 'saga inserts');
    this.#updateSagas(statement, sagas);
    this.#appendJournal(statement, journal);
    this.inbox.part(statement, this.#tables.inbox, 'inbox entries');
    this.replies.part(statement, this.#tables.replies, 'replies');
    this.#checkReplies(statement);
    if (notifications.length > 0) {
      statement.add(
        `SELECT pg_notify(c, p) FROM unnest(${statement.array(
          notifications.map(([channel]) => channel),
          'text',
        )}, ${statement.array(
          notifications.map(([, payload]) => payload),
          'text',
        )}) AS n(c, p)`,
      );
    }
    await statement.run(connection);
  }

  #checkReplies(statement: BatchStatement): void {
    if (this.#requiredReplies.size === 0) return;
    const ids = [...this.#requiredReplies];
    this.#requiredReplies.clear();
    statement.add(
      `SELECT 1 FROM ${this.#tables.replies} WHERE request_id = ANY(${statement.array(ids, 'text')})`,
      { what: 'replies required', expected: ids.length, reason: 'were not stored' },
    );
  }

  #updateEntities(statement: BatchStatement, rows: EntityWrite[]): void {
    if (rows.length === 0) return;
    const [type, id, state, at, expected, packed] = arrays(statement, rows, [
      ['type', 'text'],
      ['id', 'text'],
      ['state', 'text'],
      ['at', 'bigint'],
      ['expected', 'bigint'],
      ['packed', 'bytea'],
    ]);
    statement.add(
      `UPDATE ${this.#tables.entities} AS e SET state = v.state, state_packed = v.packed,
         version = e.version + 1, updated_at = v.at
       FROM unnest(${type}, ${id}, ${state}, ${at}, ${expected}, ${packed}) AS v(type, id, state, at, expected, packed)
       WHERE e.type = v.type AND e.id = v.id AND e.version = v.expected RETURNING 1`,
      { what: 'entity updates', expected: rows.length, reason: 'had another version' },
    );
  }

  #updateSagas(statement: BatchStatement, rows: SagaWrite[]): void {
    if (rows.length === 0) return;
    // undefined keeps the stored output or reason: a flag per row says which to set.
    const flagged = rows.map((row) => ({
      ...row,
      setOutput: row.output !== undefined,
      output: row.output ?? null,
      setReason: row.reason !== undefined,
      reason: row.reason ?? null,
    }));
    const [id, expected, status, at, setOutput, output, setReason, reason] = arrays(statement, flagged, [
      ['id', 'text'],
      ['expected', 'bigint'],
      ['status', 'text'],
      ['at', 'bigint'],
      ['setOutput', 'boolean'],
      ['output', 'text'],
      ['setReason', 'boolean'],
      ['reason', 'text'],
    ]);
    statement.add(
      `UPDATE ${this.#tables.sagas} AS s SET status = v.status, updated_at = v.at, version = s.version + 1,
         output = CASE WHEN v.set_output THEN v.output ELSE s.output END,
         reason = CASE WHEN v.set_reason THEN v.reason ELSE s.reason END
       FROM unnest(${id}, ${expected}, ${status}, ${at}, ${setOutput}, ${output}, ${setReason}, ${reason})
         AS v(id, expected, status, at, set_output, output, set_reason, reason)
       WHERE s.id = v.id AND s.version = v.expected AND (NOT v.set_output OR s.record_packed IS NULL)
       RETURNING 1`,
      { what: 'saga updates', expected: rows.length, reason: 'had another version' },
    );
  }

  /**
   * The entries go in only where each is the next sequence of its saga (counting the batch's
   * earlier entries of the same saga), as the single append's guard does: the journal stays dense.
   */
  #appendJournal(statement: BatchStatement, rows: JournalWrite[]): void {
    if (rows.length === 0) return;
    const journal = this.#tables.sagaJournal;
    const values = arrays(statement, rows, [
      ['sagaId', 'text'],
      ['sequence', 'integer'],
      ['kind', 'text'],
      ['name', 'text'],
      ['status', 'text'],
      ['result', 'text'],
      ['error', 'text'],
      ['attempts', 'integer'],
      ['at', 'bigint'],
    ]);
    statement.with(
      'journal_rows',
      `SELECT *, row_number() OVER (PARTITION BY saga_id ORDER BY sequence) - 1 AS rank
       FROM unnest(${values.join(', ')}) AS u(saga_id, sequence, kind, name, status, result, error, attempts, at)`,
    );
    statement.add(
      `INSERT INTO ${journal} (saga_id, sequence, kind, name, status, result, error, attempts, at)
       SELECT saga_id, sequence, kind, name, status, result, error, attempts, at FROM journal_rows AS v
       WHERE v.sequence = COALESCE((SELECT MAX(j.sequence) FROM ${journal} AS j WHERE j.saga_id = v.saga_id), -1) + 1 + v.rank
       ON CONFLICT (saga_id, sequence) DO NOTHING RETURNING 1`,
      { what: 'journal entries', expected: rows.length, reason: 'were not the next of their saga' },
    );
  }
}

/** One array parameter per field of `rows`, in order, as `$n::type[]`. */
function arrays<T>(
  statement: BatchStatement,
  rows: readonly T[],
  fields: ReadonlyArray<readonly [keyof T, string]>,
): string[] {
  return fields.map(([field, type]) =>
    statement.array(
      rows.map((row) => row[field]),
      type,
    ),
  );
}

function conflict(
  what: string,
  expected: number,
  changed: number,
  reason: string,
): BatchedWriteConflictError {
  return new BatchedWriteConflictError(
    `${expected - changed} of ${expected} batched ${what} ${reason}: the transaction was rolled back; it runs again unbatched`,
    { details: { what, expected, changed } },
  );
}
