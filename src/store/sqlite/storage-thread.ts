// The body of a one-off worker thread that measures a SQLite file's storage (see
// SqliteDatabase.storage): dbstat reads every page of the file, which would hold the owning
// thread's event loop for as long as that takes on a large file.
import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';
import type { StorageReport } from '../types.ts';

export interface StorageThreadData {
  readonly path: string;
  readonly busyTimeoutMs: number;
}

/** What the thread posts once: the report, or why it could not make one. */
export type StorageThreadAnswer =
  | { readonly ok: true; readonly report: StorageReport }
  | { readonly ok: false; readonly message: string };

const { path, busyTimeoutMs } = workerData as StorageThreadData;
let answer: StorageThreadAnswer;
try {
  const database = new DatabaseSync(path, { timeout: busyTimeoutMs, readOnly: true });
  try {
    answer = { ok: true, report: measure(database) };
  } finally {
    database.close();
  }
} catch (error) {
  answer = { ok: false, message: error instanceof Error ? error.message : String(error) };
}
parentPort!.postMessage(answer);

function measure(database: DatabaseSync): StorageReport {
  // One read transaction: the pages counted and the file's size agree with each other.
  database.exec('BEGIN');
  try {
    const rows = database
      .prepare(
        `SELECT coalesce(m.tbl_name, s.name) AS name, sum(s.pgsize) AS bytes
           FROM dbstat AS s LEFT JOIN sqlite_schema AS m ON m.name = s.name
          GROUP BY 1 ORDER BY 2 DESC`,
      )
      .all() as Array<{ name: string; bytes: number }>;
    const pragma = (name: string) =>
      Number(Object.values(database.prepare(`PRAGMA ${name}`).get() ?? {})[0] ?? 0);
    const pageSize = pragma('page_size');
    return {
      tables: rows.map((row) => ({ table: row.name, bytes: Number(row.bytes) })),
      totalBytes: pragma('page_count') * pageSize,
      freeBytes: pragma('freelist_count') * pageSize,
    };
  } finally {
    database.exec('COMMIT');
  }
}
