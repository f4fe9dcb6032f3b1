import { Worker } from 'node:worker_threads';
import type { CheckpointerThreadData, CheckpointReport } from './checkpointer-thread.ts';
import { threadUrl } from './thread-url.ts';

/**
 * Checkpoints a WAL database on a thread of its own. SQLite's automatic checkpoint runs inside
 * the COMMIT that crosses its threshold: it copies the WAL's pages into the database file and
 * fsyncs it, on the committing thread, which for Meridian is the event loop (measured: a third
 * of all COMMIT time, and stalls of up to about 40 ms). Here a worker thread with its own
 * connection runs PASSIVE checkpoints, which wait for no lock and hold up no writer or reader,
 * every `everyCommits` commits; the writer keeps a far higher automatic threshold only as a
 * backstop, for when the worker cannot keep up (the WAL restarts from its start once a
 * checkpoint has caught up, so it stays small under any load the worker keeps pace with).
 */
export class BackgroundCheckpointer {
  readonly #path: string;
  readonly #busyTimeoutMs: number;
  /** Started at the first checkpoint, so short-lived databases (tests, tools) cost no thread. */
  #worker: Worker | undefined;
  readonly #everyCommits: number;
  #commits = 0;
  #busy = false;
  #closed = false;
  /** Resolves once the thread has ended (at once when none was started). */
  #exited: Promise<void> = Promise.resolve();
  #checkpoints = 0;
  #lastReport: CheckpointReport | undefined;

  constructor(path: string, busyTimeoutMs: number, everyCommits: number) {
    this.#path = path;
    this.#busyTimeoutMs = busyTimeoutMs;
    this.#everyCommits = everyCommits;
  }

  /** Checkpoints run and the last one's outcome, for tests and diagnostics. */
  get stats(): { checkpoints: number; last: CheckpointReport | undefined } {
    return { checkpoints: this.#checkpoints, last: this.#lastReport };
  }

  /** Called after each commit; asks for a checkpoint every `everyCommits` of them. */
  committed(): void {
    if (this.#closed || ++this.#commits < this.#everyCommits || this.#busy) return;
    this.#commits = 0;
    this.#busy = true;
    this.#thread().postMessage('checkpoint');
  }

  /** Asks for a checkpoint now (unless one is running); resolves once it has answered. */
  checkpointNow(): Promise<CheckpointReport> {
    return new Promise((resolve, reject) => {
      if (this.#closed) return reject(new Error('The checkpointer is closed'));
      const worker = this.#thread();
      worker.once('message', resolve);
      if (!this.#busy) {
        this.#busy = true;
        worker.postMessage('checkpoint');
      }
    });
  }

  /**
   * Lets the thread close its connection and end; a checkpoint under way finishes first.
   * Resolves once the thread has ended: until then its connection may still hold the file (and,
   * as the last connection to close, it removes the WAL files), so whoever deletes the
   * database's directory after closing must wait for this.
   */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      // Referenced again, so that a process awaiting this does not exit before the thread ends.
      this.#worker?.ref();
      this.#worker?.postMessage('close');
    }
    return this.#exited;
  }

  #thread(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const data: CheckpointerThreadData = { path: this.#path, busyTimeoutMs: this.#busyTimeoutMs };
    const worker = new Worker(threadUrl('checkpointer-thread'), { workerData: data });
    this.#exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    // Never keeps the process alive on its own; close() ends it.
    worker.unref();
    worker.on('message', (report: CheckpointReport) => {
      this.#busy = false;
      this.#checkpoints++;
      this.#lastReport = report;
    });
    // A dead checkpointer costs nothing but WAL growth, which the writer's backstop bounds.
    worker.on('error', () => {
      this.#closed = true;
    });
    this.#worker = worker;
    return worker;
  }
}
