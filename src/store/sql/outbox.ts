import { assert } from '../../assert.ts';
import { ValidationError } from '../../errors.ts';
import {
  requireInteger,
  requireLimit,
  requireName,
  requirePartition,
  requireTimestamp,
  storeLimits,
  toHeadersText,
  toPartitionsText,
} from '../limits.ts';
import type { NewOutboxMessage, OutboxMessage, OutboxStore, PartitionFilter } from '../types.ts';
import type { SqlSession, SqlValue } from './connection.ts';
import { toBytes, toInteger, toStringColumn } from './rows.ts';

interface OutboxRow {
  id: unknown;
  topic: unknown;
  key: unknown;
  value: unknown;
  headers: unknown;
  timestamp: unknown;
  partition: unknown;
}

const outboxColumns = 'id, topic, key, value, headers, timestamp, partition';

/** Rows per INSERT: 6 parameters each stays far below both dialects' parameter limits. */
const rowsPerInsert = 100;

function requireBytes(field: string, value: unknown): Uint8Array | null {
  if (value === null || value === undefined) return null;
  if (!(value instanceof Uint8Array)) {
    throw new ValidationError(`'${field}' must be a Uint8Array or null: current value is ${typeof value}`, {
      details: { field, rule: 'bytes' },
    });
  }
  return value;
}

function requireBatch(field: string, value: unknown): readonly unknown[] {
  if (!Array.isArray(value)) {
    throw new ValidationError(`'${field}' must be an array: current value is ${typeof value}`, {
      details: { field, rule: 'array' },
    });
  }
  if (value.length > storeLimits.maxBatchSize) {
    throw new ValidationError(
      `'${field}' must hold at most ${storeLimits.maxBatchSize} items: current value has ${value.length}`,
      { details: { field, rule: 'maxBatchSize', length: value.length } },
    );
  }
  return value;
}

/**
 * Events waiting to be published, written in the same transaction as the state change that
 * caused them. Ids increase in insertion order and are never reused, so a relay can publish
 * in id order and remember how far it got.
 */
export class SqlOutboxStore implements OutboxStore {
  readonly #session: SqlSession;
  readonly #table: string;

  constructor(session: SqlSession) {
    this.#session = session;
    this.#table = session.tables.outbox;
  }

  async add(messages: readonly NewOutboxMessage[]): Promise<number[]> {
    requireBatch('messages', messages);
    const rows: SqlValue[][] = messages.map((message, index) => {
      const topic = requireName(`messages[${index}].topic`, message.topic);
      const key = requireBytes(`messages[${index}].key`, message.key);
      const value = requireBytes(`messages[${index}].value`, message.value);
      const bytes = (key?.byteLength ?? 0) + (value?.byteLength ?? 0);
      if (bytes > storeLimits.maxOutboxMessageBytes) {
        throw new ValidationError(
          `'messages[${index}]' key + value must be at most ${storeLimits.maxOutboxMessageBytes} bytes: current value has ${bytes}`,
          { details: { field: `messages[${index}]`, rule: 'maxOutboxMessageBytes', bytes } },
        );
      }
      const headers = toHeadersText(`messages[${index}].headers`, message.headers);
      const timestamp = requireTimestamp(`messages[${index}].timestamp`, message.timestamp);
      const partition = requirePartition(`messages[${index}].partition`, message.partition ?? 0);
      return [topic, key, value, headers, timestamp, partition];
    });
    const ids: number[] = [];
    for (let start = 0; start < rows.length; start += rowsPerInsert) {
      const chunk = rows.slice(start, start + rowsPerInsert);
      const values = chunk
        .map((_, row) => {
          const base = row * 6;
          return `($${base + 1}, $${base + 2}, $${base + 3}, $${base + 4}, $${base + 5}, $${base + 6})`;
        })
        .join(', ');
      const returned = await this.#session.query<{ id: unknown }>(
        `INSERT INTO ${this.#table} (topic, key, value, headers, timestamp, partition) VALUES ${values} RETURNING id`,
        chunk.flat(),
      );
      // Neither dialect promises RETURNING order, but one INSERT draws its ids in VALUES order,
      // so sorted ids line up with the messages.
      const chunkIds = returned.map((row) => toInteger(row.id, 'id')).sort((a, b) => a - b);
      assert(chunkIds.length === chunk.length, 'outbox INSERT must return one id per message');
      assert(
        ids.length === 0 || (chunkIds[0] ?? 0) > (ids[ids.length - 1] ?? 0),
        'outbox ids must increase across one add()',
      );
      ids.push(...chunkIds);
    }
    return ids;
  }

  async pending(limit: number, options: PartitionFilter = {}): Promise<OutboxMessage[]> {
    requireLimit('limit', limit);
    const partitions = toPartitionsText('partitions', options.partitions);
    if (partitions === '[]') return [];
    const rows = await this.#session.query<OutboxRow>(
      partitions === null
        ? `SELECT ${outboxColumns} FROM ${this.#table} ORDER BY id LIMIT $1`
        : `SELECT ${outboxColumns} FROM ${this.#table} WHERE partition IN (${this.#session.dialect.jsonIntegers('$2')}) ORDER BY id LIMIT $1`,
      partitions === null ? [limit] : [limit, partitions],
    );
    return rows.map((row) => ({
      id: toInteger(row.id, 'id'),
      topic: toStringColumn(row.topic, 'topic'),
      key: toBytes(row.key, 'key'),
      value: toBytes(row.value, 'value'),
      headers: JSON.parse(toStringColumn(row.headers, 'headers')) as Record<string, string>,
      timestamp: toInteger(row.timestamp, 'timestamp'),
      partition: toInteger(row.partition, 'partition'),
    }));
  }

  async markPublished(ids: readonly number[]): Promise<void> {
    requireBatch('ids', ids);
    ids.forEach((id, index) => {
      requireInteger(`ids[${index}]`, id, 1, Number.MAX_SAFE_INTEGER);
    });
    if (ids.length === 0) return;
    // The ids travel as one JSON array parameter, so the SQL text is the same for any count
    // (one cached statement, no parameter limit).
    await this.#session.execute(
      `DELETE FROM ${this.#table} WHERE id IN (${this.#session.dialect.jsonIntegers('$1')})`,
      [JSON.stringify(ids)],
    );
  }
}
