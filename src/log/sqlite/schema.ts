import type { Migration } from '../../store/sqlite/database.ts';

/** The migration component name of the log's tables in the shared `meridian_migrations` table. */
export const logComponent = 'log';

/**
 * The log's tables. Numbered, dense, never edited once released: add a new migration instead.
 *
 * - log_topics: one row per topic; `id` is AUTOINCREMENT so a deleted topic's id is never
 *   reused, and a stale cached id can never address a newer topic of the same name.
 * - log_partitions: one row per partition holding its offsets (start = first offset still kept,
 *   end = next offset to assign), its stored bytes (for size retention) and the largest
 *   timestamp appended so far (for the time lookup).
 * - log_batches: the records, packed per append and partition (see batch-codec.ts). Keyed by
 *   last offset so "the batch holding offset o" is the first row with last_offset >= o.
 *   `max_timestamp` is the partition's running maximum through the batch (non-decreasing along
 *   the partition), which lets the time lookup binary-search the batches.
 * - log_group_offsets: consumer groups' committed offsets (the next offset to read).
 *
 * No foreign keys: every write would pay a parent lookup; deleteTopic removes the rows itself.
 */
export const logMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'topics, partitions, record batches, group offsets',
    sql: `
      CREATE TABLE log_topics (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        partitions INTEGER NOT NULL CHECK (partitions BETWEEN 1 AND 1024),
        retention_ms INTEGER,
        retention_bytes INTEGER,
        cleanup_policy TEXT NOT NULL CHECK (cleanup_policy IN ('delete', 'compact')),
        created_at INTEGER NOT NULL
      );
      CREATE TABLE log_partitions (
        topic_id INTEGER NOT NULL,
        partition INTEGER NOT NULL,
        start_offset INTEGER NOT NULL,
        end_offset INTEGER NOT NULL,
        size_bytes INTEGER NOT NULL,
        max_timestamp INTEGER NOT NULL,
        PRIMARY KEY (topic_id, partition)
      ) WITHOUT ROWID;
      CREATE TABLE log_batches (
        topic_id INTEGER NOT NULL,
        partition INTEGER NOT NULL,
        last_offset INTEGER NOT NULL,
        base_offset INTEGER NOT NULL,
        max_timestamp INTEGER NOT NULL,
        record_count INTEGER NOT NULL,
        size_bytes INTEGER NOT NULL,
        records BLOB NOT NULL,
        PRIMARY KEY (topic_id, partition, last_offset)
      );
      CREATE TABLE log_group_offsets (
        group_name TEXT NOT NULL,
        topic_id INTEGER NOT NULL,
        partition INTEGER NOT NULL,
        committed_offset INTEGER NOT NULL,
        committed_at INTEGER NOT NULL,
        PRIMARY KEY (group_name, topic_id, partition)
      ) WITHOUT ROWID;
    `,
  },
];
