import { requireId, requireLimit, requireName, requireTimestamp, toJsonText } from '../limits.ts';
import type { TimerRecord, TimerStore } from '../types.ts';
import type { SqlSession } from './connection.ts';
import { parseJson, toInteger, toOptionalInteger, toStringColumn } from './rows.ts';

interface TimerRow {
  id: unknown;
  due_at: unknown;
  kind: unknown;
  payload: unknown;
}

/** Durable timers: saga sleeps and deadlines that must fire after a restart too. */
export class SqlTimerStore implements TimerStore {
  readonly #session: SqlSession;
  readonly #table: string;

  constructor(session: SqlSession) {
    this.#session = session;
    this.#table = session.tables.timers;
  }

  async schedule(timer: TimerRecord): Promise<void> {
    const id = requireId('id', timer.id);
    const dueAt = requireTimestamp('dueAt', timer.dueAt);
    const kind = requireName('kind', timer.kind);
    const payload = toJsonText('payload', timer.payload);
    await this.#session.execute(
      `INSERT INTO ${this.#table} (id, due_at, kind, payload) VALUES ($1, $2, $3, $4)
       ON CONFLICT (id) DO UPDATE SET due_at = excluded.due_at, kind = excluded.kind, payload = excluded.payload`,
      [id, dueAt, kind, payload],
    );
  }

  async due(nowMs: number, limit: number): Promise<TimerRecord[]> {
    requireTimestamp('nowMs', nowMs);
    requireLimit('limit', limit);
    // Ties on due time break by id so every node and both dialects fire in the same order.
    const rows = await this.#session.query<TimerRow>(
      `SELECT id, due_at, kind, payload FROM ${this.#table} WHERE due_at <= $1 ORDER BY due_at, id LIMIT $2`,
      [nowMs, limit],
    );
    return rows.map((row) => ({
      id: toStringColumn(row.id, 'id'),
      dueAt: toInteger(row.due_at, 'due_at'),
      kind: toStringColumn(row.kind, 'kind'),
      payload: parseJson(row.payload, 'payload'),
    }));
  }

  async nextDueAt(): Promise<number | null> {
    const rows = await this.#session.query<{ due_at: unknown }>(
      `SELECT MIN(due_at) AS due_at FROM ${this.#table}`,
      [],
    );
    return toOptionalInteger(rows[0]?.due_at, 'due_at');
  }

  async delete(id: string): Promise<boolean> {
    requireId('id', id);
    return (await this.#session.execute(`DELETE FROM ${this.#table} WHERE id = $1`, [id])) === 1;
  }
}
