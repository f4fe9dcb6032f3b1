import { ValidationError } from '../errors.ts';
import type { LogRecord } from '../log/types.ts';
import type { Policy } from '../resilience/index.ts';
import { integerOption } from '../resilience/options.ts';
import type { RetryStrategy, StepRetryOptions } from '../resilience/retry.ts';
import type { Json } from '../store/types.ts';
import { toJson } from './codec.ts';
import { requireRuntimeName } from './options.ts';

/*
 * The three things an application defines — entities, sagas, subscriptions — as plain typed
 * values. Definitions hold no runtime state: register the same definition with any runtime.
 */

// ---------------------------------------------------------------------------------------------
// Entities

/** What a command handler knows besides the state and the input. */
export interface CommandContext {
  readonly entity: string;
  readonly id: string;
  /** The version of the state the handler sees; 0 when the entity does not exist yet. */
  readonly version: number;
  /** The runtime clock's reading when the command runs. */
  readonly nowMs: number;
}

/** What a command handler decides. Everything in it commits atomically, or nothing does. */
export interface CommandResult<S, R> {
  /** The new state; omit it to leave the state unchanged (and the version where it is). */
  readonly state?: S;
  /** Events, each appended to the entity's events topic keyed by the entity id. JSON values. */
  readonly events?: readonly unknown[];
  /** What the sender receives. A JSON value. */
  readonly reply?: R;
  /**
   * True ends the entity: its stored state is deleted in the same transaction as the events
   * (an order long past delivery, a closed cart). Its events stay on the log under the topic's
   * own retention; to archive the final state, emit it as the last event. A later command for
   * the id starts again from the initial state at version 0. Not together with `state`.
   */
  readonly delete?: boolean;
}

/**
 * A command handler: a synchronous, deterministic decision from (state, input) to a result. It
 * runs inside the transaction that commits its result, so it must not do I/O — an effect on
 * the outside world belongs in a saga step. Throwing rejects the command: nothing changes and
 * the sender receives the error.
 */
export type CommandHandler<S> = (state: S, input: never, ctx: CommandContext) => CommandResult<S, unknown>;

export type Commands<S> = Record<string, CommandHandler<S>>;

export interface EntityOptions<S, C extends Commands<S>> {
  /** The state of an entity that was never written: a JSON value, or a function of the id. */
  initial: S | ((id: string) => S);
  commands: C;
  /** Where the entity's events go. @default `${name}.events` */
  eventsTopic?: string;
  /** Partitions of the events topic when the runtime creates it. 1 to 1024. @default 8 */
  partitions?: number;
}

/** The shape every entity definition has, whatever its state and commands. */
export interface AnyEntityDefinition {
  readonly kind: 'entity';
  readonly name: string;
  readonly eventsTopic: string;
  readonly partitions: number;
  readonly commands: object;
  initialState(id: string): unknown;
}

export interface EntityDefinition<S, C extends Commands<S>> extends AnyEntityDefinition {
  readonly commands: C;
  initialState(id: string): S;
}

type EventsOf<Result> = Result extends { events: readonly (infer V)[] } ? V : never;

/**
 * The events an entity's commands produce: the union of what its handlers put in `events`. For
 * subscriptions to its events topic: `record.json<EntityEvent<typeof Order>>()`.
 */
export type EntityEvent<E extends AnyEntityDefinition> = {
  [K in CommandName<E>]: E['commands'][K] extends (...args: never[]) => infer Result
    ? EventsOf<Result>
    : never;
}[CommandName<E>];

/** The state type of an entity definition. */
export type EntityState<E extends AnyEntityDefinition> = ReturnType<E['initialState']>;

/** The command names of an entity definition. */
export type CommandName<E extends AnyEntityDefinition> = keyof E['commands'] & string;

/** The input type a command's handler declares. */
export type CommandInput<E extends AnyEntityDefinition, K extends CommandName<E>> = E['commands'][K] extends (
  state: never,
  input: infer I,
  ...rest: never[]
) => unknown
  ? I
  : never;

type ReplyOf<Result> = Result extends { reply: infer R } ? R : undefined;

/** The reply type of a command: the union of what its handler's returns put in `reply`. */
export type CommandReply<E extends AnyEntityDefinition, K extends CommandName<E>> = E['commands'][K] extends (
  ...args: never[]
) => infer Result
  ? ReplyOf<Result>
  : never;

/**
 * Defines an entity: state keyed by id, changed only by its commands. Commands for one id run
 * one at a time (a single writer per key), and each commits its state, events and reply
 * atomically.
 */
export function entity<S, C extends Commands<S>>(
  name: string,
  options: EntityOptions<S, C>,
): EntityDefinition<S, C> {
  requireRuntimeName('An entity name', name);
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError(`Entity '${name}' needs options with 'initial' and 'commands'`);
  }
  const commands = options.commands;
  if (typeof commands !== 'object' || commands === null || Object.keys(commands).length === 0) {
    throw new ValidationError(`Entity '${name}' needs at least one command in 'commands'`);
  }
  for (const [command, handler] of Object.entries(commands)) {
    requireRuntimeName(`Command names of entity '${name}'`, command);
    if (typeof handler !== 'function') {
      throw new ValidationError(`Command '${command}' of entity '${name}' must be a function`);
    }
  }
  const eventsTopic = requireRuntimeName(
    `'eventsTopic' of entity '${name}'`,
    options.eventsTopic ?? `${name}.events`,
  );
  const partitions = integerOption('partitions', options.partitions, 8, 1, 1024);
  const initial = options.initial;
  // A value is copied through JSON each time, so one entity's handler cannot change another's start.
  const initialText =
    typeof initial === 'function'
      ? undefined
      : JSON.stringify(toJson(`The initial state of entity '${name}'`, initial));
  return {
    kind: 'entity',
    name,
    commands,
    eventsTopic,
    partitions,
    initialState(id: string): S {
      if (typeof initial === 'function') return (initial as (id: string) => S)(id);
      return JSON.parse(initialText!) as S;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Sagas

/** A record a saga, a subscription or an entity publishes. */
export interface EmitRecord {
  /** Decides the partition (Kafka's murmur2). @default null */
  readonly key?: string | null;
  /** A JSON value. */
  readonly value: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/** What one attempt of a step receives. */
export interface StepContext {
  readonly sagaId: string;
  readonly step: string;
  /**
   * `${sagaId}/${step}` (with `/compensate` for the compensation): the same on every attempt
   * and after every restart. Pass it to the outside world so that a retried call is applied once.
   */
  readonly idempotencyKey: string;
  /** 1 on the first attempt of this process; restarts count again from 1. */
  readonly attempt: number;
  /** Aborted when the step's deadline passes or the runtime stops. */
  readonly signal: AbortSignal;
  /** The W3C traceparent of this step's span: pass it on to the outside world. */
  readonly traceparent: string;
}

/**
 * Why a saga is compensating: what its code threw, as data. Compensations receive it, and
 * `runtime.progress(id).failure` reports it.
 */
export interface SagaFailure {
  readonly message: string;
  /** The error's `code` (a MeridianError's), else null. */
  readonly code: string | null;
  /** The step or send whose failure ended the saga (a StepFailedError's `step`), else null. */
  readonly step: string | null;
  /** The error's `details` when they are JSON (a MeridianError's), else null. */
  readonly details: Json | null;
}

export interface StepOptions<T> {
  /** How failed attempts are retried. @default exponentialBackoff(): 5 attempts, 100 ms doubling to 10 s, full jitter */
  retry?: StepRetryOptions | RetryStrategy;
  /**
   * Undoes the step's effect once a later step fails for good. Runs with the step's journaled
   * result and the failure that made the saga compensate, under the idempotency key
   * `${sagaId}/${step}/compensate`, and is retried until it succeeds (a TerminalError marks the
   * saga `failed` instead).
   */
  compensate?: (ctx: StepContext, result: T, failure: SagaFailure) => Promise<void> | void;
  /**
   * The step's deadline across all its attempts, measured from the first one and kept across
   * restarts. When it passes the step fails with a StepTimeoutError. 1 to 31536000000.
   * @default no deadline
   */
  timeoutMs?: number;
  /**
   * A resilience policy every attempt runs under: a circuit breaker, bulkhead, timeout, rate
   * limit or hedge around the outside call (src/resilience). The step's `retry` still decides,
   * durably, whether a failed attempt runs again; a policy refusal (an open circuit, a full
   * bulkhead) is a failed attempt like any other. The attempt's `signal` is the policy's, so a
   * policy timeout aborts the call. @default none
   */
  policy?: Policy<T>;
}

/** An entity command that undoes a `ctx.send`, run exactly once like the send itself. */
export type SendCompensation<E extends AnyEntityDefinition, R> = {
  [K in CommandName<E>]: {
    readonly command: K;
    /** The compensation's input, or a function of the send's journaled reply and the saga's failure. */
    readonly input: CommandInput<E, K> | ((reply: R, failure: SagaFailure) => CommandInput<E, K>);
  };
}[CommandName<E>];

export interface SendOptions<E extends AnyEntityDefinition, R> {
  compensate?: SendCompensation<E, R>;
}

export interface SignalOptions {
  /**
   * How long to wait, measured from the first wait and kept across restarts; then the wait
   * throws a SignalTimeoutError. 1 to 31536000000. @default no limit
   */
  timeoutMs?: number;
}

/**
 * The API a saga's code uses. Every call is journaled; on resume the journaled calls return
 * their journaled outcome without running again. Calls may run concurrently (`Promise.all`):
 * their outcomes reach the code in the order they were journaled, on resume too. The code
 * between calls must be deterministic: take the time and random numbers from `ctx.now()` and
 * `ctx.random()`, and do I/O inside steps.
 */
export interface SagaContext {
  readonly sagaId: string;
  /** The W3C traceparent of the saga's span. */
  readonly traceparent: string;
  /** Runs `fn` with retries and journals its result; on resume returns the journaled result. */
  step<T>(name: string, fn: (ctx: StepContext) => Promise<T> | T, options?: StepOptions<T>): Promise<T>;
  /**
   * Sends a command to an entity and returns its reply. The command's effect and the journal
   * entry commit in one transaction, so it applies exactly once, even across crashes. A
   * rejected command (its handler threw) fails with a StepFailedError.
   */
  send<E extends AnyEntityDefinition, K extends CommandName<E>>(
    entity: E,
    id: string,
    command: K,
    input: CommandInput<E, K>,
    options?: SendOptions<E, CommandReply<E, K>>,
  ): Promise<CommandReply<E, K>>;
  /** Waits `durationMs` on a durable timer: a restart in between does not shorten or restart it. */
  sleep(name: string, durationMs: number): Promise<void>;
  /** Publishes a record exactly once (journaled in the same transaction as the append). */
  emit(topic: string, record: EmitRecord): Promise<void>;
  /** The runtime clock's reading, journaled: the same number on resume. */
  now(): Promise<number>;
  /** A random number in [0, 1), journaled: the same number on resume. */
  random(): Promise<number>;
  /**
   * Waits for the signal `name` — delivered once, by anyone, on any node, with
   * `runtime.signal(sagaId, name, value)`, before or during the wait — and returns its value,
   * journaled. Throws a SignalTimeoutError once `timeoutMs` has passed without it.
   */
  waitForSignal<T = Json>(name: string, options?: SignalOptions): Promise<T>;
}

/** The shape every saga definition has. `run` is a method so definitions of any input type fit. */
export interface SagaDefinition<I = unknown, O = unknown> {
  readonly kind: 'saga';
  readonly name: string;
  run(ctx: SagaContext, input: I): Promise<O>;
}

/**
 * Defines a saga: an async function whose durable operations go through `ctx`. Start one with
 * `runtime.startSaga(definition, id, input)`.
 */
export function saga<I, O>(
  name: string,
  run: (ctx: SagaContext, input: I) => Promise<O>,
): SagaDefinition<I, O> {
  requireRuntimeName('A saga name', name);
  if (typeof run !== 'function') throw new ValidationError(`Saga '${name}' needs a function`);
  return { kind: 'saga', name, run };
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

/** A consumed record with helpers to read its JSON value and its key. */
export interface SubscriptionRecord extends LogRecord {
  /** The value parsed as JSON (null for a tombstone). Throws when it is not JSON. */
  json<T = Json>(): T;
  /** The key as UTF-8 text, or null. */
  keyText(): string | null;
}

/**
 * What a subscription handler may do. Every effect joins the transaction that commits the
 * record's consumption, so each record's effects apply exactly once.
 */
export interface SubscriptionContext {
  readonly subscription: string;
  /** 1 on the first delivery to this process. */
  readonly attempt: number;
  /** The traceparent of this record's handling span (a child of the record's own). */
  readonly traceparent: string;
  send<E extends AnyEntityDefinition, K extends CommandName<E>>(
    entity: E,
    id: string,
    command: K,
    input: CommandInput<E, K>,
  ): Promise<CommandReply<E, K>>;
  emit(topic: string, record: EmitRecord): Promise<void>;
  /** Starts a saga (idempotent on its id) once this record's transaction commits. */
  startSaga<I, O>(saga: SagaDefinition<I, O>, id: string, input: I): Promise<void>;
}

export interface SubscriptionOptions {
  topic: string;
  /**
   * Handles one record. It runs inside the transaction (with the write lock held on the
   * embedded shape): do no I/O here; start a saga for that.
   */
  handler: (record: SubscriptionRecord, ctx: SubscriptionContext) => Promise<void> | void;
  /** The consumer group. @default `meridian.${name}` */
  group?: string;
  /**
   * How a failing record is retried before it goes to the dead-letter topic. Records after it in
   * its partition wait (per-partition order is kept). @default 5 attempts, 100 ms doubling to 10 s
   */
  retry?: StepRetryOptions | RetryStrategy;
  /** Partitions of the topic if the runtime must create it. 1 to 1024. @default 8 */
  partitions?: number;
  /** Records handled per transaction at most. 1 to 10000. @default 500 */
  maxRecordsPerBatch?: number;
}

export interface SubscriptionDefinition {
  readonly kind: 'subscription';
  readonly name: string;
  readonly topic: string;
  readonly group: string;
  readonly partitions: number;
  readonly maxRecordsPerBatch: number;
  readonly retry: StepRetryOptions | RetryStrategy | undefined;
  readonly handler: SubscriptionOptions['handler'];
}

/** Defines a subscription: a handler for every record of a topic, with exactly-once effects. */
export function subscription(name: string, options: SubscriptionOptions): SubscriptionDefinition {
  requireRuntimeName('A subscription name', name);
  if (typeof options?.handler !== 'function') {
    throw new ValidationError(`Subscription '${name}' needs a 'handler' function`);
  }
  return {
    kind: 'subscription',
    name,
    topic: requireRuntimeName(`'topic' of subscription '${name}'`, options.topic),
    group: requireRuntimeName(`'group' of subscription '${name}'`, options.group ?? `meridian.${name}`),
    partitions: integerOption('partitions', options.partitions, 8, 1, 1024),
    maxRecordsPerBatch: integerOption('maxRecordsPerBatch', options.maxRecordsPerBatch, 500, 1, 10_000),
    retry: options.retry,
    handler: options.handler,
  };
}

export type Definition = AnyEntityDefinition | SagaDefinition | SubscriptionDefinition;
