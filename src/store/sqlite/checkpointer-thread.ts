// The body of the WAL checkpointer's worker thread (see checkpointer.ts): one connection to the
// database file, a PASSIVE checkpoint each time the owning thread asks, an answer after each.
import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';

export interface CheckpointerThreadData {
  readonly path: string;
  readonly busyTimeoutMs: number;
}

/** What the thread answers after each request. */
export type CheckpointReport =
  | { readonly kind: 'checkpointed'; readonly walFrames: number; readonly backfilled: number }
  | { readonly kind: 'failed'; readonly message: string };

const { path, busyTimeoutMs } = workerData as CheckpointerThreadData;
const database = new DatabaseSync(path, { timeout: busyTimeoutMs });
// Prepared once: a statement prepared per request holds native memory until this thread's
// isolate runs a full collection, which a thread this quiet seldom does.
const checkpoint = database.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const port = parentPort!;

port.on('message', (message: 'checkpoint' | 'close') => {
  if (message === 'close') {
    database.close();
    port.close();
    return;
  }
  let report: CheckpointReport;
  try {
    // PASSIVE copies what it can without waiting for (or blocking) the writer or any reader.
    const row = checkpoint.get() as {
      log: number;
      checkpointed: number;
    };
    report = { kind: 'checkpointed', walFrames: row.log, backfilled: row.checkpointed };
  } catch (error) {
    report = { kind: 'failed', message: (error as Error).message };
  }
  port.postMessage(report);
});
