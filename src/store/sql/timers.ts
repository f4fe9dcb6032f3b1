import {
  requireId,
  requireLimit,
  requireName,
  requirePartition,
  requireTimestamp,
  toJsonText,
  toPartitionsText,
} from '../limits.ts';
import type { PartitionFilter, TimerRecord, TimerStore } from '../types.ts';
import type { SqlSession } from './connection.ts';
import { sqlPerStore } from './dialect.ts';
import { parseJson, toInteger, toOptionalInteger, toStringColumn } from './rows.ts';

interface TimerRow {
  id: unknown;
  due_at: unknown;
  kind: unknown;
  payload: unknown;
  partition: unknown;
}

const timerColumns = 'id, due_at, kind, payload, partition';

const statements = sqlPerStore(({ timers }, dialect) => {
  const inPartitions = (parameter: string) => `partition IN (${dialect.jsonIntegers(parameter)})`;
  return {
    schedule: `INSERT INTO ${timers} (${timerColumns}) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (id) DO UPDATE SET due_at = excluded.due_at, kind = excluded.kind, payload = excluded.payload, partition = excluded.partition`,
    // Ties on due time break by id so every node and both dialects fire in the same order.
    due: `SELECT ${timerColumns} FROM ${timers} WHERE due_at <= $1 ORDER BY due_at, id LIMIT $2`,
    dueIn: `SELECT ${timerColumns} FROM ${timers} WHERE due_at <= $1 AND ${inPartitions('$3')} ORDER BY due_at, id LIMIT $2`,
    nextDueAt: `SELECT MIN(due_at) AS due_at FROM ${timers}`,
    nextDueAtIn: `SELECT MIN(due_at) AS due_at FROM ${timers} WHERE ${inPartitions('$1')}`,
    delete: `DELETE FROM ${timers} WHERE id = $1`,
  };
});

/** Durable timers: saga sleeps and deadlines that must fire after a restart too. */
export class SqlTimerStore implements TimerStore {
  readonly #session: SqlSession;
  readonly #sql: ReturnType<typeof statements>;

  constructor(session: SqlSession) {
    this.#session = session;
    this.#sql = statements(session);
  }

  async schedule(timer: TimerRecord): Promise<void> {
    const id = requireId('id', timer.id);
    const dueAt = requireTimestamp('dueAt', timer.dueAt);
    const kind = requireName('kind', timer.kind);
    const payload = toJsonText('payload', timer.payload);
    const partition = requirePartition('partition', timer.partition ?? 0);
    await this.#session.execute(this.#sql.schedule, [id, dueAt, kind, payload, partition]);
  }

  async due(nowMs: number, limit: number, options: PartitionFilter = {}): Promise<TimerRecord[]> {
    requireTimestamp('nowMs', nowMs);
    requireLimit('limit', limit);
    const partitions = toPartitionsText('partitions', options.partitions);
    if (partitions === '[]') return [];
    const rows = await this.#session.query<TimerRow>(
      partitions === null ? this.#sql.due : this.#sql.dueIn,
      partitions === null ? [nowMs, limit] : [nowMs, limit, partitions],
    );
    return rows.map((row) => ({
      id: toStringColumn(row.id, 'id'),
      dueAt: toInteger(row.due_at, 'due_at'),
      kind: toStringColumn(row.kind, 'kind'),
      payload: parseJson(row.payload, 'payload'),
      partition: toInteger(row.partition, 'partition'),
    }));
  }

  async nextDueAt(options: PartitionFilter = {}): Promise<number | null> {
    const partitions = toPartitionsText('partitions', options.partitions);
    if (partitions === '[]') return null;
    const rows = await this.#session.query<{ due_at: unknown }>(
      partitions === null ? this.#sql.nextDueAt : this.#sql.nextDueAtIn,
      partitions === null ? [] : [partitions],
    );
    return toOptionalInteger(rows[0]?.due_at, 'due_at');
  }

  async delete(id: string): Promise<boolean> {
    requireId('id', id);
    return (await this.#session.execute(this.#sql.delete, [id])) === 1;
  }
}
