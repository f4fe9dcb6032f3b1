/**
 * `meridian`: the app author's API — define entities, sagas and subscriptions, gather them into
 * an app, run it (`meridian dev`, `startEmbeddedApp`, or a runtime of your own), and the errors
 * that say what a retry should do. Importing it loads no integration (no HTTP server, database
 * driver or Kafka client); the rest of Meridian is in subpath exports:
 * `meridian/http`, `meridian/testing`, `meridian/runtime`, `meridian/resilience`, `meridian/log`,
 * `meridian/store`, `meridian/kafka`, `meridian/postgres`, `meridian/cluster`, `meridian/cli`
 * (docs/package.md).
 */

export { type App, type AppServices, defineApp } from './app/app.ts';
export { type EmbeddedAppOptions, type RunningEmbeddedApp, startEmbeddedApp } from './app/embedded.ts';
export { type RunningApp, type StartAppOptions, startApp } from './app/host.ts';
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
export type { RetryStrategy, StepRetryOptions } from './resilience/retry.ts';
export type { DeadLetter } from './runtime/dead-letters.ts';
export type {
  AnyEntityDefinition,
  CommandContext,
  CommandHandler,
  CommandInput,
  CommandName,
  CommandReply,
  CommandResult,
  Commands,
  Definition,
  EmitRecord,
  EntityDefinition,
  EntityEvent,
  EntityOptions,
  EntityState,
  SagaContext,
  SagaDefinition,
  SagaFailure,
  SendCompensation,
  SendOptions as SagaSendOptions,
  SignalOptions,
  StepContext,
  StepOptions,
  SubscriptionContext,
  SubscriptionDefinition,
  SubscriptionOptions,
  SubscriptionRecord,
} from './runtime/definitions.ts';
export { entity, saga, subscription } from './runtime/definitions.ts';
export type { EntityChange, EntityChangeListener } from './runtime/entity-changes.ts';
export {
  NonDeterminismError,
  SagaCancelledError,
  SagaEndedError,
  SagaNotCompletedError,
  SignalTimeoutError,
  StepFailedError,
  StepTimeoutError,
} from './runtime/errors.ts';
export { createRuntime, Runtime } from './runtime/runtime.ts';
export type {
  RuntimeOptions,
  RuntimeProblem,
  RuntimeStats,
  SagaHandle,
  SendOptions,
  StartSagaOptions,
} from './runtime/runtime-types.ts';
export type { EntityInstance, RuntimeView } from './runtime/runtime-view.ts';
export type { SagaCancellation } from './runtime/saga-cancellation.ts';
export type { SagaCall, SagaProgress } from './runtime/saga-progress.ts';
export type { SignalDelivery } from './runtime/saga-signals.ts';
export type { SingletonContext, SingletonDefinition } from './runtime/singletons.ts';
export type { JournalEntry, JournalEntryKind, Json, SagaRecord, SagaStatus } from './store/types.ts';
export type { Clock, Random, TimerHandle, Timers } from './time.ts';
export { systemClock, systemRandom, systemTimers } from './time.ts';
