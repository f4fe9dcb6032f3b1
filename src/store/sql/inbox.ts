import { requireId, requireName, requireTimestamp } from '../limits.ts';
import type { InboxStore } from '../types.ts';
import type { SqlSession } from './connection.ts';

/** What each consumer has applied, so a redelivered message changes nothing twice. */
export class SqlInboxStore implements InboxStore {
  readonly #session: SqlSession;
  readonly #table: string;

  constructor(session: SqlSession) {
    this.#session = session;
    this.#table = session.tables.inbox;
  }

  async markApplied(consumer: string, messageId: string, atMs: number): Promise<boolean> {
    requireName('consumer', consumer);
    requireId('messageId', messageId);
    requireTimestamp('atMs', atMs);
    const batch = this.#session.batch;
    if (batch !== undefined) {
      // Deferred as new: a message applied before fails the batch, and the unbatched retry
      // answers false here. A second claim in this transaction waits for the first.
      const key = `${consumer}\u0000${messageId}`;
      if (batch.has('inbox', key)) await this.#session.runBatch();
      else {
        batch.inbox.add(key, [consumer, messageId, atMs]);
        return true;
      }
    }
    // DO NOTHING: a duplicate is the expected case here, not an error that would abort a
    // PostgreSQL transaction.
    const changed = await this.#session.execute(
      `INSERT INTO ${this.#table} (consumer, message_id, applied_at) VALUES ($1, $2, $3) ON CONFLICT (consumer, message_id) DO NOTHING`,
      [consumer, messageId, atMs],
    );
    return changed === 1;
  }

  async has(consumer: string, messageId: string): Promise<boolean> {
    requireName('consumer', consumer);
    requireId('messageId', messageId);
    const rows = await this.#session.query<{ found: unknown }>(
      `SELECT 1 AS found FROM ${this.#table} WHERE consumer = $1 AND message_id = $2`,
      [consumer, messageId],
    );
    return rows.length > 0;
  }

  async prune(beforeMs: number): Promise<number> {
    requireTimestamp('beforeMs', beforeMs);
    return this.#session.execute(`DELETE FROM ${this.#table} WHERE applied_at < $1`, [beforeMs]);
  }
}
