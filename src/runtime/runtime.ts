import {
  AlreadyExistsError,
  ClosedError,
  isMeridianError,
  NotFoundError,
  ValidationError,
} from '../errors.ts';
import type { Log } from '../log/types.ts';
import type { Subscription } from '../resilience/events.ts';
import { integerOption } from '../resilience/options.ts';
import { type RetryStrategy, unboundedRetryStrategy } from '../resilience/retry.ts';
import {
  endedSagaStatuses,
  type JournalEntry,
  type Json,
  type SagaRecord,
  type SagaStatus,
  type Store,
  type StoreReader,
  type StoreTransaction,
  type TimerRecord,
} from '../store/types.ts';
import { isStorageFault, type WriteHealthState } from '../store/write-health.ts';
import { type Clock, type Random, systemClock, systemRandom, systemTimers, type Timers } from '../time.ts';

// The options type stays importable from here, where the runtime's own tests take it.
export type { RuntimeOptions };

import {
  activeTraceparent,
  endSpan,
  type Span,
  startSpan,
  traceparentOf,
  withSpan,
} from '../telemetry/index.ts';
import { type ClusterRuntime, ClusterShape, normalizeClusterOptions } from './cluster-shape.ts';
import { applyWorkRequest } from './cluster-work.ts';
import type { CommitPath, UnitScope } from './commit-path.ts';
import { type DeadLetter, readDeadLetters } from './dead-letters.ts';
import type {
  AnyEntityDefinition,
  CommandInput,
  CommandName,
  CommandReply,
  Definition,
  EntityState,
  SagaDefinition,
  SubscriptionDefinition,
} from './definitions.ts';
import { Effects } from './effects.ts';
import { EmbeddedCommitPath } from './embedded.ts';
import { EntityChangeFeed, type EntityChangeListener } from './entity-changes.ts';
import { applyCommand } from './entity-command.ts';
import { FencedError, SagaNotCompletedError } from './errors.ts';
import { GroupCommitter, type Yield, yieldToEventLoop } from './group-commit.ts';
import { describeTopics, retryDeadLetter, type TopicView } from './inspection.ts';
import { type MeasurementListener, RuntimeMeter } from './meter.ts';
import { requireRuntimeId, requireRuntimeName } from './options.ts';
import { normalizeRetention, Retention } from './retention.ts';
import type {
  ClusterInfo,
  RuntimeOptions,
  RuntimeProblem,
  RuntimeStats,
  SagaHandle,
  SendOptions,
  StartSagaOptions,
} from './runtime-types.ts';
import { type EntityInstance, type RuntimeView, runtimeView } from './runtime-view.ts';
import { cancelAskedFor, cancelRequest, requestCancel, type SagaCancellation } from './saga-cancellation.ts';
import { createSaga } from './saga-creation.ts';
import { type ExecutionResult, SagaExecution, type SagaLaunch, type SagaServices } from './saga-execution.ts';
import { sagaWakeTimerKind } from './saga-journal.ts';
import type { SagaProgress } from './saga-progress.ts';
import { type LoadedSaga, SagaScheduler, type ScheduledRun } from './saga-scheduler.ts';
import { deliverSignal, type SignalDelivery, signalRequest } from './saga-signals.ts';
import { TimerScheduler } from './scheduler.ts';
import { housekeeping, leaderPartition, type SingletonDefinition, Singletons } from './singletons.ts';
import { SubscriptionRunner, type SubscriptionServices } from './subscription-runner.ts';
import { childTraceparent, formatTraceparent, newTrace, parseTraceparent } from './trace.ts';

type State = 'created' | 'starting' | 'running' | 'stopping' | 'stopped';

const maxProblems = 100;
/** After a cluster saga parked on a failed write, how long before it is resumed (while still owned). */
const resumeAfterParkMs = 200;
/** On the embedded shape, the longest wait before a saga parked by a failed write is tried again. */
const maxResumeAfterParkMs = 10_000;

/**
 * The runtime: hosts entities, sagas and subscriptions on a log and a store, and owns the one
 * path by which they change durable state (group-committed transactions). See docs/runtime.md
 * for the API and docs/guarantees.md for exactly what it promises.
 */
export class Runtime {
  readonly #store: Store;
  readonly #log: Log;
  readonly #path: CommitPath;
  readonly #committer: GroupCommitter;
  readonly #changes: EntityChangeFeed;
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #random: Random;
  readonly #yield: Yield;
  readonly #drainTimeoutMs: number;
  readonly #deadLetterTopic: string;
  /** The dead-letter topic's retention when the runtime creates it (null: forever). */
  readonly #deadLetterRetentionMs: number | null;
  readonly #defaultPartitions: number;
  /** Topics named in the options: created at start, with their partitions and retention. */
  readonly #topics: ReadonlyMap<string, TopicOptions>;
  readonly #onProblem: ((problem: RuntimeProblem) => void) | undefined;
  readonly #scheduler: TimerScheduler;
  readonly #halted = new AbortController();
  readonly #sagaServices: SagaServices;
  readonly #meter = new RuntimeMeter();
  readonly #subscriptionServices: SubscriptionServices;

  readonly #entities = new Map<string, AnyEntityDefinition>();
  readonly #sagas = new Map<string, SagaDefinition>();
  readonly #subscriptions = new Map<string, SubscriptionDefinition>();
  readonly #runners: SubscriptionRunner[] = [];
  readonly #knownTopics = new Set<string>();

  readonly #sagaScheduler: SagaScheduler;
  readonly #cluster: ClusterShape | undefined;
  readonly #singletons: Singletons;
  readonly #retention: Retention;
  readonly #problems: RuntimeProblem[] = [];
  /** Cluster shape: per saga run, aborted to abandon its steps once its partition moved away. */
  readonly #abandon = new Map<string, AbortController>();
  /** Embedded: how often each saga parked by a failed write was tried again since (its backoff). */
  readonly #parkedRetries = new Map<string, number>();
  /** How often loading each saga to resume it failed in a row (its backoff). */
  readonly #loadRetries = new Map<string, number>();
  #writesFailing = false;
  #unwatchWrites: (() => void) | undefined;
  #state: State = 'created';
  #stopped: Promise<void> | undefined;

  constructor(options: RuntimeOptions) {
    if (typeof options?.store?.transaction !== 'function' || typeof options?.log?.append !== 'function') {
      throw new ValidationError(`createRuntime needs 'store' and 'log'`);
    }
    this.#store = options.store;
    this.#log = options.log;
    this.#clock = options.clock ?? systemClock;
    this.#timers = options.timers ?? systemTimers;
    this.#random = options.random ?? systemRandom;
    this.#yield = options.yield ?? yieldToEventLoop;
    this.#cluster = this.#clusterOf(options);
    this.#path =
      this.#cluster?.path ??
      options.commitPath ??
      new EmbeddedCommitPath({ store: options.store, log: options.log, clock: this.#clock });
    this.#changes = new EntityChangeFeed((error) =>
      this.#report({ message: 'an onEntityChanges listener threw; the commit stands', error }),
    );
    this.#committer = new GroupCommitter(this.#path, {
      changes: this.#changes,
      ...(options.maxUnitsPerTransaction === undefined
        ? {}
        : { maxUnitsPerTransaction: options.maxUnitsPerTransaction }),
      ...(options.yield === undefined ? {} : { yield: options.yield }),
      lingerMs: integerOption('commitLingerMs', options.commitLingerMs, 0, 0, 1000),
      timers: this.#timers,
      clock: this.#clock,
      onCommit: (units, durationMs, ok) => this.#meter.emit({ kind: 'commit', units, durationMs, ok }),
    });
    this.#sagaScheduler = new SagaScheduler({
      maxActive: integerOption('maxActiveSagas', options.maxActiveSagas, 10_000, 1, 1_000_000),
      load: (sagaId) => this.#loadSagaOrRetryLater(sagaId),
      execute: (loaded, parking) => this.#execute(loaded, parking),
      report: (problem) => this.#report(problem),
    });
    this.#drainTimeoutMs = integerOption('drainTimeoutMs', options.drainTimeoutMs, 10_000, 0, 600_000);
    this.#deadLetterTopic = requireRuntimeName(
      `'deadLetterTopic'`,
      options.deadLetterTopic ?? 'meridian.dead-letters',
    );
    this.#defaultPartitions = integerOption('defaultPartitions', options.defaultPartitions, 8, 1, 1024);
    this.#topics = topicConfigs(options.topics);
    this.#onProblem = options.onProblem;
    this.#scheduler = new TimerScheduler({
      committer: this.#committer,
      clock: this.#clock,
      timers: this.#timers,
      onDue: (timers) => this.#timersDue(timers),
      onError: (error) => this.#report({ message: 'firing durable timers failed; retrying', error }),
      ...(this.#cluster === undefined
        ? {}
        : {
            partitions: () => this.#cluster!.ownership.owned(),
            inTransaction: (scope, due) => this.#cluster!.redeliver(scope, due),
          }),
    });
    const effects = new Effects({
      committer: this.#committer,
      clock: this.#clock,
      timers: this.#timers,
      random: this.#random,
    });
    this.#singletons = new Singletons(effects, (problem) => this.#report(problem));
    if (this.#cluster !== undefined) {
      this.#singletons.add(housekeeping(this.#cluster.options.housekeeping, () => this.#clock.now()));
    }
    const retention = normalizeRetention(options.retention);
    this.#deadLetterRetentionMs = retention.deadLetterMs === 'forever' ? null : retention.deadLetterMs;
    this.#retention = new Retention(retention, {
      store: this.#store,
      now: () => this.#clock.now(),
      sagaTypes: () => this.#sagas.keys(),
    });
    if (retention.enabled) this.#singletons.add(this.#retention.singleton());
    this.#sagaServices = this.#makeSagaServices(effects, compensationRetryOf(options.compensationRetry));
    this.#subscriptionServices = this.#makeSubscriptionServices(effects);
  }

  #makeSagaServices(effects: Effects, compensationRetry: RetryStrategy): SagaServices {
    return {
      effects,
      sleeps: {
        scheduled: (dueAt) => this.#scheduler.notify(dueAt),
        sleep: (sagaId, wakeAt) => this.#sagaScheduler.sleep(sagaId, wakeAt),
        wake: (sagaId) => this.#sagaScheduler.wake(sagaId),
      },
      ensureTopic: (topic) => this.#ensureTopic(topic, this.#defaultPartitions),
      compensationRetry,
      halted: this.#halted.signal,
      report: (problem) => this.#report(problem),
      measure: (measurement) => this.#meter.emit(measurement),
      yield: this.#yield,
      ...(this.#cluster === undefined ? {} : { remote: this.#cluster.remoteEntities() }),
    };
  }

  #makeSubscriptionServices(effects: Effects): SubscriptionServices {
    return {
      effects,
      log: this.#log,
      deadLetterTopic: this.#deadLetterTopic,
      sagas: {
        create: (scope, saga, id, input, traceparent) =>
          createSaga(scope, this.#saga(saga), id, input, traceparent, this.#clock.now()),
        launch: (launches) => {
          for (const launch of launches) this.#sagaScheduler.enqueue(launch);
        },
      },
      report: (problem) => this.#report(problem),
      fenced: (error) => {
        this.#report({ message: 'a subscription was fenced', error });
        return this.#cluster === undefined;
      },
      ...(this.#cluster === undefined ? {} : { remote: this.#cluster.remoteSubscriptionEffects() }),
    };
  }

  /** Adds definitions. Only before `start`. Returns the runtime, for chaining. */
  register(...definitions: Definition[]): this {
    if (this.#state !== 'created') throw new ValidationError('Register definitions before start()');
    for (const definition of definitions) {
      const registry: Map<string, Definition> | undefined =
        definition?.kind === 'entity'
          ? this.#entities
          : definition?.kind === 'saga'
            ? this.#sagas
            : definition?.kind === 'subscription'
              ? this.#subscriptions
              : undefined;
      if (registry === undefined) {
        throw new ValidationError(`register() takes definitions made by entity(), saga() or subscription()`);
      }
      const existing = registry.get(definition.name);
      if (existing !== undefined && existing !== definition) {
        throw new AlreadyExistsError(`Another ${definition.kind} named '${definition.name}' is registered`);
      }
      (registry as Map<string, Definition>).set(definition.name, definition);
    }
    return this;
  }

  /**
   * Adds work that must run on one node at a time (cleanup, retention, anything not
   * partitioned): it runs on the leader — the owner of work partition 0 on the cluster shape,
   * the runtime itself on the embedded shape — and its transactions are fenced by the leader's
   * epoch. Only before `start`. Returns the runtime, for chaining.
   */
  singleton(definition: SingletonDefinition): this {
    if (this.#state !== 'created') throw new ValidationError('Add singletons before start()');
    this.#singletons.add(definition);
    return this;
  }

  /** True while this node runs the singletons (always, once started, on the embedded shape). */
  get leader(): boolean {
    return this.#singletons.leading;
  }

  /**
   * Claims ownership (fencing any earlier runtime on the same store), creates the topics it
   * needs, fires due timers, resumes every running saga, and starts the subscriptions.
   */
  async start(): Promise<void> {
    if (this.#state !== 'created')
      throw new ValidationError(`start() was called twice (state is '${this.#state}')`);
    this.#state = 'starting';
    await this.#path.open();
    await this.#ensureTopic(this.#deadLetterTopic, this.#defaultPartitions, this.#deadLetterRetentionMs);
    for (const [topic, config] of this.#topics) {
      await this.#ensureTopic(topic, config.partitions ?? this.#defaultPartitions);
    }
    for (const definition of this.#entities.values()) {
      await this.#ensureTopic(definition.eventsTopic, definition.partitions);
    }
    for (const definition of this.#subscriptions.values()) {
      await this.#ensureTopic(definition.topic, definition.partitions);
    }
    this.#state = 'running';
    this.#sagaScheduler.open();
    await this.#scheduler.start();
    if (this.#cluster === undefined) await this.#resumeAll();
    else await this.#cluster.start(this.#committer, this.#clusterRuntime());
    for (const definition of this.#subscriptions.values()) {
      const runner = new SubscriptionRunner(this.#subscriptionServices, definition);
      this.#runners.push(runner);
      runner.start();
    }
    if (this.#cluster === undefined) this.#singletons.lead();
    this.#unwatchWrites = this.#store.onWriteHealth((state) => this.#writeHealthChanged(state));
  }

  /**
   * Told once when the store's writes start failing for a storage fault (disk full, read-only,
   * I/O error) and once when they succeed again; in between, sagas that park on a failed write
   * are not reported one by one. On recovery every saga parked in the store resumes at once.
   */
  #writeHealthChanged(state: WriteHealthState): void {
    this.#writesFailing = !state.ok;
    if (!state.ok) {
      this.#report({
        message:
          'store writes are failing (disk full, read-only or I/O error?): sagas park and resume once writes succeed; readiness fails meanwhile',
        error: state.cause,
      });
      return;
    }
    this.#report({ message: 'store writes succeed again: parked sagas resume', error: 'recovered' });
    if (this.#state === 'running' && this.#cluster === undefined) {
      this.#resumeAll().catch((error: unknown) =>
        this.#report({ message: 'resuming parked sagas failed; they resume on the next retry', error }),
      );
    }
  }

  /**
   * Graceful drain: refuses new work, lets subscriptions finish their batch, lets running steps
   * finish (up to `drainTimeoutMs`) and journals their results, then parks every saga where it
   * is. Parked sagas resume on the next start. Does not close the store or the log.
   */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    const wasRunning = this.#state === 'running';
    this.#state = 'stopping';
    this.#unwatchWrites?.();
    this.#sagaScheduler.stop();
    await this.#singletons.abdicate();
    if (wasRunning) {
      await Promise.all(this.#runners.map((runner) => runner.stop()));
    }
    if (wasRunning && this.#drainTimeoutMs > 0) {
      await this.#settlesWithin(this.#sagaScheduler.idle(), this.#drainTimeoutMs);
    }
    // Abandon the steps still running after the drain before leaving the cluster: leaving
    // evicts every saga and waits for its run to end, and a step ends early only on this halt.
    this.#halted.abort();
    await this.#scheduler.stop();
    // Let the units already submitted commit while this node still owns their partitions:
    // leaving releases them, and a unit committing after that would be refused.
    await this.#committer.close();
    if (wasRunning) await this.#leaveCluster();
    this.#state = 'stopped';
    this.#sagaScheduler.rejectWaiters(
      (id) => new ClosedError(`The runtime stopped before saga '${id}' ended; it resumes on the next start`),
    );
  }

  // -------------------------------------------------------------------------------------------
  // Entities

  /**
   * Sends a command to an entity and returns its reply once the command's state and events
   * have committed. A rejected command throws the handler's error, and changes nothing.
   */
  async send<E extends AnyEntityDefinition, K extends CommandName<E>>(
    entity: E,
    id: string,
    command: K,
    input: CommandInput<E, K>,
    options: SendOptions = {},
  ): Promise<CommandReply<E, K>> {
    this.#assertRunning();
    const definition = this.#entity(entity);
    requireRuntimeId(`The id of entity '${definition.name}'`, id);
    const span = startSpan(`entity.command ${definition.name}.${command}`, {
      parent: options.traceparent,
      attributes: {
        'meridian.entity': definition.name,
        'meridian.entity.id': id,
        'meridian.command': command,
      },
    });
    try {
      const reply = await withSpan(span, () => this.#send(definition, id, command, input, span, options));
      endSpan(span);
      return reply as CommandReply<E, K>;
    } catch (error) {
      endSpan(span, error);
      throw error;
    }
  }

  async #send(
    definition: AnyEntityDefinition,
    id: string,
    command: string,
    input: unknown,
    span: Span,
    options: SendOptions,
  ): Promise<unknown> {
    const traceparent = traceparentOf(span, () =>
      formatTraceparent(
        parseTraceparent(options.traceparent ?? activeTraceparent()) ?? newTrace(this.#random),
      ),
    );
    // Another node owns the id's partition (or took it over meanwhile): its owner applies it.
    const routed = () => this.#cluster!.routeSend(definition.name, id, command, input, traceparent);
    if (this.#cluster !== undefined && !this.#cluster.ownsId(id)) return routed();
    const nowMs = this.#clock.now();
    let outcome: Awaited<ReturnType<typeof applyCommand>>;
    try {
      outcome = await this.#committer.submit(
        (scope) =>
          applyCommand(scope, {
            entity: definition,
            id,
            command,
            input,
            traceparent,
            nowMs,
            random: this.#random,
          }),
        { reads: [{ entity: definition.name, id }] },
      );
    } catch (error) {
      if (this.#cluster !== undefined && isMeridianError(error) && error.code === 'NOT_OWNED')
        return routed();
      // A fenced runtime stops (embedded) or gives the partition up (cluster).
      if (error instanceof FencedError) this.#report({ message: 'a command was fenced', error });
      throw error;
    }
    if (!outcome.ok) throw outcome.error;
    return outcome.reply;
  }

  /**
   * Calls `listener` after each transaction of this runtime whose entity commands (sent directly,
   * by sagas, by subscriptions or routed from other nodes) changed entities has committed (on the
   * cluster shape: of this node, which owns those entities), with one change per entity:
   * its version and state before and after. It runs before the callers on this node whose work
   * the transaction held resume, so a cache invalidated here is invalidated before a `send` that
   * changed the entity resolves (a `send` routed here from another node may see its reply first). For invalidating derived data (`bindEntityChanges` in
   * meridian/cache); the events topic remains the durable record of changes. The listener must
   * not throw (a throw is reported as a problem) nor do slow work: it holds the commit up.
   */
  onEntityChanges(listener: EntityChangeListener): Subscription {
    return this.#changes.subscribe(listener);
  }

  /**
   * Runs `work` as one unit of the runtime's group commit: in its own savepoint of a
   * transaction shared with the entity commands, journal entries and records committing at the
   * same time, fenced like every runtime write. Resolves (or rejects) once that transaction's
   * outcome is known, so nobody acts on what `work` saw or wrote before it is durable. For
   * small reads and writes that would otherwise each pay a transaction of their own
   * (Idempotency-Key records, read models). `work` must not do I/O: it holds the writer.
   */
  async transaction<T>(work: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    this.#assertRunning();
    return this.#committer.submit((scope) => work(scope.tx));
  }

  /**
   * Runs `work` on one consistent snapshot of committed state (`Store.read`): it takes no place
   * in the group commit and never waits for the writer, so status endpoints and read models can
   * be asked often without slowing the writes down. What it reads agrees with itself, and
   * includes everything whose call (a send, a saga start) has resolved.
   */
  async read<T>(work: (tx: StoreReader, view: RuntimeView) => Promise<T>): Promise<T> {
    return this.#store.read((tx) => work(tx, this.#view(tx)));
  }

  /** An entity's committed state, version and last write, or null when it was never written. */
  async state<E extends AnyEntityDefinition>(
    entity: E,
    id: string,
  ): Promise<{ state: EntityState<E>; version: number; updatedAt: number } | null> {
    return this.read((_tx, view) => view.state(entity, id));
  }

  /**
   * A page of an entity type's instances ordered by id, after `afterId` (at most `limit`, 1 to
   * 1000, default 100), with their typed state, on a snapshot of committed state.
   */
  async list<E extends AnyEntityDefinition>(
    entity: E,
    options: { afterId?: string; limit?: number } = {},
  ): Promise<Array<EntityInstance<E>>> {
    return this.read((_tx, view) => view.list(entity, options));
  }

  #view(tx: StoreReader): RuntimeView {
    return runtimeView(tx, (definition) => this.#entity(definition), this.#entities);
  }

  // -------------------------------------------------------------------------------------------
  // Sagas

  /**
   * Starts a saga, idempotently: the first call with an id creates it (durably, before this
   * resolves) and runs it; later calls with the same id and input return a handle to the same
   * saga. The same id with another saga type or input is a ConflictError.
   */
  async startSaga<I, O>(
    saga: SagaDefinition<I, O>,
    id: string,
    input: I,
    options: StartSagaOptions = {},
  ): Promise<SagaHandle<O>> {
    this.#assertRunning();
    const definition = this.#saga(saga);
    requireRuntimeId('A saga id', id);
    // The saga's start is a short span of its own: its steps, hours later perhaps, are its children.
    const span = startSpan(`saga.start ${definition.name}`, {
      parent: options.traceparent,
      attributes: { 'meridian.saga.id': id, 'meridian.saga.type': definition.name },
    });
    try {
      const traceparent = traceparentOf(span, () =>
        childTraceparent(options.traceparent ?? activeTraceparent(), this.#random),
      );
      await withSpan(span, () => this.#startSaga(definition, id, input, traceparent));
      endSpan(span);
    } catch (error) {
      endSpan(span, error);
      throw error;
    }
    return this.#handle<O>(id);
  }

  async #startSaga(
    definition: SagaDefinition,
    id: string,
    input: unknown,
    traceparent: string,
  ): Promise<void> {
    if (this.#cluster !== undefined && !this.#cluster.ownsId(id)) {
      await this.#cluster.routeStart(definition.name, id, input, traceparent);
      return;
    }
    let launch: SagaLaunch | null;
    try {
      launch = await this.#committer.submit((scope) =>
        createSaga(scope, definition, id, input, traceparent, this.#clock.now()),
      );
    } catch (error) {
      if (this.#cluster === undefined || !isMeridianError(error) || error.code !== 'NOT_OWNED') throw error;
      await this.#cluster.routeStart(definition.name, id, input, traceparent);
      return;
    }
    if (launch !== null) this.#sagaScheduler.enqueue(launch);
  }

  /** A handle to an existing saga. */
  handle<O = unknown>(id: string): SagaHandle<O> {
    requireRuntimeId('A saga id', id);
    return this.#handle<O>(id);
  }

  /** One saga's record, or null. */
  async saga(id: string): Promise<SagaRecord | null> {
    requireRuntimeId('A saga id', id);
    return this.#store.read((tx) => tx.sagas.get(id));
  }

  /** A page of sagas ordered by id, filtered by status and/or type. */
  async sagas(
    options: { status?: SagaStatus; type?: string; limit?: number; afterId?: string } = {},
  ): Promise<SagaRecord[]> {
    return this.#store.read((tx) => tx.sagas.list(options));
  }

  /**
   * What a saga is doing and did, as typed data: its status, output or failure, and its finished
   * calls (steps with results, sends with replies, sleeps, signals, emits, compensations), read
   * on one snapshot. Null when there is no such saga. The way to show a saga's progress: the
   * journal's entries and names are the runtime's own.
   */
  async progress(id: string): Promise<SagaProgress | null> {
    return this.read((_tx, view) => view.progress(id));
  }

  /**
   * Delivers signal `name` with `value` (JSON) to saga `sagaId`, which takes it with
   * `ctx.waitForSignal(name)` — now if it waits, later if it has not reached the wait yet. Any
   * node can deliver it: the owner of the saga's partition keeps it. Durable once this resolves.
   * Resolves 'delivered', or 'duplicate' (changing nothing) when that name was delivered before;
   * NotFoundError when the saga does not exist or has ended.
   */
  async signal(sagaId: string, name: string, value?: unknown): Promise<SignalDelivery> {
    this.#assertRunning();
    const request = signalRequest(sagaId, name, value);
    const delivered = await this.#atSagaOwner(
      sagaId,
      (scope) => deliverSignal(scope, sagaId, name, request.value),
      () => this.#cluster!.routeSignal(sagaId, name, request.value),
    );
    if (delivered.here && delivered.result === 'delivered') this.#sagaScheduler.signal(sagaId);
    return delivered.result;
  }

  /**
   * Asks saga `sagaId` to cancel, from any node: the request is durable once this resolves, and
   * the owner of the saga's partition keeps it. The saga stops at its next durable boundary (a
   * call not yet started, a sleep, a signal wait — which ends at once, not at its timeout; a
   * step already running finishes first), compensates its finished steps as after a failure,
   * and ends `cancelled` (`handle.result()` rejects with SagaNotCompletedError, code
   * SAGA_CANCELLED). Resolves 'requested', or 'duplicate' (changing nothing) when it was asked
   * before or the saga ended cancelled; NotFoundError when there is no such saga, SagaEndedError
   * when it ended otherwise (completed, compensated, failed). A saga already compensating ends
   * compensated: the cancellation would undo what is being undone.
   */
  async cancelSaga(sagaId: string, options: { reason?: string } = {}): Promise<SagaCancellation> {
    this.#assertRunning();
    const { reason } = cancelRequest(sagaId, options?.reason);
    const asked = await this.#atSagaOwner(
      sagaId,
      (scope) => requestCancel(scope, sagaId, reason, this.#clock.now()),
      () => this.#cluster!.routeCancel(sagaId, reason),
    );
    if (asked.here && asked.result === 'requested') this.#sagaScheduler.cancel(sagaId, reason);
    return asked.result;
  }

  /**
   * Runs `deliver` for saga `sagaId` in a unit here when this node owns its partition (always,
   * embedded), else `route`s it to the owner (also when the partition moved meanwhile). `here`
   * tells whether this node's scheduler should hear of it.
   */
  async #atSagaOwner<T>(
    sagaId: string,
    deliver: (scope: UnitScope) => Promise<T | Error>,
    route: () => Promise<Json>,
  ): Promise<{ result: T; here: boolean }> {
    const routed = async () => ({ result: (await route()) as T, here: false });
    if (this.#cluster !== undefined && !this.#cluster.ownsId(sagaId)) return routed();
    let result: T | Error;
    try {
      result = await this.#committer.submit(deliver);
    } catch (error) {
      if (this.#cluster !== undefined && isMeridianError(error) && error.code === 'NOT_OWNED')
        return routed();
      throw error;
    }
    if (result instanceof Error) throw result;
    return { result, here: true };
  }

  /** One saga's journal, in order: every step, send, sleep, emit and compensation it ran. */
  async journal(id: string): Promise<JournalEntry[]> {
    requireRuntimeId('A saga id', id);
    return this.#store.read((tx) => tx.sagas.journal(id));
  }

  // -------------------------------------------------------------------------------------------
  // Dead letters, problems, stats

  /** Dead letters, oldest first per partition of the dead-letter topic; optionally of one subscription. */
  deadLetters(options: { subscription?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    return readDeadLetters(this.#log, this.#deadLetterTopic, options);
  }

  /**
   * Puts a dead letter (where it sits on the dead-letter topic: `DeadLetter.deadLetter`) back on
   * its topic, so its subscription handles it again; resolves where it was appended. Retrying
   * one twice delivers it twice.
   */
  retryDeadLetter(where: {
    partition: number;
    offset: number;
  }): Promise<{ topic: string; partition: number; offset: number }> {
    this.#assertRunning();
    return retryDeadLetter(this.#log, this.#deadLetterTopic, where);
  }

  /** The log's topics: partitions, offsets, and the lag of this runtime's subscriptions' groups. */
  topics(): Promise<TopicView[]> {
    return describeTopics(
      this.#log,
      this.#runners.map((runner) => runner.definition),
    );
  }

  /**
   * True between the end of `start` and the beginning of `stop` (including a stop the runtime
   * began itself after being fenced): what a readiness probe asks.
   */
  get running(): boolean {
    return this.#state === 'running';
  }

  /** The most recent operating problems (at most 100), oldest first. */
  problems(): readonly RuntimeProblem[] {
    return [...this.#problems];
  }

  /**
   * Sagas running or queued to run (not those sleeping on a timer): the depth a backpressure
   * check such as a gateway route's `backlog` compares with its bound. Cheaper than `stats`.
   */
  get sagasInProgress(): number {
    return this.#sagaScheduler.inProgress;
  }

  get stats(): RuntimeStats {
    const subscriptions: Record<string, { handled: number; deadLettered: number }> = {};
    for (const runner of this.#runners) subscriptions[runner.definition.name] = runner.stats;
    const sagas = this.#sagaScheduler.stats;
    return {
      activeSagas: sagas.active,
      sleepingSagas: sagas.sleeping,
      queuedSagas: sagas.queued,
      commits: this.#committer.stats,
      subscriptions,
      retention: this.#retention.stats,
    };
  }

  /**
   * Calls `listener` with what the runtime measures (saga ends and durations, step attempts,
   * compensations, transactions with their size and duration) until disposed: how metrics watch it.
   */
  onMeasurement(listener: MeasurementListener): { dispose(): void } {
    return this.#meter.on(listener);
  }

  /** This node's view of the cluster; undefined on the embedded shape. */
  get cluster(): ClusterInfo | undefined {
    const cluster = this.#cluster;
    if (cluster === undefined) return undefined;
    return {
      node: cluster.options.node,
      workPartitions: cluster.options.workPartitions,
      owned: () => cluster.ownership.owned(),
      partitionOf: (id) => cluster.ownership.partitionOf(id),
      get published() {
        return cluster.relay.published;
      },
      claims: () => this.#store.read((tx) => tx.partitions.list()),
    };
  }

  // -------------------------------------------------------------------------------------------
  // The cluster shape

  #clusterOf(options: RuntimeOptions): ClusterShape | undefined {
    if (options.cluster === undefined) return undefined;
    if (options.commitPath !== undefined) {
      throw new ValidationError(
        `Give either 'cluster' or 'commitPath', not both: a cluster node brings its own commit path`,
      );
    }
    return new ClusterShape({
      store: options.store,
      log: options.log,
      clock: this.#clock,
      timers: this.#timers,
      random: this.#random,
      options: normalizeClusterOptions(options.cluster),
      report: (problem) => this.#report(problem),
      timerScheduled: (dueAt) => this.#scheduler.notify(dueAt),
    });
  }

  /** What the cluster shape calls back into: resume, evict, apply routed work. */
  #clusterRuntime(): ClusterRuntime {
    const cluster = this.#cluster!;
    return {
      resume: async (partitions) => {
        // An assignment that lands while the runtime stops: nothing to resume, the committer is
        // closed, and leaving releases the partitions again.
        if (this.#state !== 'running') return;
        await this.#resumeAll(partitions);
        await this.#scheduler.refresh();
        if (partitions.includes(leaderPartition) && this.#state === 'running') this.#singletons.lead();
      },
      evict: async (partitions) => {
        if (partitions.has(leaderPartition)) await this.#singletons.abdicate();
        const moved = (id: string) => partitions.has(cluster.ownership.partitionOf(id));
        const evicting = this.#sagaScheduler.evict(moved);
        if (await this.#settlesWithin(evicting, this.#drainTimeoutMs)) return;
        // Steps still running when the drain time is up are abandoned, as on stop: nothing they
        // return could be journaled here any more, and the partition's new owner runs them again.
        // Waiting longer would hold up every later assignment change and this node's requests.
        for (const [id, abandon] of this.#abandon) if (moved(id)) abandon.abort();
        await evicting;
      },
      apply: (scope, request) =>
        applyWorkRequest(
          {
            node: cluster.options.node,
            entities: this.#entities,
            sagas: this.#sagas,
            runners: this.#runners,
            clock: this.#clock,
            random: this.#random,
            launch: (launch) => this.#sagaScheduler.enqueue(launch),
            signalled: (sagaId) => this.#sagaScheduler.signal(sagaId),
            cancelled: (sagaId, reason) => this.#sagaScheduler.cancel(sagaId, reason),
          },
          scope,
          request,
        ),
      report: (problem) => this.#report(problem),
    };
  }

  /** A saga run; on the cluster shape one parked by a failed write is resumed while this node owns it. */
  #execute(loaded: LoadedSaga, parking: AbortSignal): ScheduledRun {
    const cluster = this.#cluster;
    if (cluster === undefined) return this.#executeEmbedded(loaded, parking);
    // On the cluster shape a run's steps are also abandoned when its partition moved away and
    // the drain time is up (see `evict`), not only when the runtime halts.
    const abandon = new AbortController();
    const services = {
      ...this.#sagaServices,
      halted: AbortSignal.any([this.#halted.signal, abandon.signal]),
    };
    const execution = newExecution(services, loaded, parking);
    const sagaId = loaded.record.id;
    return {
      ...execution.notifications,
      run: async () => {
        this.#abandon.set(sagaId, abandon);
        let result: ExecutionResult;
        try {
          result = await execution.run();
        } finally {
          if (this.#abandon.get(sagaId) === abandon) this.#abandon.delete(sagaId);
        }
        if (
          result.outcome === 'parked' &&
          !parking.aborted &&
          this.#state === 'running' &&
          cluster.ownsId(sagaId)
        ) {
          this.#timers.setTimeout(() => this.#sagaScheduler.enqueue({ sagaId }), resumeAfterParkMs);
        }
        return result;
      },
    };
  }

  /**
   * An embedded saga run. One parked by a failed write (not by a stop) is tried again while the
   * runtime runs, after 1 s, 2 s, 4 s... (at most 10 s): a full disk that is cleared lets it go
   * on without a restart, and the retries themselves are what notice that writes succeed again.
   */
  #executeEmbedded(loaded: LoadedSaga, parking: AbortSignal): ScheduledRun {
    const execution = newExecution(this.#sagaServices, loaded, parking);
    const sagaId = loaded.record.id;
    return {
      ...execution.notifications,
      run: async () => {
        const result = await execution.run();
        if (result.outcome !== 'parked' || parking.aborted || this.#state !== 'running') {
          this.#parkedRetries.delete(sagaId);
          return result;
        }
        const retries = this.#parkedRetries.get(sagaId) ?? 0;
        this.#parkedRetries.set(sagaId, retries + 1);
        const delayMs = Math.min(maxResumeAfterParkMs, 1000 * 2 ** Math.min(retries, 10));
        this.#timers.setTimeout(() => {
          if (this.#state === 'running') this.#sagaScheduler.enqueue({ sagaId });
        }, delayMs);
        return result;
      },
    };
  }

  /** True when `work` settled within `ms` (on the runtime's timers). */
  async #settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
    if (ms === 0) return false;
    let timer: { cancel(): void } | undefined;
    const late = new Promise<false>((resolve) => {
      timer = this.#timers.setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([work.then(() => true), late]);
    } finally {
      timer?.cancel();
    }
  }

  /** Hands this node's partitions over (cluster shape) once its own work has drained. */
  async #leaveCluster(): Promise<void> {
    try {
      await this.#cluster?.stop();
    } catch (error) {
      this.#report({
        message: 'leaving the cluster failed; the group will move the partitions anyway',
        error,
      });
    }
  }

  /** Another node claimed some of our partitions: stop writing for them and park their sagas. */
  async #fenced(error: FencedError): Promise<void> {
    const cluster = this.#cluster!;
    const partitions = (error.details.partitions as number[] | undefined) ?? [];
    cluster.ownership.release(partitions);
    if (partitions.includes(leaderPartition)) await this.#singletons.abdicate();
    await this.#sagaScheduler.evict((id) => partitions.includes(cluster.ownership.partitionOf(id)));
  }

  // -------------------------------------------------------------------------------------------
  // Internals

  #assertRunning(): void {
    if (this.#state === 'running') return;
    if (this.#state === 'created' || this.#state === 'starting') {
      throw new ValidationError('The runtime is not started: call start() first');
    }
    throw new ClosedError('The runtime is stopped');
  }

  #entity(entity: AnyEntityDefinition): AnyEntityDefinition {
    return registered('Entity', this.#entities, entity);
  }

  #saga(saga: SagaDefinition): SagaDefinition {
    return registered('Saga', this.#sagas, saga);
  }

  #handle<O>(id: string): SagaHandle<O> {
    return {
      id,
      result: (options) => this.#result<O>(id, options?.signal),
      record: async () => {
        const record = await this.saga(id);
        if (record === null) throw new NotFoundError(`Saga '${id}' does not exist`);
        return record;
      },
    };
  }

  async #result<O>(id: string, signal: AbortSignal | undefined): Promise<O> {
    signal?.throwIfAborted();
    let result: ExecutionResult | Error;
    if (this.#sagaScheduler.has(id)) {
      result = await this.#sagaScheduler.settled(id, signal);
    } else if (this.#cluster !== undefined && !this.#cluster.ownsId(id)) {
      // Another node runs it: wait for its end (the wait reads the saga first).
      result = await this.#cluster.awaitSagaEnd(id, signal);
    } else {
      const record = await this.saga(id);
      if (record === null) throw new NotFoundError(`Saga '${id}' does not exist`);
      if (endedSagaStatuses.has(record.status)) {
        result = {
          outcome: record.status as ExecutionResult['outcome'],
          output: record.output,
          reason: record.reason,
        };
      } else {
        // Running in the store but not here (parked after an error): resume it.
        this.#assertRunning();
        this.#sagaScheduler.enqueue({ sagaId: id });
        result = await this.#sagaScheduler.settled(id, signal);
      }
    }
    if (result instanceof Error) throw result;
    if (result.outcome === 'completed') return result.output as O;
    if (result.outcome === 'parked') {
      throw new ClosedError(
        `Saga '${id}' was parked (the runtime is stopping, or a write failed); it resumes on the next start`,
      );
    }
    throw new SagaNotCompletedError(id, result.outcome, result.reason ?? 'unknown reason');
  }

  /** A saga to resume: loaded, its end when it has ended, or null (reported) when its type is unknown. */
  /**
   * Loads a saga to resume it. When the store fails (a PostgreSQL failover, a full disk), the
   * saga is queued again after 200 ms, 400 ms, ... (at most 10 s) while the runtime runs and,
   * on the cluster shape, owns it: without that, a saga parked by a failed write whose resume
   * also failed would stay running in the store, untouched until its partition moved.
   */
  async #loadSagaOrRetryLater(sagaId: string): Promise<LoadedSaga | ExecutionResult | null> {
    try {
      const loaded = await this.#loadSaga(sagaId);
      this.#loadRetries.delete(sagaId);
      return loaded;
    } catch (error) {
      const retries = this.#loadRetries.get(sagaId) ?? 0;
      const wanted = () => this.#state === 'running' && (this.#cluster?.ownsId(sagaId) ?? true);
      if (wanted()) {
        this.#loadRetries.set(sagaId, retries + 1);
        const delayMs = Math.min(maxResumeAfterParkMs, resumeAfterParkMs * 2 ** Math.min(retries, 10));
        this.#timers.setTimeout(() => {
          if (wanted()) this.#sagaScheduler.enqueue({ sagaId });
          else this.#loadRetries.delete(sagaId);
        }, delayMs);
      } else {
        this.#loadRetries.delete(sagaId);
      }
      throw error;
    }
  }

  async #loadSaga(sagaId: string): Promise<LoadedSaga | ExecutionResult | null> {
    const found = await this.#store.read(async (tx) => {
      const record = await tx.sagas.get(sagaId);
      if (record === null) return null;
      const cancelReason = endedSagaStatuses.has(record.status)
        ? undefined
        : await cancelAskedFor(tx, sagaId);
      return {
        record,
        journal: await tx.sagas.journal(sagaId),
        ...(cancelReason === undefined ? {} : { cancelReason }),
      };
    });
    if (found === null) return null;
    if (endedSagaStatuses.has(found.record.status)) {
      return {
        outcome: found.record.status as ExecutionResult['outcome'],
        output: found.record.output,
        reason: found.record.reason,
      };
    }
    const definition = this.#sagas.get(found.record.type);
    if (definition === undefined) {
      this.#report({
        sagaId,
        message: `saga type '${found.record.type}' is not registered; the saga waits, running, until it is`,
        error: new NotFoundError(`Saga type '${found.record.type}' is not registered`),
      });
      return null;
    }
    return { definition, ...found };
  }

  #timersDue(timers: readonly TimerRecord[]): void {
    const nowMs = this.#clock.now();
    for (const timer of timers) {
      if (timer.kind !== sagaWakeTimerKind) continue;
      const sagaId = (timer.payload as { sagaId?: unknown } | null)?.sagaId;
      if (typeof sagaId !== 'string') continue;
      this.#sagaScheduler.timerFired(sagaId, nowMs);
    }
  }

  /** Resumes every running and compensating saga (of `partitions` only, when given). */
  async #resumeAll(partitions?: readonly number[]): Promise<void> {
    for (const status of ['compensating', 'running'] as const) {
      let afterId: string | undefined;
      for (;;) {
        const page = await this.#store.read((tx) =>
          tx.sagas.list({
            status,
            limit: 1000,
            ...(afterId === undefined ? {} : { afterId }),
            ...(partitions === undefined ? {} : { partitions }),
          }),
        );
        this.#sagaScheduler.resume(page.map((record) => record.id));
        if (page.length < 1000) break;
        afterId = page[page.length - 1]!.id;
      }
    }
  }

  /**
   * Creates `topic` unless it exists. The `topics` option, when it names the topic, decides its
   * partitions and retention; else `partitions`, and `retentionMs` (absent: the log's default).
   */
  async #ensureTopic(
    topic: string,
    defaultPartitions: number,
    defaultRetentionMs?: number | null,
  ): Promise<void> {
    const configured = this.#topics.get(topic);
    const partitions = configured?.partitions ?? defaultPartitions;
    const retentionMs = configured?.retentionMs === undefined ? defaultRetentionMs : configured.retentionMs;
    if (this.#knownTopics.has(topic)) return;
    try {
      await this.#log.describeTopic(topic);
    } catch (error) {
      if (!(error instanceof NotFoundError) && !(isMeridianError(error) && error.code === 'NOT_FOUND'))
        throw error;
      try {
        await this.#log.createTopic(topic, {
          partitions,
          ...(retentionMs === undefined ? {} : { retentionMs }),
        });
      } catch (createError) {
        // Someone created it meanwhile (with whatever partitions): it exists, which is all we need.
        if (!(createError instanceof AlreadyExistsError)) throw createError;
      }
    }
    this.#knownTopics.add(topic);
  }

  #report(problem: { message: string; error: unknown; sagaId?: string; subscription?: string }): void {
    // While writes fail for a storage fault, that one fault was reported: not each saga it parks.
    if (this.#writesFailing && isStorageFault(problem.error)) return;
    const entry: RuntimeProblem = {
      at: this.#clock.now(),
      message: problem.message,
      error: problem.error instanceof Error ? problem.error.message : String(problem.error),
      ...(problem.sagaId === undefined ? {} : { sagaId: problem.sagaId }),
      ...(problem.subscription === undefined ? {} : { subscription: problem.subscription }),
    };
    this.#problems.push(entry);
    if (this.#problems.length > maxProblems) this.#problems.shift();
    try {
      this.#onProblem?.(entry);
    } catch {
      // A listener's failure must not break the runtime.
    }
    if (problem.error instanceof FencedError && this.#state === 'running') {
      // Embedded: another runtime owns the store now, so stop writing at once. Cluster: another
      // node claimed some partitions, so give those up and carry on with the rest.
      if (this.#cluster === undefined) void this.stop();
      else void this.#fenced(problem.error);
    }
  }
}

/** The run of a loaded saga, told of the cancellation asked for it while it was not running. */
function newExecution(
  services: SagaServices,
  loaded: LoadedSaga,
  parking: AbortSignal,
): { run(): Promise<ExecutionResult>; notifications: Omit<ScheduledRun, 'run'> } {
  const execution = new SagaExecution(services, loaded.definition, loaded.record, loaded.journal, parking);
  if (loaded.cancelReason !== undefined) execution.cancel(loaded.cancelReason);
  return {
    run: () => execution.run(),
    notifications: {
      wake: (nowMs) => execution.wake(nowMs),
      signalled: () => execution.signalled(),
      cancelled: (reason) => execution.cancel(reason),
    },
  };
}

/** The registered definition `definition` names, or a ValidationError saying to register it. */
function registered<D extends { kind: string; name: string }>(
  label: 'Entity' | 'Saga',
  registry: ReadonlyMap<string, D>,
  definition: D,
): D {
  const found = registry.get(definition?.name);
  if (found === undefined || definition?.kind !== label.toLowerCase()) {
    throw new ValidationError(
      `${label} '${definition?.name}' is not registered: pass it to runtime.register() before start()`,
    );
  }
  return found;
}

/** Compensation retry: unbounded attempts, bounded delay (100 ms doubling to 30 s by default). */
function compensationRetryOf(options: RuntimeOptions['compensationRetry']): RetryStrategy {
  return unboundedRetryStrategy(
    {
      initialDelayMs: options?.initialDelayMs ?? 100,
      // The cap may not be below the base: a larger base without a cap raises the default cap.
      maxDelayMs: options?.maxDelayMs ?? Math.max(30_000, options?.initialDelayMs ?? 0),
    },
    Number.POSITIVE_INFINITY,
  );
}

type TopicOptions = NonNullable<RuntimeOptions['topics']>[string];

/** The `topics` option, checked: each name, its partitions and retention when given. */
function topicConfigs(given: RuntimeOptions['topics']): Map<string, TopicOptions> {
  const topics = new Map<string, TopicOptions>();
  for (const [topic, config] of Object.entries(given ?? {})) {
    requireRuntimeName(`A topic name in 'topics'`, topic);
    const partitions = config?.partitions;
    const retentionMs = config?.retentionMs;
    topics.set(topic, {
      ...(partitions === undefined
        ? {}
        : { partitions: integerOption(`topics.${topic}.partitions`, partitions, 1, 1, 1024) }),
      ...(retentionMs === undefined || retentionMs === null
        ? retentionMs === null
          ? { retentionMs: null }
          : {}
        : {
            retentionMs: integerOption(`topics.${topic}.retentionMs`, retentionMs, 1, 1, 3_153_600_000_000),
          }),
    });
  }
  return topics;
}

/** Creates a runtime; register definitions, then `start()` it. */
export function createRuntime(options: RuntimeOptions): Runtime {
  return new Runtime(options);
}
