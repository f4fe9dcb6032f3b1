import { ConflictError, ValidationError } from '../../errors.ts';
import {
  requireId,
  requireLimit,
  requireName,
  requireTimestamp,
  storeLimits,
  toJsonText,
} from '../limits.ts';
import type { EntityRecord, EntityStore, IdleEntitiesRequest, Json } from '../types.ts';
import type { SqlSession } from './connection.ts';
import { sqlPerStore } from './dialect.ts';
import { packText, unpackText } from './packed-text.ts';
import { parseJson, toBytes, toInteger, toStringColumn } from './rows.ts';
import { entityKey } from './write-batch.ts';

interface EntityRow {
  type: unknown;
  id: unknown;
  state: unknown;
  state_packed: unknown;
  version: unknown;
  updated_at: unknown;
}

/**
 * The columns an entity's state is stored in: packed (src/store/sql/packed-text.ts) when that is
 * smaller, with `state` '' then; as JSON text otherwise.
 */
export function entityStateColumns(type: string, id: string, text: string): [string, Uint8Array | null] {
  const packed = packText(text, type, id);
  return packed === null ? [text, null] : ['', packed];
}

function toEntity(row: EntityRow): EntityRecord {
  const type = toStringColumn(row.type, 'type');
  const id = toStringColumn(row.id, 'id');
  const packed = toBytes(row.state_packed, 'state_packed');
  const text = packed === null ? row.state : unpackText(packed, type, id, `entity '${type}/${id}'`);
  return {
    type,
    id,
    state: parseJson(text, 'state'),
    version: toInteger(row.version, 'version'),
    updatedAt: toInteger(row.updated_at, 'updated_at'),
  };
}

const columns = 'type, id, state, state_packed, version, updated_at';

const statements = sqlPerStore(({ entities: table }, dialect) => ({
  insert: `INSERT INTO ${table} (${columns}) VALUES ($1, $2, $3, $5, 1, $4) ON CONFLICT (type, id) DO NOTHING`,
  update: `UPDATE ${table} SET state = $3, state_packed = $6, version = version + 1, updated_at = $4
           WHERE type = $1 AND id = $2 AND version = $5`,
  delete: `DELETE FROM ${table} WHERE type = $1 AND id = $2 AND version = $3`,
  list: `SELECT ${columns} FROM ${table} WHERE type = $1 AND id > $2 ORDER BY id LIMIT $3`,
  get: `SELECT ${columns} FROM ${table} WHERE type = $1 AND id = $2`,
  getMany: `SELECT ${columns} FROM ${table} WHERE type = $1 AND id IN (${dialect.jsonTexts('$2')})`,
  // Retention's scan: the last id of the next `limit` ids, then the idle ones up to it (by key).
  scanEnd: `SELECT id FROM (SELECT id FROM ${table} WHERE type = $1 AND id > $2 ORDER BY id LIMIT $3) AS scanned
       ORDER BY id DESC LIMIT 1`,
  deleteIdle: `DELETE FROM ${table} WHERE type = $1 AND id > $2 AND id <= $3 AND updated_at < $4`,
}));

/** Entity state with a version per key: every write names the version it read (optimistic). */
export class SqlEntityStore implements EntityStore {
  readonly #session: SqlSession;
  readonly #sql: ReturnType<typeof statements>;

  constructor(session: SqlSession) {
    this.#session = session;
    this.#sql = statements(session);
  }

  async get(type: string, id: string): Promise<EntityRecord | null> {
    requireName('type', type);
    requireId('id', id);
    return this.#get(type, id);
  }

  async getMany(type: string, ids: readonly string[]): Promise<Map<string, EntityRecord>> {
    requireName('type', type);
    if (!Array.isArray(ids) || ids.length > storeLimits.maxPageSize) {
      throw new ValidationError(
        `'ids' must be an array of at most ${storeLimits.maxPageSize} entity ids: read more in several calls`,
      );
    }
    for (const id of ids) requireId('id', id);
    const found = new Map<string, EntityRecord>();
    if (ids.length === 0) return found;
    // Pending writes of this type's entities run first, as for a single read of one of them.
    const rows = await this.#session.query<EntityRow>(this.#sql.getMany, [type, JSON.stringify(ids)]);
    for (const row of rows) {
      const record = toEntity(row);
      found.set(record.id, record);
    }
    return found;
  }

  async put(type: string, id: string, state: Json, expectedVersion: number): Promise<number> {
    requireName('type', type);
    requireId('id', id);
    requireTimestamp('expectedVersion', expectedVersion);
    const [text, packed] = entityStateColumns(type, id, toJsonText('state', state));
    const nowMs = this.#session.clock.now();
    const batch = this.#session.batch;
    if (batch !== undefined) {
      // A second write of the same entity waits for the first: one row per key and batch.
      if (batch.has('entities', entityKey(type, id))) await this.#session.runBatch();
      batch.putEntity({ type, id, state: text, packed, at: nowMs, expected: expectedVersion });
      return expectedVersion + 1;
    }
    const changed =
      expectedVersion === 0
        ? // DO NOTHING rather than a unique violation: PostgreSQL would abort the whole
          // transaction on the violation, and the caller may want to go on after a ConflictError.
          await this.#session.execute(this.#sql.insert, [type, id, text, nowMs, packed])
        : await this.#session.execute(this.#sql.update, [type, id, text, nowMs, expectedVersion, packed]);
    if (changed === 1) return expectedVersion + 1;
    throw await this.#conflict('put', type, id, expectedVersion);
  }

  async delete(type: string, id: string, expectedVersion: number): Promise<void> {
    requireName('type', type);
    requireId('id', id);
    requireTimestamp('expectedVersion', expectedVersion);
    const changed = await this.#session.execute(this.#sql.delete, [type, id, expectedVersion]);
    if (changed !== 1) throw await this.#conflict('delete', type, id, expectedVersion);
  }

  async list(type: string, options: { afterId?: string; limit?: number } = {}): Promise<EntityRecord[]> {
    requireName('type', type);
    const limit = requireLimit('limit', options.limit, storeLimits.defaultPageSize);
    // Ids are never empty, so '' sorts before every id and stands for "from the start".
    const afterId = options.afterId === undefined ? '' : requireId('afterId', options.afterId);
    const rows = await this.#session.query<EntityRow>(this.#sql.list, [type, afterId, limit]);
    return rows.map(toEntity);
  }

  async deleteIdle(request: IdleEntitiesRequest): Promise<{ deleted: number; lastId: string | null }> {
    const type = requireName('type', request?.type);
    const afterId = request.afterId === '' ? '' : requireId('afterId', request.afterId);
    const idleBefore = requireTimestamp('idleBefore', request.idleBefore);
    const limit = requireLimit('limit', request.limit);
    const rows = await this.#session.query<{ id: unknown }>(this.#sql.scanEnd, [type, afterId, limit]);
    if (rows[0] === undefined) return { deleted: 0, lastId: null };
    const lastId = toStringColumn(rows[0].id, 'id');
    const deleted = await this.#session.execute(this.#sql.deleteIdle, [type, afterId, lastId, idleBefore]);
    return { deleted, lastId };
  }

  async #get(type: string, id: string): Promise<EntityRecord | null> {
    const rows = await this.#session.query<EntityRow>(this.#sql.get, [type, id], {
      table: 'entities',
      key: entityKey(type, id),
    });
    return rows[0] === undefined ? null : toEntity(rows[0]);
  }

  async #conflict(action: string, type: string, id: string, expectedVersion: number): Promise<ConflictError> {
    const current = await this.#get(type, id);
    const actual = current === null ? 'it does not exist' : `its version is ${current.version}`;
    return new ConflictError(
      `Cannot ${action} entity '${type}/${id}' expecting version ${expectedVersion}: ${actual}`,
      { details: { type, id, expectedVersion, actualVersion: current?.version ?? 0 } },
    );
  }
}
