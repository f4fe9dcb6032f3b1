import { MeridianError, ValidationError } from '../../errors.ts';
import {
  requireInteger,
  requireName,
  requirePartition,
  requireTimestamp,
  storeLimits,
  toPartitionsText,
} from '../limits.ts';
import type { PartitionClaim, PartitionStore } from '../types.ts';
import type { SqlSession } from './connection.ts';
import { sqlPerStore } from './dialect.ts';
import { toInteger, toStringColumn } from './rows.ts';

/** The SQLSTATE PostgreSQL's fence check raises (`requireEpochs`); mapped to code FENCED. */
export const fencedSqlState = 'MF001';

interface PartitionRow {
  partition: unknown;
  epoch: unknown;
  owner: unknown;
  claimed_at: unknown;
}

const statements = sqlPerStore(({ partitions }, dialect) => {
  const epochs = `SELECT partition, epoch FROM ${partitions} WHERE partition IN (${dialect.jsonIntegers('$1')}) ORDER BY partition`;
  return {
    // One statement on both dialects: a claim never reads an epoch another claim is changing.
    claim: `INSERT INTO ${partitions} (partition, epoch, owner, claimed_at) VALUES ($1, 1, $2, $3)
       ON CONFLICT (partition) DO UPDATE SET epoch = ${partitions}.epoch + 1, owner = excluded.owner, claimed_at = excluded.claimed_at
       RETURNING epoch`,
    epochs,
    lockedEpochs: `${epochs}${dialect.forShare}`,
    list: `SELECT partition, epoch, owner, claimed_at FROM ${partitions} ORDER BY partition`,
  };
});

/** Fencing epochs of work partitions: who claimed each one last, and how often it was claimed. */
export class SqlPartitionStore implements PartitionStore {
  readonly #session: SqlSession;
  readonly #sql: ReturnType<typeof statements>;

  constructor(session: SqlSession) {
    this.#session = session;
    this.#sql = statements(session);
  }

  async claim(partition: number, owner: string, nowMs: number): Promise<number> {
    requirePartition('partition', partition);
    requireName('owner', owner);
    requireTimestamp('nowMs', nowMs);
    // A write: refused in a read transaction like every other one.
    this.#session.assertWritable();
    const rows = await this.#session.query<{ epoch: unknown }>(this.#sql.claim, [partition, owner, nowMs]);
    return toInteger(rows[0]?.epoch, 'epoch');
  }

  async epochs(
    partitions: readonly number[],
    options: { lock?: boolean } = {},
  ): Promise<Map<number, number>> {
    const list = toPartitionsText('partitions', partitions);
    const epochs = new Map<number, number>();
    if (list === null || partitions.length === 0) return epochs;
    const rows = await this.#session.query<{ partition: unknown; epoch: unknown }>(
      options.lock === true ? this.#sql.lockedEpochs : this.#sql.epochs,
      [list],
    );
    for (const row of rows) epochs.set(toInteger(row.partition, 'partition'), toInteger(row.epoch, 'epoch'));
    return epochs;
  }

  async requireEpochs(held: ReadonlyMap<number, number>): Promise<void> {
    const pairs = [...held].map(([partition, epoch]) => {
      requirePartition('partition', partition);
      return [partition, requireInteger('epoch', epoch, 1, Number.MAX_SAFE_INTEGER)] as const;
    });
    if (pairs.length === 0) return;
    if (pairs.length > storeLimits.maxPartitions) {
      throw new ValidationError(`'held' must name at most ${storeLimits.maxPartitions} partitions`);
    }
    if (this.#session.dialect.name === 'postgres') {
      // Integers checked above, so inlined: a DO block takes no parameters.
      const list = pairs.map(([partition, epoch]) => `(${partition}, ${epoch})`).join(', ');
      await this.#session.execute(
        `DO $fence$ BEGIN
           IF (SELECT count(*) FROM (SELECT 1 FROM ${this.#session.tables.partitions}
                 WHERE (partition, epoch) IN (${list}) FOR SHARE) AS held) <> ${pairs.length} THEN
             RAISE EXCEPTION 'meridian: the epoch of a work partition this transaction writes for moved: another node claimed it' USING ERRCODE = '${fencedSqlState}';
           END IF;
         END $fence$`,
        [],
      );
      return;
    }
    const current = await this.epochs(pairs.map(([partition]) => partition));
    const moved = pairs.filter(([partition, epoch]) => current.get(partition) !== epoch);
    if (moved.length > 0) {
      throw new MeridianError(
        'FENCED',
        `The epoch of work partition(s) ${moved.map(([partition]) => partition).join(', ')} moved: another node claimed them`,
        { details: { partitions: moved.map(([partition]) => partition) } },
      );
    }
  }

  async list(): Promise<PartitionClaim[]> {
    const rows = await this.#session.query<PartitionRow>(this.#sql.list, []);
    return rows.map((row) => ({
      partition: toInteger(row.partition, 'partition'),
      epoch: toInteger(row.epoch, 'epoch'),
      owner: toStringColumn(row.owner, 'owner'),
      claimedAt: toInteger(row.claimed_at, 'claimed_at'),
    }));
  }
}
