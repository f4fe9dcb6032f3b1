import { assert } from '../assert.ts';
import {
  AlreadyExistsError,
  ClosedError,
  ConflictError,
  isMeridianError,
  NotFoundError,
  ValidationError,
} from '../errors.ts';
import type { Log, LogRecord } from '../log/types.ts';
import { integerOption } from '../resilience/options.ts';
import { type RetryStrategy, unboundedRetryStrategy } from '../resilience/retry.ts';
import type {
  JournalEntry,
  Json,
  SagaRecord,
  SagaStatus,
  Store,
  StoreReader,
  StoreTransaction,
  TimerRecord,
} from '../store/types.ts';
import { type Clock, type Random, systemClock, systemRandom, systemTimers, type Timers } from '../time.ts';
import type { AppliedRequest } from './cluster-node.ts';
import {
  type ClusterOptions,
  type ClusterRuntime,
  ClusterShape,
  normalizeClusterOptions,
} from './cluster-shape.ts';
import { toJson } from './codec.ts';
import type { CommitPath, UnitScope } from './commit-path.ts';
import type {
  AnyEntityDefinition,
  CommandInput,
  CommandName,
  CommandReply,
  Definition,
  SagaDefinition,
  SubscriptionDefinition,
} from './definitions.ts';
import { Effects } from './effects.ts';
import { EmbeddedCommitPath } from './embedded.ts';
import { applyCommand } from './entity-command.ts';
import { FencedError, SagaNotCompletedError } from './errors.ts';
import { type GroupCommitStats, GroupCommitter, type Yield } from './group-commit.ts';
import { requireRuntimeId, requireRuntimeName } from './options.ts';
import {
  type ExecutionResult,
  journalNames,
  SagaExecution,
  type SagaLaunch,
  type SagaServices,
  sagaWakeTimerKind,
} from './saga-execution.ts';
import { type LoadedSaga, SagaScheduler, type ScheduledRun } from './saga-scheduler.ts';
import { TimerScheduler } from './scheduler.ts';
import { deadLetterHeaders, SubscriptionRunner, type SubscriptionServices } from './subscription-runner.ts';
import { childTraceparent, formatTraceparent, newTrace, parseTraceparent } from './trace.ts';
import { rejection, type WorkRequest } from './work-requests.ts';

export interface RuntimeOptions {
  store: Store;
  log: Log;
  /**
   * How the runtime commits. @default the embedded path, which needs the SQLite store and
   * the SQLite log on one database
   */
  commitPath?: CommitPath;
  /** @default systemClock */
  clock?: Clock;
  /** @default systemTimers */
  timers?: Timers;
  /** Jitter, trace ids. @default systemRandom */
  random?: Random;
  /** Units (commands, journal entries, record batches) one transaction takes. 1 to 10000. @default 1000 */
  maxUnitsPerTransaction?: number;
  /**
   * How the committer lets resumed work run before each transaction (it involves no time). A
   * simulated scheduler supplies its own. @default one turn of the event loop (setImmediate)
   */
  yield?: Yield;
  /**
   * How long the group commit waits for more units before each transaction that would not be
   * full (Kafka's linger.ms), on `timers`: each durable call waits up to that much longer at low
   * load, and under load transactions are fewer and larger (see docs/benchmarks.md for what it
   * did to the commerce system). 0 to 1000. @default 0
   */
  commitLingerMs?: number;
  /**
   * Sagas executing in memory at once (a saga in a durable sleep does not count). More wait
   * their turn; their state is safe in the store meanwhile. 1 to 1000000. @default 10000
   */
  maxActiveSagas?: number;
  /** How long `stop` waits for running steps to finish before abandoning them. 0 to 600000. @default 10000 */
  drainTimeoutMs?: number;
  /** Where failed records go. @default 'meridian.dead-letters' */
  deadLetterTopic?: string;
  /** Partitions of topics the runtime creates without other instructions. 1 to 1024. @default 8 */
  defaultPartitions?: number;
  /** Topics to create at start (e.g. those subscription handlers emit to), with their partitions. */
  topics?: Readonly<Record<string, { partitions: number }>>;
  /** Compensation retry: unbounded attempts, this backoff. @default 100 ms doubling to 30 s, full jitter */
  compensationRetry?: { initialDelayMs?: number; maxDelayMs?: number };
  /** Operating problems (a parked saga, a failed batch, a fence). They are also kept: see `problems()`. */
  onProblem?: (problem: RuntimeProblem) => void;
  /**
   * Run as one node of a cluster (Kafka log + PostgreSQL store, shared by every node): work
   * partitions are owned per node through a Kafka consumer group, and work for a partition owned
   * elsewhere travels to its owner. Absent: the embedded shape, which owns everything.
   */
  cluster?: ClusterOptions;
}

/** What a cluster node can say about itself (`runtime.cluster`). */
export interface ClusterInfo {
  /** This node's name. */
  readonly node: string;
  /** How many work partitions the cluster has. */
  readonly workPartitions: number;
  /** The work partitions this node owns now, ascending. */
  owned(): number[];
  /** The work partition of an entity or saga id. */
  partitionOf(id: string): number;
  /** Records the relay has published to Kafka since start. */
  readonly published: number;
}

/** An operating problem the runtime handled: nothing was lost, but someone may want to know. */
export interface RuntimeProblem {
  readonly at: number;
  readonly message: string;
  readonly sagaId?: string;
  readonly subscription?: string;
  readonly error: string;
}

export interface SagaHandle<O> {
  readonly id: string;
  /**
   * The saga's output once it completes; rejects with SagaNotCompletedError if it compensated or
   * failed. `signal` stops waiting (rejecting with its reason) without touching the saga.
   */
  result(options?: { signal?: AbortSignal }): Promise<O>;
  /** The saga's stored record now. */
  record(): Promise<SagaRecord>;
}

export interface StartSagaOptions {
  /** The W3C traceparent of the caller: the saga joins its trace. @default a new trace */
  traceparent?: string;
}

export interface SendOptions {
  /** The W3C traceparent of the caller: the command's events join its trace. @default a new trace */
  traceparent?: string;
}

/** A record that a subscription could not handle, as it sits on the dead-letter topic. */
export interface DeadLetter {
  readonly subscription: string;
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly error: string;
  readonly attempts: number;
  readonly at: number;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  readonly headers: Readonly<Record<string, string>>;
  /** Where the dead letter itself sits on the dead-letter topic. */
  readonly deadLetter: { readonly partition: number; readonly offset: number };
}

export interface RuntimeStats {
  readonly activeSagas: number;
  readonly sleepingSagas: number;
  readonly queuedSagas: number;
  readonly commits: GroupCommitStats;
  readonly subscriptions: Readonly<Record<string, { handled: number; deadLettered: number }>>;
}

type State = 'created' | 'starting' | 'running' | 'stopping' | 'stopped';

const maxProblems = 100;
/** After a cluster saga parked on a failed write, how long before it is resumed (while still owned). */
const resumeAfterParkMs = 200;
const terminalStatuses: readonly SagaStatus[] = ['completed', 'compensated', 'failed'];

/** JSON with sorted keys, to compare two inputs regardless of key order. */
function canonical(value: Json): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, Json>)[key]!)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

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
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #random: Random;
  readonly #drainTimeoutMs: number;
  readonly #deadLetterTopic: string;
  readonly #defaultPartitions: number;
  readonly #topics: ReadonlyMap<string, number>;
  readonly #onProblem: ((problem: RuntimeProblem) => void) | undefined;
  readonly #scheduler: TimerScheduler;
  readonly #halted = new AbortController();
  readonly #sagaServices: SagaServices;
  readonly #subscriptionServices: SubscriptionServices;

  readonly #entities = new Map<string, AnyEntityDefinition>();
  readonly #sagas = new Map<string, SagaDefinition>();
  readonly #subscriptions = new Map<string, SubscriptionDefinition>();
  readonly #runners: SubscriptionRunner[] = [];
  readonly #knownTopics = new Set<string>();

  readonly #sagaScheduler: SagaScheduler;
  readonly #cluster: ClusterShape | undefined;
  readonly #problems: RuntimeProblem[] = [];
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
    this.#cluster = this.#clusterOf(options);
    this.#path =
      this.#cluster?.path ??
      options.commitPath ??
      new EmbeddedCommitPath({ store: options.store, log: options.log, clock: this.#clock });
    this.#committer = new GroupCommitter(this.#path, {
      ...(options.maxUnitsPerTransaction === undefined
        ? {}
        : { maxUnitsPerTransaction: options.maxUnitsPerTransaction }),
      ...(options.yield === undefined ? {} : { yield: options.yield }),
      lingerMs: integerOption('commitLingerMs', options.commitLingerMs, 0, 0, 1000),
      timers: this.#timers,
    });
    this.#sagaScheduler = new SagaScheduler({
      maxActive: integerOption('maxActiveSagas', options.maxActiveSagas, 10_000, 1, 1_000_000),
      load: (sagaId) => this.#loadSaga(sagaId),
      execute: (loaded, parking) => this.#execute(loaded, parking),
      report: (problem) => this.#report(problem),
    });
    this.#drainTimeoutMs = integerOption('drainTimeoutMs', options.drainTimeoutMs, 10_000, 0, 600_000);
    this.#deadLetterTopic = requireRuntimeName(
      `'deadLetterTopic'`,
      options.deadLetterTopic ?? 'meridian.dead-letters',
    );
    this.#defaultPartitions = integerOption('defaultPartitions', options.defaultPartitions, 8, 1, 1024);
    const topics = new Map<string, number>();
    for (const [topic, config] of Object.entries(options.topics ?? {})) {
      topics.set(
        requireRuntimeName(`A topic name in 'topics'`, topic),
        integerOption(`topics.${topic}.partitions`, config?.partitions, 0, 1, 1024),
      );
    }
    this.#topics = topics;
    this.#onProblem = options.onProblem;
    this.#scheduler = new TimerScheduler({
      committer: this.#committer,
      clock: this.#clock,
      timers: this.#timers,
      onDue: (timers) => this.#timersDue(timers),
      onError: (error) => this.#report({ message: 'firing durable timers failed; retrying', error }),
      ...(this.#cluster === undefined ? {} : { partitions: () => this.#cluster!.ownership.owned() }),
    });
    const effects = new Effects({
      committer: this.#committer,
      clock: this.#clock,
      timers: this.#timers,
      random: this.#random,
    });
    this.#sagaServices = this.#makeSagaServices(effects, compensationRetryOf(options.compensationRetry));
    this.#subscriptionServices = this.#makeSubscriptionServices(effects);
  }

  #makeSagaServices(effects: Effects, compensationRetry: RetryStrategy): SagaServices {
    return {
      effects,
      sleeps: {
        scheduled: (dueAt) => this.#scheduler.notify(dueAt),
        sleep: (sagaId, wakeAt) => this.#sagaScheduler.sleep(sagaId, wakeAt),
      },
      ensureTopic: (topic) => this.#ensureTopic(topic, this.#defaultPartitions),
      compensationRetry,
      halted: this.#halted.signal,
      report: (problem) => this.#report(problem),
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
          this.#createSagaIn(scope, saga, id, input, traceparent),
        launch: (launches) => {
          for (const launch of launches) this.#sagaScheduler.enqueue(launch);
        },
      },
      report: (problem) => this.#report(problem),
      fenced: (error) => this.#report({ message: 'a subscription was fenced', error }),
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
   * Claims ownership (fencing any earlier runtime on the same store), creates the topics it
   * needs, fires due timers, resumes every running saga, and starts the subscriptions.
   */
  async start(): Promise<void> {
    if (this.#state !== 'created')
      throw new ValidationError(`start() was called twice (state is '${this.#state}')`);
    this.#state = 'starting';
    await this.#path.open();
    await this.#ensureTopic(this.#deadLetterTopic, this.#defaultPartitions);
    for (const [topic, partitions] of this.#topics) await this.#ensureTopic(topic, partitions);
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
    this.#sagaScheduler.stop();
    if (wasRunning) {
      await Promise.all(this.#runners.map((runner) => runner.stop()));
    }
    if (wasRunning && this.#drainTimeoutMs > 0) {
      const settled = this.#sagaScheduler.idle();
      let timer: { cancel(): void } | undefined;
      const drained = new Promise<void>((resolve) => {
        timer = this.#timers.setTimeout(resolve, this.#drainTimeoutMs);
      });
      await Promise.race([settled, drained]);
      timer?.cancel();
    }
    if (wasRunning) await this.#leaveCluster();
    this.#halted.abort();
    await this.#scheduler.stop();
    await this.#committer.close();
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
    const traceparent = formatTraceparent(parseTraceparent(options.traceparent) ?? newTrace(this.#random));
    if (this.#cluster !== undefined && !this.#cluster.ownsId(id)) {
      return (await this.#routeSend(definition, id, command, input, traceparent)) as unknown as CommandReply<
        E,
        K
      >;
    }
    const nowMs = this.#clock.now();
    let outcome: Awaited<ReturnType<typeof applyCommand>>;
    try {
      outcome = await this.#committer.submit((scope) =>
        applyCommand(scope, {
          entity: definition,
          id,
          command,
          input,
          traceparent,
          nowMs,
          random: this.#random,
        }),
      );
    } catch (error) {
      // The partition moved away between the check and the write: its new owner applies it.
      if (this.#cluster !== undefined && isMeridianError(error) && error.code === 'NOT_OWNED') {
        return (await this.#routeSend(
          definition,
          id,
          command,
          input,
          traceparent,
        )) as unknown as CommandReply<E, K>;
      }
      // A fenced runtime stops (embedded) or gives the partition up (cluster).
      if (error instanceof FencedError) this.#report({ message: 'a command was fenced', error });
      throw error;
    }
    if (!outcome.ok) throw outcome.error;
    return outcome.reply as unknown as CommandReply<E, K>;
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
  async read<T>(work: (tx: StoreReader) => Promise<T>): Promise<T> {
    return this.#store.read(work);
  }

  /** An entity's committed state and version, or null when it was never written. */
  async state<E extends AnyEntityDefinition>(
    entity: E,
    id: string,
  ): Promise<{ state: ReturnType<E['initialState']>; version: number } | null> {
    const definition = this.#entity(entity);
    const record = await this.#store.read((tx) => tx.entities.get(definition.name, id));
    return record === null
      ? null
      : { state: record.state as ReturnType<E['initialState']>, version: record.version };
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
    const traceparent = childTraceparent(options.traceparent, this.#random);
    if (this.#cluster !== undefined && !this.#cluster.ownsId(id)) {
      await this.#routeStart(definition, id, input, traceparent);
      return this.#handle<O>(id);
    }
    let launch: SagaLaunch | null;
    try {
      launch = await this.#committer.submit((scope) =>
        this.#createSagaIn(scope, definition, id, input, traceparent),
      );
    } catch (error) {
      if (this.#cluster === undefined || !isMeridianError(error) || error.code !== 'NOT_OWNED') throw error;
      await this.#routeStart(definition, id, input, traceparent);
      return this.#handle<O>(id);
    }
    if (launch !== null) this.#sagaScheduler.enqueue(launch);
    return this.#handle<O>(id);
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

  /** One saga's journal, in order: every step, send, sleep, emit and compensation it ran. */
  async journal(id: string): Promise<JournalEntry[]> {
    requireRuntimeId('A saga id', id);
    return this.#store.read((tx) => tx.sagas.journal(id));
  }

  // -------------------------------------------------------------------------------------------
  // Dead letters, problems, stats

  /** Dead letters, oldest first per partition of the dead-letter topic; optionally of one subscription. */
  async deadLetters(options: { subscription?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    const limit = integerOption('limit', options.limit, 100, 1, 1000);
    let partitions: number;
    try {
      partitions = (await this.#log.describeTopic(this.#deadLetterTopic)).partitions;
    } catch (error) {
      if (error instanceof NotFoundError) return [];
      throw error;
    }
    const found: DeadLetter[] = [];
    for (let partition = 0; partition < partitions && found.length < limit; partition++) {
      const { start, end } = await this.#log.offsets(this.#deadLetterTopic, partition);
      let offset = start;
      while (offset < end && found.length < limit) {
        const records = await this.#log.read(this.#deadLetterTopic, partition, offset, { maxRecords: 500 });
        if (records.length === 0) break;
        for (const record of records) {
          const letter = toDeadLetter(record);
          if (options.subscription === undefined || letter.subscription === options.subscription)
            found.push(letter);
          if (found.length >= limit) break;
        }
        offset = records[records.length - 1]!.offset + 1;
      }
    }
    return found;
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
    };
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
    });
  }

  /** What the cluster shape calls back into: resume, evict, apply routed work. */
  #clusterRuntime(): ClusterRuntime {
    const cluster = this.#cluster!;
    return {
      resume: async (partitions) => {
        await this.#resumeAll(partitions);
        await this.#scheduler.refresh();
      },
      evict: async (partitions) => {
        await this.#sagaScheduler.evict((id) => partitions.has(cluster.ownership.partitionOf(id)));
      },
      apply: (scope, request) => this.#applyRequest(scope, request),
      report: (problem) => this.#report(problem),
    };
  }

  /** A saga run; on the cluster shape one parked by a failed write is resumed while this node owns it. */
  #execute(loaded: LoadedSaga, parking: AbortSignal): ScheduledRun {
    const execution = new SagaExecution(
      this.#sagaServices,
      loaded.definition,
      loaded.record,
      loaded.journal,
      parking,
    );
    const cluster = this.#cluster;
    if (cluster === undefined) return execution;
    const sagaId = loaded.record.id;
    return {
      run: async () => {
        const result = await execution.run();
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

  /** Applies work another node routed to this one, inside `scope`. */
  async #applyRequest(scope: UnitScope, request: WorkRequest): Promise<AppliedRequest> {
    const node = this.#cluster!.options.node;
    if (request.kind === 'send') {
      const definition = this.#entities.get(request.entity);
      if (definition === undefined) {
        return rejection(
          new ValidationError(`Entity '${request.entity}' is not registered on node '${node}'`),
        );
      }
      const { entity: _, kind: __, requestId: ___, ...call } = request;
      const outcome = await applyCommand(scope, {
        ...call,
        entity: definition,
        nowMs: this.#clock.now(),
        random: this.#random,
      });
      return outcome.ok
        ? { ok: true, reply: outcome.reply, error: null, code: null }
        : rejection(outcome.error);
    }
    const definition = this.#sagas.get(request.saga);
    if (definition === undefined) {
      return rejection(new ValidationError(`Saga '${request.saga}' is not registered on node '${node}'`));
    }
    let launch: SagaLaunch | null;
    try {
      launch = await scope.isolate((inner) =>
        this.#createSagaIn(inner, definition, request.id, request.input, request.traceparent),
      );
    } catch (error) {
      if (isMeridianError(error) && (error.code === 'CONFLICT' || error.code === 'INVALID_ARGUMENT')) {
        return rejection(error);
      }
      throw error;
    }
    const ok = { ok: true, reply: null, error: null, code: null } as const;
    return launch === null ? ok : { ...ok, afterCommit: () => this.#sagaScheduler.enqueue(launch) };
  }

  #routeSend(
    definition: AnyEntityDefinition,
    id: string,
    command: string,
    input: unknown,
    traceparent: string,
  ) {
    const cluster = this.#cluster!;
    return cluster.route({
      kind: 'send',
      requestId: cluster.newRequestId(),
      entity: definition.name,
      id,
      command,
      input: toJson(`The input of command '${command}' of entity '${definition.name}'`, input),
      traceparent,
    });
  }

  async #routeStart(
    definition: SagaDefinition,
    id: string,
    input: unknown,
    traceparent: string,
  ): Promise<void> {
    const cluster = this.#cluster!;
    await cluster.route({
      kind: 'start',
      requestId: cluster.newRequestId(),
      saga: definition.name,
      id,
      input: toJson(`The input of saga '${definition.name}'`, input),
      traceparent,
    });
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

  /** Creates a saga and its start entry inside `scope`; null when it existed (same type and input). */
  async #createSagaIn(
    scope: UnitScope,
    saga: SagaDefinition,
    id: string,
    input: unknown,
    traceparent: string,
  ): Promise<SagaLaunch | null> {
    const definition = this.#saga(saga);
    requireRuntimeId('A saga id', id);
    const inputJson = toJson(`The input of saga '${definition.name}'`, input);
    const nowMs = this.#clock.now();
    try {
      await scope.tx.sagas.create({
        id,
        type: definition.name,
        status: 'running',
        input: inputJson,
        createdAt: nowMs,
      });
    } catch (error) {
      if (!(error instanceof AlreadyExistsError)) throw error;
      // Idempotent start: the same id with the same type and input is the same saga.
      const existing = await scope.tx.sagas.get(id);
      assert(existing !== null, 'a saga that already exists can be read in the same transaction');
      if (existing.type !== definition.name || canonical(existing.input) !== canonical(inputJson)) {
        throw new ConflictError(
          `Saga '${id}' exists with ${existing.type !== definition.name ? `type '${existing.type}'` : 'another input'}: a saga id names one saga with one input`,
          { details: { sagaId: id, existingType: existing.type, type: definition.name } },
        );
      }
      return null;
    }
    const start: JournalEntry = {
      sagaId: id,
      sequence: 0,
      kind: 'event',
      name: journalNames.start,
      status: 'completed',
      result: { traceparent },
      error: null,
      attempts: 1,
      at: nowMs,
    };
    await scope.tx.sagas.appendJournal(start);
    const record: SagaRecord = {
      id,
      type: definition.name,
      status: 'running',
      input: inputJson,
      output: null,
      reason: null,
      createdAt: nowMs,
      updatedAt: nowMs,
      version: 1,
    };
    return { sagaId: id, definition, record, journal: [start] };
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
    } else {
      const record = await this.saga(id);
      if (record === null) throw new NotFoundError(`Saga '${id}' does not exist`);
      if (terminalStatuses.includes(record.status)) {
        result = {
          outcome: record.status as ExecutionResult['outcome'],
          output: record.output,
          reason: record.reason,
        };
      } else if (this.#cluster !== undefined && !this.#cluster.ownsId(id)) {
        // Another node runs it: wait for its end in the store.
        result = await this.#cluster.awaitSagaEnd(id, signal);
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
  async #loadSaga(sagaId: string): Promise<LoadedSaga | ExecutionResult | null> {
    const found = await this.#store.read(async (tx) => {
      const record = await tx.sagas.get(sagaId);
      return record === null ? null : { record, journal: await tx.sagas.journal(sagaId) };
    });
    if (found === null) return null;
    if (terminalStatuses.includes(found.record.status)) {
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

  async #ensureTopic(topic: string, partitions: number): Promise<void> {
    if (this.#knownTopics.has(topic)) return;
    try {
      await this.#log.describeTopic(topic);
    } catch (error) {
      if (!(error instanceof NotFoundError) && !(isMeridianError(error) && error.code === 'NOT_FOUND'))
        throw error;
      try {
        await this.#log.createTopic(topic, { partitions });
      } catch (createError) {
        // Someone created it meanwhile (with whatever partitions): it exists, which is all we need.
        if (!(createError instanceof AlreadyExistsError)) throw createError;
      }
    }
    this.#knownTopics.add(topic);
  }

  #report(problem: { message: string; error: unknown; sagaId?: string; subscription?: string }): void {
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

function toDeadLetter(record: LogRecord): DeadLetter {
  const header = (name: string) => record.headers[name] ?? '';
  return {
    subscription: header(deadLetterHeaders.subscription),
    topic: header(deadLetterHeaders.topic),
    partition: Number(header(deadLetterHeaders.partition)),
    offset: Number(header(deadLetterHeaders.offset)),
    error: header(deadLetterHeaders.error),
    attempts: Number(header(deadLetterHeaders.attempts)),
    at: Number(header(deadLetterHeaders.at)),
    key: record.key,
    value: record.value,
    headers: record.headers,
    deadLetter: { partition: record.partition, offset: record.offset },
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

/** Creates a runtime; register definitions, then `start()` it. */
export function createRuntime(options: RuntimeOptions): Runtime {
  return new Runtime(options);
}
