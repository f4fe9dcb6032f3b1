// The runtime's public surface: definitions, the Runtime, its errors, and the commit-path
// interface a cluster shape implements. Internals (executions, runners, the group committer)
// stay internal.

// Named for steps and subscriptions: the resilience layer owns the general retry vocabulary.
export type { RetryStrategy, StepRetryOptions } from '../resilience/retry.ts';
export { RequestTimeoutError } from './cluster-node.ts';
export type { ClusterOptions } from './cluster-shape.ts';
export type { CommitPath, UnitScope } from './commit-path.ts';
export type { DeadLetter } from './dead-letters.ts';
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
} from './definitions.ts';
export { entity, saga, subscription } from './definitions.ts';
export { EmbeddedCommitPath, type EmbeddedCommitPathOptions } from './embedded.ts';
export type { EntityChange, EntityChangeListener } from './entity-changes.ts';
export { headers as recordHeaders } from './entity-command.ts';
export {
  FencedError,
  NonDeterminismError,
  SagaCancelledError,
  SagaEndedError,
  SagaNotCompletedError,
  SignalTimeoutError,
  StepFailedError,
  StepTimeoutError,
} from './errors.ts';
export type { GroupCommitStats, Yield } from './group-commit.ts';
export { yieldToEventLoop } from './group-commit.ts';
export type { PartitionView, TopicView } from './inspection.ts';
export type { MeasurementListener, RuntimeMeasurement } from './meter.ts';
export type { RetentionOptions, RetentionPeriod, RetentionStats, StorageSample } from './retention.ts';
export { createRuntime, Runtime } from './runtime.ts';
export type {
  ClusterInfo,
  RuntimeOptions,
  RuntimeProblem,
  RuntimeStats,
  SagaHandle,
  SendOptions,
  StartSagaOptions,
} from './runtime-types.ts';
export type { EntityInstance, RuntimeView } from './runtime-view.ts';
export type { SagaCancellation } from './saga-cancellation.ts';
export type { SagaCall, SagaProgress } from './saga-progress.ts';
export type { SignalDelivery } from './saga-signals.ts';
export type { SingletonContext, SingletonDefinition } from './singletons.ts';
export { deadLetterHeaders } from './subscription-runner.ts';
export type { TraceContext } from './trace.ts';
export { childTraceparent, formatTraceparent, parseTraceparent, traceparentHeader } from './trace.ts';
