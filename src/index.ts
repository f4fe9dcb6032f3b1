// Meridian's public API. Each layer exports a small, explicit surface; internals stay internal.
export { AssertionFailedError, assert } from './assert.ts';
export type { ErrorCode, MeridianErrorOptions } from './errors.ts';
export {
  AlreadyExistsError,
  ClosedError,
  ConflictError,
  ensureError,
  isMeridianError,
  isTerminalError,
  MeridianError,
  NotFoundError,
  RetryableError,
  TerminalError,
  ValidationError,
} from './errors.ts';
export type * from './log/types.ts';
export type { Durability, Migration, SqliteDatabaseOptions } from './store/sqlite/database.ts';
export { SqliteDatabase } from './store/sqlite/database.ts';
export type * from './store/types.ts';
export type { Clock, Random, TimerHandle, Timers } from './time.ts';
export { ManualClock, seededRandom, systemClock, systemRandom, systemTimers } from './time.ts';
