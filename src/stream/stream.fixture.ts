// A scratch embedded database (SQLite store and log on one file) for the stream tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteLog } from '../log/index.ts';
import { SqliteDatabase, SqliteStore } from '../store/index.ts';
import type { Clock } from '../time.ts';

export interface Embedded {
  readonly path: string;
  readonly store: SqliteStore;
  readonly log: SqliteLog;
  close(): Promise<void>;
}

export function openEmbeddedAt(path: string, clock?: Clock): Embedded {
  const database = new SqliteDatabase({ path, integrityCheck: 'off' });
  const store = new SqliteStore(clock === undefined ? { database } : { database, clock });
  const log = new SqliteLog(
    database,
    clock === undefined ? { retentionCheckIntervalMs: null } : { clock, retentionCheckIntervalMs: null },
  );
  return {
    path,
    store,
    log,
    async close() {
      await log.close();
      await store.close();
      database.close();
    },
  };
}

/** A fresh database in a temporary directory, removed on close. */
export function scratchEmbedded(clock?: Clock): Embedded {
  const directory = mkdtempSync(join(tmpdir(), 'meridian-stream-'));
  const embedded = openEmbeddedAt(join(directory, 'stream.db'), clock);
  return {
    ...embedded,
    async close() {
      await embedded.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
