import { MeridianError } from '../errors.ts';

/**
 * SQLite's primary result codes that mean the storage cannot take writes: SQLITE_READONLY (8),
 * SQLITE_IOERR (10), SQLITE_CORRUPT (11), SQLITE_FULL (13), SQLITE_CANTOPEN (14), SQLITE_NOTADB
 * (26); and the operating-system codes behind the same faults.
 */
const sqliteFaults = new Set([8, 10, 11, 13, 14, 26]);
const systemFaults = new Set(['ENOSPC', 'EROFS', 'EIO', 'EDQUOT', 'EACCES', 'EPERM']);
/** PostgreSQL's SQLSTATEs for the same: disk full, out of memory, I/O error, read-only transaction. */
const postgresFaults = new Set(['53100', '53200', '58030', '25006']);

/** Whether an error says the storage itself failed (disk full, read-only, I/O), not the request. */
export function isStorageFault(error: unknown, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 3) return false;
  const { errcode, code, cause } = error as { errcode?: unknown; code?: unknown; cause?: unknown };
  if (typeof errcode === 'number' && sqliteFaults.has(errcode & 0xff)) return true;
  if (typeof code === 'string' && (systemFaults.has(code) || postgresFaults.has(code))) return true;
  // Mapped errors keep the driver's error as their cause.
  return isStorageFault(cause, depth + 1);
}

/** What a store's write check found: whether a small write commits now, and why not. */
export interface WriteCheck {
  readonly ok: boolean;
  readonly detail: string;
}

/** Where the store's writes stand: failing since when, and why; or healthy. */
export type WriteHealthState =
  | { readonly ok: true }
  | { readonly ok: false; readonly sinceMs: number; readonly cause: string };

export type WriteHealthListener = (state: WriteHealthState) => void;

/**
 * Tracks whether writes succeed, from every write's outcome: a storage fault turns it failing,
 * the next committed write turns it healthy again. Listeners hear each change once (not every
 * failed write), so an operator is told once that the disk is full and once that it recovered.
 */
export class WriteHealth {
  #state: WriteHealthState = { ok: true };
  readonly #listeners = new Set<WriteHealthListener>();
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  get state(): WriteHealthState {
    return this.#state;
  }

  /** Records a failed write; only storage faults change the state. */
  failed(error: unknown): void {
    if (!isStorageFault(error) || !this.#state.ok) return;
    const message = error instanceof Error ? error.message : String(error);
    this.#change({ ok: false, sinceMs: this.#now(), cause: message.slice(0, 500) });
  }

  /** Records a committed write. */
  succeeded(): void {
    if (!this.#state.ok) this.#change({ ok: true });
  }

  /** Calls `listener` on every change from now on; returns the function that stops it. */
  onChange(listener: WriteHealthListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #change(state: WriteHealthState): void {
    this.#state = state;
    for (const listener of this.#listeners) {
      try {
        listener(state);
      } catch {
        // A listener's failure must not turn into a failed write.
      }
    }
  }
}

/** The database failed its integrity check at start: it is not opened. */
export class StoreIntegrityError extends MeridianError {
  constructor(path: string, findings: string) {
    super(
      'STORE_CORRUPT',
      `The database at '${path}' failed its integrity check (${findings.slice(0, 300)}). It was not opened, so nothing more was written to it. Restore it from a backup, or move it aside to start empty (the data in it is lost); 'sqlite3 ${path} .recover' may save part of it.`,
      { details: { path } },
    );
  }
}
