import { AlreadyExistsError, ConflictError, ValidationError } from '../../errors.ts';
import {
  optionalText,
  requireId,
  requireInteger,
  requireLimit,
  requireName,
  requireOneOf,
  requirePartition,
  requireTimestamp,
  storeLimits,
  toJsonText,
  toPartitionsText,
} from '../limits.ts';
import { SchemaMismatchError } from '../schema-mismatch-error.ts';
import {
  type EndedSagasRequest,
  endedSagaStatuses,
  type JournalEntry,
  type JournalEntryKind,
  type Json,
  type PartitionFilter,
  type SagaRecord,
  type SagaStatus,
  type SagaStore,
} from '../types.ts';
import type { SqlSession, SqlValue } from './connection.ts';
import { sqlPerStore } from './dialect.ts';
import { decodeJournal, encodeJournal } from './journal-codec.ts';
import { packText, unpackText } from './packed-text.ts';
import {
  parseJson,
  parseOptionalJson,
  toBytes,
  toInteger,
  toOptionalString,
  toStringColumn,
} from './rows.ts';
import { endedStatusesSql, journalGapMessage, unendedStatusesSql } from './schema.ts';

const sagaStatuses: readonly SagaStatus[] = [
  'running',
  'compensating',
  'completed',
  'compensated',
  'failed',
  'cancelled',
];
const journalKinds: readonly JournalEntryKind[] = ['step', 'compensation', 'sleep', 'event'];
const journalStatuses: readonly JournalEntry['status'][] = ['completed', 'failed'];

interface SagaRow {
  id: unknown;
  type: unknown;
  status: unknown;
  input: unknown;
  output: unknown;
  reason: unknown;
  created_at: unknown;
  updated_at: unknown;
  version: unknown;
  record_packed: unknown;
}

interface JournalRow {
  saga_id: unknown;
  sequence: unknown;
  kind: unknown;
  name: unknown;
  status: unknown;
  result: unknown;
  error: unknown;
  attempts: unknown;
  at: unknown;
}

const sagaColumns = 'id, type, status, input, output, reason, created_at, updated_at, version';
const sagaReadColumns = `${sagaColumns}, record_packed`;

/**
 * An ended saga's input and output as one packed value (src/store/sql/packed-text.ts), written
 * when its journal is folded: `input` is '' and `output` NULL then. JSON text holds no raw NUL,
 * so NUL separates them; an empty output stands for NULL (JSON text is never empty).
 */
function packRecord(id: string, input: string, output: string | null): Uint8Array | null {
  return packText(`${input}\u0000${output ?? ''}`, '', id);
}

function unpackRecord(id: string, packed: Uint8Array): { input: string; output: string | null } {
  const text = unpackText(packed, '', id, `saga '${id}'`);
  const separator = text.indexOf('\u0000');
  if (separator === -1) {
    throw new SchemaMismatchError(
      `The packed input and output of saga '${id}' have no separator; they were written by another version of Meridian or damaged`,
      { details: { sagaId: id } },
    );
  }
  const output = text.slice(separator + 1);
  return { input: text.slice(0, separator), output: output === '' ? null : output };
}
const journalColumns = 'saga_id, sequence, kind, name, status, result, error, attempts, at';

function toSaga(row: SagaRow): SagaRecord {
  const id = toStringColumn(row.id, 'id');
  const packed = toBytes(row.record_packed, 'record_packed');
  const { input, output } =
    packed === null ? { input: row.input, output: row.output } : unpackRecord(id, packed);
  return {
    id,
    type: toStringColumn(row.type, 'type'),
    status: toStringColumn(row.status, 'status') as SagaStatus,
    input: parseJson(input, 'input'),
    output: parseOptionalJson(output, 'output'),
    reason: toOptionalString(row.reason, 'reason'),
    createdAt: toInteger(row.created_at, 'created_at'),
    updatedAt: toInteger(row.updated_at, 'updated_at'),
    version: toInteger(row.version, 'version'),
  };
}

/** The output of `saga` as the column holds it. */
function toOutputText(saga: SagaRecord): string | null {
  return saga.output === null ? null : JSON.stringify(saga.output);
}

function toJournalEntry(row: JournalRow): JournalEntry {
  return {
    sagaId: toStringColumn(row.saga_id, 'saga_id'),
    sequence: toInteger(row.sequence, 'sequence'),
    kind: toStringColumn(row.kind, 'kind') as JournalEntryKind,
    name: toStringColumn(row.name, 'name'),
    status: toStringColumn(row.status, 'status') as JournalEntry['status'],
    result: parseOptionalJson(row.result, 'result'),
    error: toOptionalString(row.error, 'error'),
    attempts: toInteger(row.attempts, 'attempts'),
    at: toInteger(row.at, 'at'),
  };
}

const statements = sqlPerStore(({ sagas, sagaJournal: journal }, dialect) => {
  const update = (set: string) => `UPDATE ${sagas} SET ${set} WHERE id = $1 AND version = $2`;
  const base = 'status = $3, updated_at = $4, version = version + 1';
  return {
    create: `INSERT INTO ${sagas} (${sagaColumns}, partition) VALUES ($1, $2, $3, $4, NULL, NULL, $5, $5, 1, $6) ON CONFLICT (id) DO NOTHING`,
    get: `SELECT ${sagaReadColumns} FROM ${sagas} WHERE id = $1`,
    /**
     * By which of output and reason change: neither, output, reason, both. A new output does not
     * go into a packed record (see packRecord): `update` unpacks it first.
     */
    update: [
      update(base),
      `${update(`${base}, output = $5`)} AND record_packed IS NULL`,
      update(`${base}, reason = $5`),
      `${update(`${base}, output = $5, reason = $6`)} AND record_packed IS NULL`,
    ] as const,
    unpack: `UPDATE ${sagas} SET input = $2, output = $3, record_packed = NULL WHERE id = $1`,
    // Inserted only when it is the next sequence of the saga, so the journal stays dense; DO
    // NOTHING turns a second runner's duplicate into "0 rows" instead of aborting the transaction.
    // PostgreSQL: the guard is in the statement (the CASTs type the parameters, which it cannot
    // infer in a SELECT list). SQLite: a plain insert, and a trigger refuses a gap (migration 4),
    // since SQLite runs an INSERT reading its own table through a temporary table.
    appendJournal:
      dialect.name === 'sqlite'
        ? `INSERT INTO ${journal} (${journalColumns}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (saga_id, sequence) DO NOTHING`
        : `INSERT INTO ${journal} (${journalColumns})
       SELECT CAST($1 AS TEXT), CAST($2 AS INTEGER), CAST($3 AS TEXT), CAST($4 AS TEXT), CAST($5 AS TEXT), CAST($6 AS TEXT), CAST($7 AS TEXT), CAST($8 AS INTEGER), CAST($9 AS BIGINT)
       WHERE COALESCE((SELECT MAX(sequence) FROM ${journal} WHERE saga_id = $1), -1) + 1 = CAST($2 AS INTEGER)
       ON CONFLICT (saga_id, sequence) DO NOTHING`,
    nextSequence: `SELECT COALESCE(MAX(sequence), -1) + 1 AS next FROM ${journal} WHERE saga_id = $1`,
    journal: `SELECT ${journalColumns} FROM ${journal} WHERE saga_id = $1 ORDER BY sequence`,
    // Both read the partial index store_sagas_ended (migration 6): the same condition text.
    endedSagas: `SELECT id FROM ${sagas} WHERE type = $1 AND journal_deleted IN (0, 1, 2) AND updated_at < $2
       AND ${endedStatusesSql} LIMIT $3`,
    endedWithJournal: `SELECT id FROM ${sagas} WHERE type = $1 AND journal_deleted IN (0, 2) AND updated_at < $2
       AND ${endedStatusesSql} LIMIT $3`,
    endedUnfolded: `SELECT id FROM ${sagas} WHERE type = $1 AND journal_deleted = 0 AND updated_at < $2
       AND ${endedStatusesSql} LIMIT $3`,
    journals: `SELECT ${journalColumns} FROM ${journal} WHERE saga_id IN (${dialect.jsonTexts('$1')})
       ORDER BY saga_id, sequence`,
    fold: `UPDATE ${sagas} SET journal = $2, journal_deleted = 2 WHERE id = $1`,
    foldPacked: `UPDATE ${sagas} SET journal = $2, journal_deleted = 2, record_packed = $3, input = '', output = NULL
       WHERE id = $1`,
    // PostgreSQL: a batch's folds in one statement (one round trip instead of one per saga); a
    // NULL record leaves the input and output as they are (short, or packed already).
    foldMany: `UPDATE ${sagas} AS s SET journal = v.journal, journal_deleted = 2,
         record_packed = COALESCE(v.record, s.record_packed),
         input = CASE WHEN v.record IS NULL THEN s.input ELSE '' END,
         output = CASE WHEN v.record IS NULL THEN s.output ELSE NULL END
       FROM unnest(CAST($1 AS text[]), CAST($2 AS bytea[]), CAST($3 AS bytea[])) AS v(id, journal, record)
       WHERE s.id = v.id`,
    records: `SELECT id, input, output FROM ${sagas} WHERE id IN (${dialect.jsonTexts('$1')}) AND record_packed IS NULL`,
    folded: `SELECT journal FROM ${sagas} WHERE id = $1 AND journal_deleted <> 0`,
    deleteJournals: `DELETE FROM ${journal} WHERE saga_id IN (${dialect.jsonTexts('$1')})`,
    deleteSagas: `DELETE FROM ${sagas} WHERE id IN (${dialect.jsonTexts('$1')})`,
    markJournalDeleted: `UPDATE ${sagas} SET journal_deleted = 1, journal = NULL WHERE id IN (${dialect.jsonTexts('$1')})`,
  };
});

/** Saga instances (status, input, output) and each saga's journal of finished steps. */
export class SqlSagaStore implements SagaStore {
  readonly #session: SqlSession;
  readonly #sagas: string;
  readonly #sql: ReturnType<typeof statements>;

  constructor(session: SqlSession) {
    this.#session = session;
    this.#sagas = session.tables.sagas;
    this.#sql = statements(session);
  }

  async create(
    saga: Omit<SagaRecord, 'output' | 'reason' | 'updatedAt' | 'version'> & { readonly partition?: number },
  ): Promise<void> {
    const id = requireId('id', saga.id);
    const type = requireName('type', saga.type);
    const status = requireOneOf('status', saga.status, sagaStatuses);
    const input = toJsonText('input', saga.input);
    const createdAt = requireTimestamp('createdAt', saga.createdAt);
    const partition = requirePartition('partition', saga.partition ?? 0);
    const batch = this.#session.batch;
    if (batch !== undefined) {
      // An id that exists fails the batch; unbatched, the retry then says AlreadyExists here.
      if (batch.has('sagas', id)) await this.#session.runBatch();
      batch.createSaga({ id, type, status, input, createdAt, partition });
      return;
    }
    const changed = await this.#session.execute(
      this.#sql.create,
      [id, type, status, input, createdAt, partition],
      { table: 'sagas', key: id },
    );
    if (changed !== 1) {
      throw new AlreadyExistsError(`Saga '${id}' already exists`, { details: { id } });
    }
  }

  async get(id: string): Promise<SagaRecord | null> {
    requireId('id', id);
    return this.#get(id);
  }

  async update(
    id: string,
    change: { status: SagaStatus; output?: Json | null; reason?: string | null; at: number },
    expectedVersion: number,
  ): Promise<number> {
    requireId('id', id);
    const status = requireOneOf('status', change.status, sagaStatuses);
    const at = requireTimestamp('at', change.at);
    requireInteger('expectedVersion', expectedVersion, 1, Number.MAX_SAFE_INTEGER);
    // An absent output/reason keeps the stored one; null clears it.
    const output =
      change.output === undefined || change.output === null
        ? change.output
        : toJsonText('output', change.output);
    const reason =
      change.reason === undefined
        ? undefined
        : optionalText('reason', change.reason, storeLimits.maxTextLength);
    const batch = this.#session.batch;
    if (batch !== undefined) {
      if (batch.has('sagas', id)) await this.#session.runBatch();
      batch.updateSaga({ id, expected: expectedVersion, status, at, output, reason });
      return expectedVersion + 1;
    }
    const params: SqlValue[] = [id, expectedVersion, status, at];
    if (output !== undefined) params.push(output);
    if (reason !== undefined) params.push(reason);
    const variant = (change.output === undefined ? 0 : 1) + (change.reason === undefined ? 0 : 2);
    let changed = await this.#session.execute(this.#sql.update[variant]!, params);
    const current = changed === 1 ? null : await this.#get(id);
    if (current !== null && current.version === expectedVersion && output !== undefined) {
      // A new output for a saga whose record was packed when its journal was folded: unpack it.
      await this.#session.execute(this.#sql.unpack, [
        id,
        JSON.stringify(current.input),
        toOutputText(current),
      ]);
      changed = await this.#session.execute(this.#sql.update[variant]!, params);
    }
    if (changed === 1) return expectedVersion + 1;
    const actual = current === null ? 'it does not exist' : `its version is ${current.version}`;
    throw new ConflictError(`Cannot update saga '${id}' expecting version ${expectedVersion}: ${actual}`, {
      details: { id, expectedVersion, actualVersion: current?.version ?? 0 },
    });
  }

  async list(
    options: { status?: SagaStatus; type?: string; limit?: number; afterId?: string } & PartitionFilter = {},
  ): Promise<SagaRecord[]> {
    const limit = requireLimit('limit', options.limit, storeLimits.defaultPageSize);
    const afterId = options.afterId === undefined ? '' : requireId('afterId', options.afterId);
    const partitions = toPartitionsText('partitions', options.partitions);
    if (partitions === '[]') return [];
    const params: SqlValue[] = [afterId, limit];
    let where = 'id > $1';
    if (partitions !== null) {
      params.push(partitions);
      where += ` AND partition IN (${this.#session.dialect.jsonIntegers(`$${params.length}`)})`;
    }
    if (options.status !== undefined) {
      const status = requireOneOf('status', options.status, sagaStatuses);
      params.push(status);
      where += ` AND status = $${params.length}`;
      // The literal condition lets both planners use the partial status indexes (migration 7),
      // which they cannot prove from a parameter.
      if (!endedSagaStatuses.has(status)) where += ` AND ${unendedStatusesSql}`;
    }
    if (options.type !== undefined) {
      params.push(requireName('type', options.type));
      where += ` AND type = $${params.length}`;
    }
    const rows = await this.#session.query<SagaRow>(
      `SELECT ${sagaReadColumns} FROM ${this.#sagas} WHERE ${where} ORDER BY id LIMIT $2`,
      params,
    );
    return rows.map(toSaga);
  }

  async appendJournal(entry: JournalEntry): Promise<void> {
    const sagaId = requireId('sagaId', entry.sagaId);
    const sequence = requireInteger('sequence', entry.sequence, 0, storeLimits.maxJournalEntries - 1);
    const kind = requireOneOf('kind', entry.kind, journalKinds);
    const name = requireName('name', entry.name);
    const status = requireOneOf('status', entry.status, journalStatuses);
    const result = entry.result === null ? null : toJsonText('result', entry.result);
    const error = optionalText('error', entry.error, storeLimits.maxTextLength);
    const attempts = requireInteger('attempts', entry.attempts, 0, 1_000_000);
    const at = requireTimestamp('at', entry.at);
    const batch = this.#session.batch;
    if (batch !== undefined) {
      if (!batch.follows(sagaId, sequence)) await this.#session.runBatch();
      const write = { sagaId, sequence, kind, name, status, result, error, attempts, at };
      batch.appendJournal(write);
      return;
    }
    let changed: number;
    try {
      changed = await this.#session.execute(this.#sql.appendJournal, [
        sagaId,
        sequence,
        kind,
        name,
        status,
        result,
        error,
        attempts,
        at,
      ]);
    } catch (failure) {
      // SQLite's trigger refused a gap; the statement was undone, the transaction goes on.
      if (!(failure instanceof Error && failure.message.includes(journalGapMessage))) throw failure;
      changed = 0;
    }
    if (changed === 1) return;
    const rows = await this.#session.query<{ next: unknown }>(this.#sql.nextSequence, [sagaId]);
    const next = toInteger(rows[0]?.next ?? 0, 'next');
    if (next === 0 && (await this.#folded(sagaId)) !== undefined) {
      throw new ConflictError(
        `Saga '${sagaId}' has ended and its journal was folded or deleted: another runner of this saga got there first`,
        { details: { sagaId, sequence } },
      );
    }
    if (sequence < next) {
      throw new ConflictError(
        `Saga '${sagaId}' already has journal entry ${sequence}: another runner of this saga got there first`,
        { details: { sagaId, sequence, nextSequence: next } },
      );
    }
    throw new ValidationError(
      `Journal entries of saga '${sagaId}' must be dense: 'sequence' must be ${next}: current value is ${sequence}`,
      { details: { sagaId, sequence, nextSequence: next } },
    );
  }

  async journal(sagaId: string): Promise<JournalEntry[]> {
    requireId('sagaId', sagaId);
    const rows = await this.#session.query<JournalRow>(this.#sql.journal, [sagaId]);
    if (rows.length > 0) return rows.map(toJournalEntry);
    const folded = (await this.#folded(sagaId))?.journal;
    return folded === undefined || folded === null ? [] : decodeJournal(sagaId, folded);
  }

  /**
   * The saga's folded journal (null when retention deleted it), or undefined when its journal is
   * in rows: the saga has not ended, or a retention pass has not folded it yet.
   */
  async #folded(sagaId: string): Promise<{ journal: Uint8Array | null } | undefined> {
    const rows = await this.#session.query<{ journal: unknown }>(this.#sql.folded, [sagaId]);
    return rows[0] === undefined ? undefined : { journal: toBytes(rows[0].journal, 'journal') };
  }

  async foldEndedJournals(request: EndedSagasRequest): Promise<number> {
    const ids = await this.#ended(this.#sql.endedUnfolded, request);
    if (ids === null) return 0;
    const rows = await this.#session.query<JournalRow>(this.#sql.journals, [ids.text]);
    const bySaga = Map.groupBy(rows.map(toJournalEntry), (entry) => entry.sagaId);
    const records = await this.#session.query<{ id: unknown; input: unknown; output: unknown }>(
      this.#sql.records,
      [ids.text],
    );
    const packedRecords = new Map(
      records.map((row) => {
        const id = toStringColumn(row.id, 'id');
        return [
          id,
          packRecord(id, toStringColumn(row.input, 'input'), toOptionalString(row.output, 'output')),
        ];
      }),
    );
    const sagaIds = JSON.parse(ids.text) as string[];
    const journals = sagaIds.map((sagaId) => encodeJournal(sagaId, bySaga.get(sagaId) ?? []));
    const packed = sagaIds.map((sagaId) => packedRecords.get(sagaId) ?? null);
    let folded = 0;
    if (this.#session.dialect.name === 'postgres') {
      folded = await this.#session.execute(this.#sql.foldMany, [
        sagaIds as unknown as SqlValue,
        journals as unknown as SqlValue,
        packed as unknown as SqlValue,
      ]);
    } else {
      for (const [index, sagaId] of sagaIds.entries()) {
        const record = packed[index] ?? null;
        folded += await this.#session.execute(
          record === null ? this.#sql.fold : this.#sql.foldPacked,
          record === null ? [sagaId, journals[index]!] : [sagaId, journals[index]!, record],
        );
      }
    }
    await this.#session.execute(this.#sql.deleteJournals, [ids.text]);
    return folded;
  }

  async deleteEnded(request: EndedSagasRequest): Promise<number> {
    const ids = await this.#ended(this.#sql.endedSagas, request);
    if (ids === null) return 0;
    await this.#session.execute(this.#sql.deleteJournals, [ids.text]);
    return this.#session.execute(this.#sql.deleteSagas, [ids.text]);
  }

  async deleteEndedJournals(request: EndedSagasRequest): Promise<number> {
    const ids = await this.#ended(this.#sql.endedWithJournal, request);
    if (ids === null) return 0;
    await this.#session.execute(this.#sql.deleteJournals, [ids.text]);
    return this.#session.execute(this.#sql.markJournalDeleted, [ids.text]);
  }

  /** The ids (as a JSON array) of one batch of ended sagas `request` names, or null for none. */
  async #ended(sql: string, request: EndedSagasRequest): Promise<{ text: string } | null> {
    const type = requireName('type', request?.type);
    const endedBefore = requireTimestamp('endedBefore', request.endedBefore);
    const limit = requireLimit('limit', request.limit);
    const rows = await this.#session.query<{ id: unknown }>(sql, [type, endedBefore, limit]);
    if (rows.length === 0) return null;
    return { text: JSON.stringify(rows.map((row) => toStringColumn(row.id, 'id'))) };
  }

  async #get(id: string): Promise<SagaRecord | null> {
    const rows = await this.#session.query<SagaRow>(this.#sql.get, [id], { table: 'sagas', key: id });
    return rows[0] === undefined ? null : toSaga(rows[0]);
  }
}
