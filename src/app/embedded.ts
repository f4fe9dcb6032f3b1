import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ValidationError } from '../errors.ts';
import type { AuthOptions, DevelopmentAuth } from '../http/index.ts';
import { SqliteLog } from '../log/sqlite/sqlite-log.ts';
import {
  claimDirectory,
  type DirectoryOwnerInfo,
  type DirectoryOwnership,
} from '../store/directory-owner.ts';
import { type Durability, SqliteDatabase } from '../store/sqlite/database.ts';
import { SqliteStore } from '../store/sqlite/store.ts';
import type { App } from './app.ts';
import { type RunningApp, type StartAppOptions, startApp } from './host.ts';

export interface EmbeddedAppOptions extends Omit<StartAppOptions, 'store' | 'log' | 'auth'> {
  /** Where the SQLite file (`meridian.db`) holding the log and the store lives; created when missing. */
  dataDir: string;
  /** What a commit survives. @default 'process' (a kill -9 loses nothing; a power cut may) */
  durability?: Durability;
  /**
   * Who may call the app's routes. @default bearer tokens signed with a secret kept in `dataDir`
   * (`auth-secret`; `devAuth.issue` signs them). `false`: every caller is an operator.
   */
  auth?: AuthOptions | false;
  /** Take `dataDir` over from a live process holding it (it is told, and should exit). @default false */
  takeOver?: boolean;
  /** Called once if another process takes `dataDir` over: close this app then. */
  onTakenOver?: (by: DirectoryOwnerInfo) => void;
}

export interface RunningEmbeddedApp extends RunningApp {
  /** The SQLite file. */
  readonly databasePath: string;
  /** Signs development tokens with the data directory's secret; undefined unless the default auth is in use. */
  readonly devAuth: DevelopmentAuth | undefined;
  /** This process's claim on the data directory (and whom it took it over from). */
  readonly ownership: DirectoryOwnership;
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
  // Before anything is opened: a second process on the directory refuses, naming the first.
  const ownership = claimDirectory(options.dataDir, {
    takeOver: options.takeOver ?? false,
    ...(options.onTakenOver === undefined ? {} : { onTakenOver: options.onTakenOver }),
  });
  const databasePath = join(options.dataDir, 'meridian.db');
  let database: SqliteDatabase;
  try {
    database = new SqliteDatabase({
      path: databasePath,
      ...(options.durability === undefined ? {} : { durability: options.durability }),
    });
  } catch (error) {
    ownership.release();
    throw error;
  }
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
    await database.close();
    ownership.release();
  };
  let running: RunningApp;
  let devAuth: DevelopmentAuth | undefined;
  try {
    // Loaded here, not when `meridian` is imported: it brings the token library with it.
    if (options.auth === undefined)
      devAuth = (await import('../http/dev-auth.ts')).developmentAuth(options.dataDir);
    running = await startApp(app, { ...options, auth: options.auth ?? devAuth!.auth, store, log });
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
    devAuth,
    ownership,
    close() {
      closed ??= running.close().finally(closeStorage);
      return closed;
    },
  };
}
