import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ValidationError } from '../errors.ts';
import { SqliteLog } from '../log/sqlite/sqlite-log.ts';
import { type Durability, SqliteDatabase } from '../store/sqlite/database.ts';
import { SqliteStore } from '../store/sqlite/store.ts';
import type { App } from './app.ts';
import { type RunningApp, type StartAppOptions, startApp } from './host.ts';

export interface EmbeddedAppOptions extends Omit<StartAppOptions, 'store' | 'log'> {
  /** Where the SQLite file (`meridian.db`) holding the log and the store lives; created when missing. */
  dataDir: string;
  /** What a commit survives. @default 'process' (a kill -9 loses nothing; a power cut may) */
  durability?: Durability;
}

export interface RunningEmbeddedApp extends RunningApp {
  /** The SQLite file. */
  readonly databasePath: string;
  /** Drains the app (see RunningApp.close), then closes the log, the store and the file. */
  close(): Promise<void>;
}

/**
 * Runs an app on the embedded shape: one SQLite file in `dataDir` holds its log and its store,
 * so consuming a record, changing state and producing records commit in one transaction.
 * Starting again on the same directory resumes every saga that was in flight, whether the last
 * run drained or was killed.
 */
export async function startEmbeddedApp(app: App, options: EmbeddedAppOptions): Promise<RunningEmbeddedApp> {
  if (typeof options.dataDir !== 'string' || options.dataDir.length === 0) {
    throw new ValidationError(
      `'dataDir' must be a directory path: current value is '${String(options.dataDir)}'`,
    );
  }
  mkdirSync(options.dataDir, { recursive: true });
  const databasePath = join(options.dataDir, 'meridian.db');
  const database = new SqliteDatabase({
    path: databasePath,
    ...(options.durability === undefined ? {} : { durability: options.durability }),
  });
  const clock = options.runtime?.clock;
  const store = new SqliteStore({ database, ...(clock === undefined ? {} : { clock }) });
  const log = new SqliteLog(database, {
    ...(clock === undefined ? {} : { clock }),
    ...(options.runtime?.timers === undefined ? {} : { timers: options.runtime.timers }),
    ...(options.runtime?.random === undefined ? {} : { random: options.runtime.random }),
  });
  const closeStorage = async () => {
    await log.close();
    await store.close();
    database.close();
  };
  let running: RunningApp;
  try {
    running = await startApp(app, { ...options, store, log });
  } catch (error) {
    await closeStorage().catch(() => {
      // The first error is the one worth reporting.
    });
    throw error;
  }
  let closed: Promise<void> | undefined;
  return {
    ...running,
    databasePath,
    close() {
      closed ??= running.close().finally(closeStorage);
      return closed;
    },
  };
}
