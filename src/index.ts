// Meridian's public API: each layer exports a small, explicit surface from its own index, and
// this file gathers them. Apps import only from here (test/architecture.test.ts checks it).
export { AssertionFailedError, assert } from './assert.ts';
export * from './cache/index.ts';
export * from './cluster/index.ts';
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
export * from './http/index.ts';
export * from './log/index.ts';
export * from './resilience/index.ts';
export * from './runtime/index.ts';
export * from './store/index.ts';
export type { Clock, Random, TimerHandle, Timers } from './time.ts';
export { ManualClock, seededRandom, systemClock, systemRandom, systemTimers } from './time.ts';
