import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteLog } from '../log/sqlite/sqlite-log.ts';
import { SqliteDatabase } from '../store/sqlite/database.ts';
import { SqliteStore } from '../store/sqlite/store.ts';
import {
  type Clock,
  flushMicrotasks,
  type ManualClock,
  type Random,
  systemClock,
  systemRandom,
  systemTimers,
  type Timers,
} from '../time.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from './runtime.ts';

/**
 * The embedded shape on one SQLite file, for the runtime's tests, examples and benchmark:
 * the database, the store and the log sharing it, and runtimes on top. Not part of the API.
 */
export interface EmbeddedFixture {
  readonly directory: string;
  readonly path: string;
  readonly database: SqliteDatabase;
  readonly store: SqliteStore;
  readonly log: SqliteLog;
  /** A runtime on this database; `options` adds to the fixture's clock, timers and random. */
  runtime(options?: Partial<RuntimeOptions>): Runtime;
  /** Stops the runtimes made here, closes the log, store and database; keeps the file. */
  close(): Promise<void>;
  /** Closes, then deletes the directory. */
  destroy(): Promise<void>;
}

export interface EmbeddedFixtureOptions {
  /** Reuse a directory (a restart); @default a new temporary directory */
  directory?: string;
  clock?: Clock;
  timers?: Timers;
  random?: Random;
}

export function openEmbedded(options: EmbeddedFixtureOptions = {}): EmbeddedFixture {
  const directory = options.directory ?? mkdtempSync(join(tmpdir(), 'meridian-runtime-'));
  const path = join(directory, 'meridian.db');
  const clock = options.clock ?? systemClock;
  const timers = options.timers ?? systemTimers;
  const random = options.random ?? systemRandom;
  const database = new SqliteDatabase({ path });
  const store = new SqliteStore({ database, clock });
  const log = new SqliteLog(database, { clock, timers, random, retentionCheckIntervalMs: null });
  const runtimes: Runtime[] = [];
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    for (const runtime of runtimes) await runtime.stop();
    await log.close();
    await store.close();
    await database.close();
  };
  return {
    directory,
    path,
    database,
    store,
    log,
    runtime(runtimeOptions = {}) {
      const runtime = createRuntime({ store, log, clock, timers, random, ...runtimeOptions });
      runtimes.push(runtime);
      return runtime;
    },
    close,
    async destroy() {
      await close();
      // The checkpointer thread may still be letting go of the file (its close is not awaited):
      // ENOTEMPTY is retried.
      rmSync(directory, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
    },
  };
}

/** Lets the event loop turn `count` times: promise chains and the committer's yields run. */
export async function turns(count = 20): Promise<void> {
  for (let i = 0; i < count; i++) await flushMicrotasks();
}

/**
 * Waits, in turns of the event loop (never in time), until `predicate` holds. Throws after
 * `maxTurns`, so a test waiting for something that never happens fails instead of hanging.
 */
export async function eventually(
  predicate: () => boolean | Promise<boolean>,
  maxTurns = 2000,
): Promise<void> {
  for (let turn = 0; turn < maxTurns; turn++) {
    if (await predicate()) return;
    await flushMicrotasks();
  }
  throw new Error(`The condition did not hold within ${maxTurns} turns of the event loop`);
}

/** Moves a ManualClock forward by `deltaMs` in steps of `stepMs`, letting work run after each step. */
export async function advance(clock: ManualClock, deltaMs: number, stepMs = 10): Promise<void> {
  let left = deltaMs;
  await turns(5);
  while (left > 0) {
    const step = Math.min(stepMs, left);
    clock.advance(step);
    left -= step;
    await turns(5);
  }
}
