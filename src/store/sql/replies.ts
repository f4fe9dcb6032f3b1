import { ConflictError, ValidationError } from '../../errors.ts';
import {
  optionalText,
  requireId,
  requireLimit,
  requireName,
  requirePartition,
  requireTimestamp,
  storeLimits,
  toJsonText,
} from '../limits.ts';
import type { ReplyStore, StoredReply } from '../types.ts';
import type { SqlSession } from './connection.ts';
import { sqlPerStore } from './dialect.ts';
import { parseOptionalJson, toInteger, toOptionalString, toStringColumn } from './rows.ts';
import { unendedStatusesSql } from './schema.ts';

interface ReplyRow {
  request_id: unknown;
  partition: unknown;
  ok: unknown;
  reply: unknown;
  error: unknown;
  code: unknown;
  created_at: unknown;
}

const replyColumns = 'request_id, partition, ok, reply, error, code, created_at';

const statements = sqlPerStore(({ replies, sagas }) => ({
  // DO NOTHING: a second reply to one request is the expected race, not an error that would
  // abort a PostgreSQL transaction.
  put: `INSERT INTO ${replies} (${replyColumns}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (request_id) DO NOTHING`,
  get: `SELECT ${replyColumns} FROM ${replies} WHERE request_id = $1`,
  exists: `SELECT 1 AS found FROM ${replies} WHERE request_id = $1`,
  // A saga's request id is saga/<saga id>/<sequence>: while that saga has not ended, its replies
  // stay (one resumed after a long stop still finds the reply to the request it journaled).
  prune: `DELETE FROM ${replies} WHERE request_id IN
       (SELECT r.request_id FROM ${replies} r WHERE r.created_at < $1
          AND NOT (r.request_id LIKE 'saga/%' AND EXISTS (SELECT 1 FROM ${sagas} s
            WHERE s.id = ${sagaIdOf('r.request_id')} AND s.${unendedStatusesSql}))
        ORDER BY r.created_at LIMIT $2)`,
}));

/** The saga id in a saga's request id `saga/<id>/<sequence>`, in SQL both stores run. */
function sagaIdOf(column: string): string {
  const withoutSequence = `rtrim(${column}, '0123456789')`;
  return `substr(${withoutSequence}, 6, length(${withoutSequence}) - 6)`;
}

function toReply(row: ReplyRow): StoredReply {
  return {
    requestId: toStringColumn(row.request_id, 'request_id'),
    partition: toInteger(row.partition, 'partition'),
    ok: toInteger(row.ok, 'ok') === 1,
    reply: parseOptionalJson(row.reply, 'reply'),
    error: toOptionalString(row.error, 'error'),
    code: toOptionalString(row.code, 'code'),
    createdAt: toInteger(row.created_at, 'created_at'),
  };
}

/** Replies to commands routed to a partition's owner: written once, read by the sender. */
export class SqlReplyStore implements ReplyStore {
  readonly #session: SqlSession;
  readonly #sql: ReturnType<typeof statements>;

  constructor(session: SqlSession) {
    this.#session = session;
    this.#sql = statements(session);
  }

  async put(reply: StoredReply): Promise<boolean> {
    const requestId = requireId('requestId', reply.requestId);
    const partition = requirePartition('partition', reply.partition);
    if (typeof reply.ok !== 'boolean') {
      throw new ValidationError(`'ok' must be a boolean: current value is ${String(reply.ok)}`, {
        details: { field: 'ok', rule: 'boolean' },
      });
    }
    const text = reply.reply === null ? null : toJsonText('reply', reply.reply);
    const error = optionalText('error', reply.error, storeLimits.maxTextLength);
    const code = reply.code === null ? null : requireName('code', reply.code);
    const createdAt = requireTimestamp('createdAt', reply.createdAt);
    const values = [requestId, partition, reply.ok ? 1 : 0, text, error, code, createdAt];
    const batch = this.#session.batch;
    if (batch !== undefined && !batch.has('replies', requestId)) {
      // Deferred as new: a request answered before fails the batch (the retry answers false).
      batch.replies.add(requestId, values);
      return true;
    }
    const changed = await this.#session.execute(this.#sql.put, values, { table: 'replies', key: requestId });
    return changed === 1;
  }

  async get(requestId: string): Promise<StoredReply | null> {
    requireId('requestId', requestId);
    const rows = await this.#session.query<ReplyRow>(this.#sql.get, [requestId]);
    return rows[0] === undefined ? null : toReply(rows[0]);
  }

  async require(requestId: string): Promise<void> {
    requireId('requestId', requestId);
    const batch = this.#session.batch;
    // Checked with the batch's writes (no round trip of its own); a reply put in this same
    // batch is written first, since the batch's statement cannot see its own inserts.
    if (batch !== undefined && !batch.has('replies', requestId)) {
      batch.requireReply(requestId);
      return;
    }
    const rows = await this.#session.query(this.#sql.exists, [requestId], {
      table: 'replies',
      key: requestId,
    });
    if (rows.length === 0) throw missingReply([requestId]);
  }

  async prune(beforeMs: number, limit?: number): Promise<number> {
    requireTimestamp('beforeMs', beforeMs);
    return this.#session.execute(this.#sql.prune, [
      beforeMs,
      requireLimit('limit', limit, storeLimits.maxPageSize),
    ]);
  }
}

/** The error of a transaction that required replies that are not stored. */
export function missingReply(requestIds: readonly string[]): ConflictError {
  const shown = requestIds
    .slice(0, 5)
    .map((id) => `'${id.slice(0, 200)}'`)
    .join(', ');
  const more = requestIds.length > 5 ? ` and ${requestIds.length - 5} more` : '';
  return new ConflictError(
    `The reply to request ${shown}${more} is not stored: it was read from a server that has since lost it (a failed-over PostgreSQL primary) or was pruned; wait for it again`,
    { details: { requestIds: requestIds.slice(0, 5) } },
  );
}
