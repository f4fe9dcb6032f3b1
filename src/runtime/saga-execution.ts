import { assert } from '../assert.ts';
import { ClosedError, ensureError, isTerminalError, ValidationError } from '../errors.ts';
import { plantedBug } from '../planted-bugs.ts';
import type { Policy } from '../resilience/index.ts';
import { integerOption } from '../resilience/options.ts';
import { type RetryStrategy, toRetryStrategy } from '../resilience/retry.ts';
import type {
  JournalEntry,
  JournalEntryKind,
  Json,
  SagaRecord,
  SagaStatus,
  StoredReply,
} from '../store/types.ts';
import { endSpan, type Span, traceparentOf, withSpan } from '../telemetry/index.ts';
import { toJson } from './codec.ts';
import type { UnitScope } from './commit-path.ts';
import type {
  AnyEntityDefinition,
  CommandName,
  EmitRecord,
  SagaContext,
  SagaDefinition,
  SagaFailure,
  SendOptions,
  SignalOptions,
  StepContext,
  StepOptions,
} from './definitions.ts';
import { type Effects, truncateMessage } from './effects.ts';
import { applyCommand, type CommandOutcome, type CommandRequest, headers } from './entity-command.ts';
import { NonDeterminismError, SagaCancelledError, StepFailedError, StepTimeoutError } from './errors.ts';
import type { SubmitOptions, Yield } from './group-commit.ts';
import type { RuntimeMeasurement } from './meter.ts';
import { requireRuntimeId, requireRuntimeName } from './options.ts';
import { CallOrder, type CallRef, untag } from './saga-calls.ts';
import {
  cancelReasonOf,
  codeOf,
  failureFromEntry,
  failureOf,
  journalNames,
  type SendKind,
  sendEntry,
} from './saga-journal.ts';
import { deleteMailbox } from './saga-signals.ts';
import { SagaSpans } from './saga-spans.ts';
import { WaitingCalls } from './saga-waiting-calls.ts';
import { Waits } from './saga-waits.ts';
import { childTraceparent } from './trace.ts';
import { errorFromReply, type WorkRequest } from './work-requests.ts';

/** Where a saga's durable sleeps go: the durable timer table's firing, and the saga scheduler. */
export interface SagaSleeps {
  /** A durable timer now exists at `dueAt`. */
  scheduled(dueAt: number): void;
  /**
   * Gives the saga's slot back until a timer of the saga fires at or after `wakeAt` (Infinity:
   * none), a signal arrives, `wake` is called, or the saga must park; resolves with the slot back
   * (unless parking).
   */
  sleep(sagaId: string, wakeAt: number): Promise<void>;
  /** Ends the saga's `sleep` now (it resolves once it has a slot again). */
  wake(sagaId: string): void;
}

/** The collaborators every saga execution shares. */
export interface SagaServices {
  readonly effects: Effects;
  readonly sleeps: SagaSleeps;
  /** Creates a topic a saga emits to if it does not exist. */
  readonly ensureTopic: (topic: string) => Promise<void>;
  /** Retry of compensations: unbounded attempts, bounded delay. */
  readonly compensationRetry: RetryStrategy;
  /** Aborted when the drain time is up: steps still running are abandoned (their result is not journaled). */
  readonly halted: AbortSignal;
  /** An operating problem that parked an execution (the saga resumes later). */
  readonly report: (problem: { sagaId: string; message: string; error: unknown }) => void;
  /** Hands a measurement to the runtime's metrics. */
  readonly measure: (measurement: RuntimeMeasurement) => void;
  /** A turn of the event loop: what separates two outcomes handed to a saga's code. */
  readonly yield: Yield;
  /** Entities owned by other nodes (cluster shape); absent on the embedded shape, which owns all. */
  readonly remote?: RemoteEntities;
}

/** How a saga reaches an entity another node owns (cluster shape). */
export interface RemoteEntities {
  /** True when this node owns the entity id's work partition. */
  owns(id: string): boolean;
  /** Publishes `request` inside `scope` (through the outbox), relayed by the saga's node. */
  publish(scope: UnitScope, request: WorkRequest, sagaId: string): Promise<void>;
  /** The owner's reply to `requestId`; rejects when `signal` aborts. */
  awaitReply(requestId: string, signal: AbortSignal): Promise<StoredReply>;
}

/**
 * A saga to run: its id, and (when it was just created here) its record and journal, so the
 * first run needs no read. Created inside a transaction; launched only after it committed.
 */
export interface SagaLaunch {
  readonly sagaId: string;
  readonly definition?: SagaDefinition;
  readonly record?: SagaRecord;
  readonly journal?: JournalEntry[];
}

export type ExecutionOutcome = 'completed' | 'compensated' | 'failed' | 'cancelled' | 'parked';

/** How an execution ended: the terminal record fields, or parked (still running in the store). */
export interface ExecutionResult {
  readonly outcome: ExecutionOutcome;
  readonly output: Json | null;
  readonly reason: string | null;
}

type Compensation =
  | {
      readonly kind: 'step';
      readonly name: string;
      readonly result: Json;
      readonly fn: (ctx: StepContext, result: never, failure: SagaFailure) => Promise<void> | void;
    }
  | {
      readonly kind: 'send';
      readonly name: string;
      readonly entity: AnyEntityDefinition;
      readonly id: string;
      readonly command: string;
      readonly input: (failure: SagaFailure) => unknown;
    };

interface SendCall {
  readonly entity: AnyEntityDefinition;
  readonly id: string;
  readonly command: string;
  readonly input: unknown;
}

/**
 * A promise that never settles: what a parked execution's user code awaits. A fresh one each
 * time, so nothing long-lived references the abandoned frames and they can be collected.
 */
function never(): Promise<never> {
  return new Promise<never>(() => {});
}

/**
 * One run of one saga in this process: from its journal (replay) to its end (completed,
 * compensated, failed, cancelled) or until the runtime stops (parked; a later start resumes it).
 *
 * Replay: every durable call asks the journal for its entries (CallOrder, saga-calls.ts): a
 * journaled one is handed back, in journal order, without running anything; a call the journal
 * has no entry for runs for real once the replay is over, and appends its entry. Calls may run
 * concurrently; their outcomes reach the code in journal order either way.
 */
export class SagaExecution {
  readonly id: string;
  readonly definition: SagaDefinition;
  readonly #services: SagaServices;
  readonly #effects: Effects;
  /** Aborted when this execution must stop where it is (the runtime stops, or the saga is evicted). */
  readonly #parking: AbortSignal;
  readonly #input: unknown;
  readonly #journal: JournalEntry[];
  readonly #calls: CallOrder;
  readonly #waits: Waits;
  readonly #traceparent: string;
  readonly #spans: SagaSpans;
  readonly #createdAtMs: number;
  #version: number;
  #nondeterminism: NonDeterminismError | null = null;
  #parked = false;
  /** The saga's code has returned or thrown: it may make no more calls. */
  #codeEnded = false;
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #waiting: WaitingCalls;
  readonly #compensations: Compensation[] = [];
  readonly #stepNames = new Set<string>();
  readonly #context: SagaContext;
  #result: ExecutionResult | undefined;
  /** The reason of a cancellation asked for (`cancel`), noticed at the code's next durable boundary. */
  #cancelAsked: string | null = null;
  /** The reason of the journaled cancellation (`$cancelled`), if any: the saga ends `cancelled`. */
  #cancelJournaled: string | null = null;
  /** The cancellation, once handed to the code in journal order: every later call rejects with it. */
  #cancelled: SagaCancelledError | null = null;

  constructor(
    services: SagaServices,
    definition: SagaDefinition,
    record: SagaRecord,
    journal: readonly JournalEntry[],
    parking: AbortSignal,
  ) {
    this.#services = services;
    this.#effects = services.effects;
    this.#parking = parking;
    this.id = record.id;
    this.definition = definition;
    this.#input = record.input;
    this.#journal = [...journal];
    this.#version = record.version;
    const start = this.#journal[0];
    let first = 0;
    if (start?.kind === 'event' && start.name === journalNames.start) {
      const traceparent = (start.result as { traceparent?: unknown } | null)?.traceparent;
      this.#traceparent =
        typeof traceparent === 'string' ? traceparent : childTraceparent(null, services.effects.random);
      first = 1;
    } else {
      // A saga created without the runtime's start entry (by hand, or by an older version).
      this.#traceparent = childTraceparent(null, services.effects.random);
    }
    this.#spans = new SagaSpans(this.#traceparent, this.id, definition.name);
    this.#createdAtMs = record.createdAt;
    this.#calls = new CallOrder(this.#journal, first, {
      yield: services.yield,
      mismatch: (entry, asked) => this.#mismatch(entry, asked),
      stalled: () => this.#waiting.settleSleep(),
      cancelled: (entry) => {
        this.#cancelled = new SagaCancelledError(this.id, cancelReasonOf(entry));
        return this.#cancelled;
      },
    });
    const cancelEntry = this.#journal.find((entry) => untag(entry.name).name === journalNames.cancelled);
    if (cancelEntry !== undefined) this.#cancelJournaled = cancelReasonOf(cancelEntry);
    this.#waits = new Waits({
      pending: () => this.#calls.pending,
      idle: (wakeAt) => services.sleeps.sleep(this.id, wakeAt),
      wakeIdle: () => services.sleeps.wake(this.id),
      now: () => this.#effects.clock.now(),
      yield: services.yield,
    });
    parking.addEventListener('abort', () => this.#waits.release(), { once: true });
    this.#waiting = new WaitingCalls({
      sagaId: this.id,
      calls: this.#calls,
      waits: this.#waits,
      now: () => this.#effects.clock.now(),
      append: (call, entry, extra, resultOf) => this.#append(call, entry, extra, resultOf),
      commit: (work) => this.#commit(work),
      scheduled: (dueAt) => services.sleeps.scheduled(dueAt),
      parked: () => this.#parking.aborted || this.#parked,
      park: () => this.#park(),
      codeEnded: () => this.#codeEnded,
      boundary: (call) => this.#boundary(call),
    });
    this.#context = this.#createContext();
  }

  /** The result, once `run` has settled. */
  get result(): ExecutionResult | undefined {
    return this.#result;
  }

  /** A durable timer of this saga fired at `nowMs` (a sleep's or a signal wait's). */
  wake(nowMs: number): void {
    this.#waits.wake(nowMs);
  }

  /** A signal was delivered to this saga. */
  signalled(): void {
    this.#waits.signalled();
  }

  /**
   * The saga is asked to cancel (its request is durable): its code stops at its next durable
   * boundary — a call not yet started, or a sleep or signal wait, which ends now — where the
   * cancellation is journaled; a step already running finishes first. Then it compensates and
   * ends `cancelled`.
   */
  cancel(reason: string): void {
    if (this.#cancelAsked !== null) return;
    this.#cancelAsked = reason;
    this.#waits.cancelled();
  }

  /**
   * Runs the saga to its end. Resolves with how it ended; never rejects. When parked (the
   * runtime stopped, or a write failed for good) it resolves 'parked' and the saga stays
   * `running`/`compensating` in the store.
   */
  run(): Promise<ExecutionResult> {
    return new Promise<ExecutionResult>((resolve) => {
      this.#onParked = () => resolve(this.#finish('parked', null, null));
      void this.#runToEnd().then(resolve, (error) => {
        // #runToEnd handles every error; reaching here is a bug, which must not stay silent.
        this.#services.report({ sagaId: this.id, message: 'saga execution crashed', error });
        resolve(this.#finish('parked', null, null));
      });
    });
  }

  #onParked: () => void = () => {};

  #finish(outcome: ExecutionOutcome, output: Json | null, reason: string | null): ExecutionResult {
    if (this.#result === undefined && outcome !== 'parked') {
      const nowMs = this.#effects.clock.now();
      this.#spans.ended(outcome, reason, this.#createdAtMs, nowMs);
      this.#services.measure({
        kind: 'saga-ended',
        sagaType: this.definition.name,
        outcome,
        durationMs: Math.max(0, nowMs - this.#createdAtMs),
      });
    }
    this.#result ??= { outcome, output, reason };
    return this.#result;
  }

  /** Parks after a failure of the store, not of the saga's code; reports it unless the runtime stopped. */
  #reportAndPark(message: string, error: unknown): Promise<never> {
    if (!(error instanceof ClosedError)) this.#services.report({ sagaId: this.id, message, error });
    return this.#park();
  }

  /** Stops this execution where it is: user code awaiting a durable call never resumes. */
  #park(): Promise<never> {
    if (!this.#parked) {
      this.#parked = true;
      this.#waits.release();
      this.#onParked();
    }
    return never();
  }

  async #runToEnd(): Promise<ExecutionResult> {
    let output: unknown;
    let failure: Error | undefined;
    try {
      output = await this.definition.run(this.#context, this.#input);
    } catch (error) {
      failure = ensureError(error);
    }
    this.#codeEnded = true;
    // Waits (sleeps, signals) left have nothing to undo and end now; the slot is held again.
    await this.#waits.close();
    if (this.#parked) return never();
    if (this.#nondeterminism !== null) return this.#markFailed(this.#nondeterminism.message);
    // Journaled, a cancellation decides the end, whatever the code did with its error.
    const cancelled = this.#cancelJournaled;
    if (cancelled !== null) failure = this.#cancelled ?? new SagaCancelledError(this.id, cancelled);
    if (failure === undefined) return this.#complete(output);
    if (this.#calls.pending > 0) {
      // A concurrent call failed (Promise.all rejects at once) while others still run: their
      // outcomes are journaled and their compensations registered before compensating.
      await Promise.allSettled([...this.#inFlight]);
      // Both may have changed while the calls settled.
      const nondeterminism = this.#nondeterminism as NonDeterminismError | null;
      if ((this.#parked as boolean) || this.#parking.aborted) return this.#park();
      if (nondeterminism !== null) return this.#markFailed(nondeterminism.message);
    }
    return this.#compensate(failure);
  }

  async #complete(output: unknown): Promise<ExecutionResult> {
    const running = this.#calls.runningLabel;
    if (running !== undefined) {
      return this.#markFailed(
        `The saga's code returned while its call ${running} was still running: await every ctx call`,
      );
    }
    // Waits left behind (the loser of a Promise.race) end: they were released, and a journaled
    // outcome of theirs is still handed over, so the journal is read to its end.
    await Promise.allSettled([...this.#inFlight]);
    if (this.#parked || this.#parking.aborted) return this.#park();
    const unread = this.#calls.undelivered;
    if (unread !== undefined) {
      const { name } = untag(unread.name);
      return this.#markFailed(
        new NonDeterminismError(
          `Saga '${this.id}' returned, but its journal has more entries from position ${unread.sequence} ('${unread.kind}' '${name}'): the code changed since it ran`,
        ).message,
      );
    }
    let json: Json;
    try {
      json = toJson(`The output of saga '${this.definition.name}'`, output);
    } catch (error) {
      return this.#compensate(ensureError(error));
    }
    await this.#updateStatus('completed', { output: json });
    return this.#finish('completed', json, null);
  }

  /** Nobody claimed a journaled entry while the code waited: the code changed. */
  #mismatch(entry: JournalEntry, asked: { kind: JournalEntryKind; name: string } | null): Error {
    const held = untag(entry.name).name;
    const where = `Saga '${this.id}' (${this.definition.name}) is not deterministic: at journal position ${entry.sequence}`;
    this.#nondeterminism = new NonDeterminismError(
      asked === null
        ? `${where} the journal holds ${entry.kind} '${held}' but the code waits for nothing that matches it`
        : `${where} the code asked for ${asked.kind} '${asked.name}' but the journal holds ${entry.kind} '${held}'`,
      {
        details: {
          sagaId: this.id,
          sequence: entry.sequence,
          expected: asked,
          journaled: { kind: entry.kind, name: held },
        },
      },
    );
    this.#waits.release();
    return this.#nondeterminism;
  }

  // -------------------------------------------------------------------------------------------
  // Durable calls

  #createContext(): SagaContext {
    return {
      sagaId: this.id,
      traceparent: this.#traceparent,
      step: (name, fn, options) =>
        this.#call(`step '${name}'`, (call) => this.#step(call, name, fn, options ?? {})),
      send: (entity, id, command, input, options) =>
        this.#call(`send '${journalNames.send(entity?.name, command)}'`, (call) =>
          this.#send(
            call,
            { entity, id, command, input },
            options as SendOptions<AnyEntityDefinition, unknown> | undefined,
          ),
        ) as never,
      sleep: (name, durationMs) =>
        this.#call(`sleep '${name}'`, (call) => this.#waiting.sleep(call, name, durationMs), true),
      emit: (topic, record) => this.#call(`emit to '${topic}'`, (call) => this.#emit(call, topic, record)),
      now: () =>
        this.#call('now()', (call) =>
          this.#recorded(call, journalNames.now, () => this.#effects.clock.now()),
        ),
      random: () =>
        this.#call('random()', (call) =>
          this.#recorded(call, journalNames.random, () => this.#effects.random.next()),
        ),
      waitForSignal: <T>(name: string, options?: SignalOptions) =>
        this.#call(
          `waitForSignal '${name}'`,
          (call) => this.#waiting.waitForSignal(call, name, options ?? {}),
          true,
        ) as Promise<T>,
    };
  }

  /**
   * Starts one durable call of the saga's code: its index is taken now, synchronously, so the
   * calls' order is the order the code made them. Parks instead once the runtime stops.
   */
  #call<T>(label: string, fn: (call: CallRef) => Promise<T>, waits = false): Promise<T> {
    if (this.#nondeterminism !== null) return Promise.reject(this.#nondeterminism);
    if (this.#codeEnded) {
      return Promise.reject(
        new ValidationError(
          `Saga '${this.id}' called ${label} after its code had ended: await every ctx call`,
        ),
      );
    }
    if (this.#parked || this.#parking.aborted) return this.#park();
    if (this.#cancelled !== null) return Promise.reject(this.#cancelled);
    const running = this.#within(
      label,
      waits,
      async (call) => {
        // Work other than a wait needs the slot, which an execution whose calls all wait gave back.
        if (!waits) await this.#waits.active();
        return fn(call);
      },
      true,
    );
    this.#inFlight.add(running);
    // Handled here too, so a concurrent call nobody awaits any more (its Promise.all rejected
    // already) is no unhandled rejection.
    const forget = () => this.#inFlight.delete(running);
    running.then(forget, forget);
    return running;
  }

  /** Runs `fn` as a call in the call order (the saga's code's, cancellable, or the runtime's own). */
  async #within<T>(
    label: string,
    waits: boolean,
    fn: (call: CallRef) => Promise<T>,
    cancellable = false,
  ): Promise<T> {
    const call = this.#calls.begin(label, waits, cancellable);
    try {
      return await fn(call);
    } finally {
      this.#calls.end(call);
      this.#waits.reconsider();
    }
  }

  /**
   * Commits `entry` as the call's next journal entry, together with `extra` effects, in one
   * unit, and waits for its turn to reach the code. Returns what `extra` returned. Parks the
   * execution when the write fails for good.
   */
  #append<T>(
    call: CallRef,
    entry: Omit<JournalEntry, 'sagaId' | 'sequence' | 'at'>,
    extra?: (scope: UnitScope, sequence: number) => Promise<T>,
    resultOf?: (sequence: number) => Json,
  ): Promise<T> {
    return this.#calls.append(call, entry.name, async (sequence, name) => {
      const full: JournalEntry = {
        ...entry,
        name,
        result: resultOf === undefined ? entry.result : resultOf(sequence),
        sagaId: this.id,
        sequence,
        at: this.#effects.clock.now(),
      };
      const value = await this.#commit(async (scope) => {
        const extraValue = extra === undefined ? (undefined as T) : await extra(scope, sequence);
        await scope.tx.sagas.appendJournal(full);
        return extraValue;
      });
      return { entry: full, value };
    });
  }

  /** Submits a unit (Effects.commit's rule); parks the execution when it fails for good. */
  #commit<T>(work: (scope: UnitScope) => Promise<T>, options?: SubmitOptions): Promise<T> {
    return this.#effects.commit(
      work,
      this.#parking,
      (error) => this.#reportAndPark('a journal write failed; the saga is parked', error),
      options,
    );
  }

  /**
   * A durable boundary of a code's call, before it does anything for real: when the saga was
   * asked to cancel, the first call to get here journals the cancellation (tagged with its index:
   * on replay it answers that call's next ask) and rejects with it; later ones reject at once.
   */
  async #boundary(call: CallRef): Promise<void> {
    if (!call.cancellable || (this.#cancelAsked === null && this.#cancelJournaled === null)) return;
    await this.#calls.afterReplay();
    if (this.#cancelJournaled === null) {
      const reason = this.#cancelAsked!;
      // Rejected with the cancellation once handed over, unless another call journaled it first.
      await this.#calls.append(call, journalNames.cancelled, async (sequence) => {
        if (this.#cancelJournaled !== null) return { entry: undefined, value: undefined };
        const entry: JournalEntry = {
          sagaId: this.id,
          sequence,
          kind: 'event',
          name: `${journalNames.cancelled}#${call.index}`,
          status: 'completed',
          result: { reason },
          error: null,
          attempts: 0,
          at: this.#effects.clock.now(),
        };
        await this.#commit((scope) => scope.tx.sagas.appendJournal(entry));
        this.#cancelJournaled = reason;
        return { entry, value: undefined };
      });
    }
    throw this.#cancelled ?? new SagaCancelledError(this.id, this.#cancelJournaled!);
  }

  async #updateStatus(status: SagaStatus, change: { output?: Json; reason?: string }): Promise<void> {
    const version = this.#version;
    const ended = status !== 'running' && status !== 'compensating';
    const mailbox = this.#waiting.usedSignals || this.#cancelAsked !== null || this.#cancelJournaled !== null;
    this.#version = await this.#commit(async (scope) => {
      // Signals sent after the end are refused, so the mailbox goes with it.
      if (ended && mailbox) await deleteMailbox(scope, this.id);
      return scope.tx.sagas.update(this.id, { status, at: this.#effects.clock.now(), ...change }, version);
    });
  }

  /** `ctx.now()`, `ctx.random()`: `value()` journaled once, the journaled value on replay. */
  async #recorded(call: CallRef, name: string, value: () => number): Promise<number> {
    const journaled = await this.#calls.next(call, 'event', name);
    if (journaled !== undefined) return journaled.result as number;
    await this.#boundary(call);
    const result = value();
    await this.#append(call, { kind: 'event', name, status: 'completed', result, error: null, attempts: 1 });
    return result;
  }

  async #step<T>(
    call: CallRef,
    name: string,
    fn: (ctx: StepContext) => Promise<T> | T,
    options: StepOptions<T>,
  ): Promise<T> {
    requireRuntimeName('A step name', name);
    if (this.#stepNames.has(name)) {
      throw new ValidationError(
        `Saga '${this.definition.name}' runs step '${name}' twice: step names must be unique within a saga, because they make the idempotency key`,
      );
    }
    this.#stepNames.add(name);
    const timeoutMs =
      options.timeoutMs === undefined
        ? undefined
        : integerOption('timeoutMs', options.timeoutMs, 0, 1, 31_536_000_000);
    const deadlineAt = timeoutMs === undefined ? undefined : await this.#stepDeadline(call, name, timeoutMs);
    const journaled = await this.#calls.next(call, 'step', name);
    if (journaled !== undefined) {
      if (journaled.status === 'failed') throw this.#failureFromJournal(name, journaled);
      this.#registerStepCompensation(name, journaled.result, options);
      return journaled.result as T;
    }
    await this.#boundary(call);
    const span = this.#spans.start(`saga.step ${name}`, { 'meridian.saga.step': name });
    try {
      const value = await this.#runStep(call, name, fn, options, deadlineAt, timeoutMs, span);
      endSpan(span);
      return value;
    } catch (error) {
      endSpan(span, error);
      throw error;
    }
  }

  /** A step's attempts until one succeeds, its retries are spent or its deadline passes; journals the outcome. */
  async #runStep<T>(
    call: CallRef,
    name: string,
    fn: (ctx: StepContext) => Promise<T> | T,
    options: StepOptions<T>,
    deadlineAt: number | undefined,
    timeoutMs: number | undefined,
    span: Span,
  ): Promise<T> {
    const strategy = toRetryStrategy(options.retry);
    let lastError: Error | undefined;
    let attempt = 0;
    let delayMs = 0;
    for (;;) {
      if (deadlineAt !== undefined && this.#effects.clock.now() >= deadlineAt) {
        lastError = new StepTimeoutError(
          `Step '${name}' passed its deadline (timeoutMs ${timeoutMs}) after ${attempt} attempt(s)${lastError === undefined ? '' : `; last error: ${lastError.message}`}`,
        );
        break;
      }
      attempt++;
      let value: Json;
      try {
        const raw = await this.#attempt(
          name,
          `${this.id}/${name}`,
          attempt,
          deadlineAt,
          (ctx) => underPolicy(fn, ctx, options.policy),
          span,
        );
        value = toJson(`The result of step '${name}'`, raw);
      } catch (error) {
        if (this.#parking.aborted) return this.#park();
        lastError = ensureError(error);
        const nextDelayMs = strategy.nextDelayMs(attempt, lastError, this.#effects.random, delayMs);
        this.#spans.attemptFailed(span, attempt, lastError, nextDelayMs);
        this.#measureAttempt(name, nextDelayMs === undefined ? 'failed' : 'retried');
        if (nextDelayMs === undefined) break;
        delayMs = nextDelayMs;
        const untilDeadline =
          deadlineAt === undefined ? delayMs : Math.max(0, deadlineAt - this.#effects.clock.now());
        await this.#wait(Math.min(delayMs, untilDeadline));
        if (this.#parking.aborted) return this.#park();
        continue;
      }
      await this.#append(call, {
        kind: 'step',
        name,
        status: 'completed',
        result: value,
        error: null,
        attempts: attempt,
      });
      this.#measureAttempt(name, 'succeeded');
      this.#registerStepCompensation(name, value, options);
      return value as T;
    }
    assert(lastError !== undefined, 'a step gives up only after an error or its deadline');
    const causeCode = codeOf(lastError);
    const causeMessage = truncateMessage(lastError.message);
    await this.#append(call, {
      kind: 'step',
      name,
      status: 'failed',
      result: { code: causeCode },
      error: causeMessage,
      attempts: attempt,
    });
    throw new StepFailedError(name, attempt, causeMessage, causeCode, { cause: lastError });
  }

  #measureAttempt(step: string, outcome: 'succeeded' | 'retried' | 'failed'): void {
    this.#services.measure({ kind: 'step-attempt', sagaType: this.definition.name, step, outcome });
  }

  /** A step's deadline: journaled before its first attempt, so it survives restarts. */
  async #stepDeadline(call: CallRef, name: string, timeoutMs: number): Promise<number> {
    const journaled = await this.#calls.next(call, 'event', journalNames.deadline(name));
    if (journaled !== undefined) return (journaled.result as { deadlineAt: number }).deadlineAt;
    const deadlineAt = this.#effects.clock.now() + timeoutMs;
    await this.#append(call, {
      kind: 'event',
      name: journalNames.deadline(name),
      status: 'completed',
      result: { deadlineAt },
      error: null,
      attempts: 0,
    });
    return deadlineAt;
  }

  #registerStepCompensation<T>(name: string, result: Json, options: StepOptions<T>): void {
    if (options.compensate === undefined) return;
    this.#compensations.push({
      kind: 'step',
      name,
      result,
      fn: options.compensate as Extract<Compensation, { kind: 'step' }>['fn'],
    });
  }

  #failureFromJournal(name: string, entry: JournalEntry): StepFailedError {
    const code = (entry.result as { code?: unknown } | null)?.code;
    return new StepFailedError(
      name,
      entry.attempts,
      entry.error ?? 'unknown error',
      typeof code === 'string' ? code : null,
    );
  }

  /**
   * One attempt of a step or compensation function, raced against the deadline and the end of
   * the drain. Its AbortSignal fires on either.
   */
  #attempt<T>(
    step: string,
    idempotencyKey: string,
    attempt: number,
    deadlineAt: number | undefined,
    fn: (ctx: StepContext) => Promise<T> | T,
    span: Span,
  ): Promise<T> {
    const controller = new AbortController();
    const random = this.#effects.random;
    const parent = this.#traceparent;
    let traceparent: string | undefined;
    const ctx: StepContext = {
      sagaId: this.id,
      step,
      idempotencyKey,
      attempt,
      signal: controller.signal,
      // Made on first use: most steps never pass their trace context on.
      get traceparent() {
        traceparent ??= traceparentOf(span, () => childTraceparent(parent, random));
        return traceparent;
      },
    };
    return new Promise<T>((resolve, reject) => {
      let timer: { cancel(): void } | undefined;
      const onHalt = () => {
        const error = new ClosedError(`The runtime stopped while step '${step}' was running`);
        controller.abort(error);
        reject(error);
      };
      const cleanup = () => {
        timer?.cancel();
        this.#services.halted.removeEventListener('abort', onHalt);
      };
      if (this.#services.halted.aborted) return onHalt();
      this.#services.halted.addEventListener('abort', onHalt, { once: true });
      if (deadlineAt !== undefined) {
        timer = this.#effects.timers.setTimeout(
          () => {
            const error = new StepTimeoutError(
              `Step '${step}' passed its deadline during attempt ${attempt}`,
            );
            controller.abort(error);
            reject(error);
          },
          Math.max(0, deadlineAt - this.#effects.clock.now()),
        );
      }
      let running: Promise<T>;
      try {
        // The step's span is active in its code: what it calls (traced HTTP clients) nests under it.
        running = Promise.resolve(withSpan(span, () => fn(ctx)));
      } catch (error) {
        cleanup();
        reject(error);
        return;
      }
      running.then(
        (value) => {
          cleanup();
          resolve(value);
        },
        (error) => {
          cleanup();
          reject(error);
        },
      );
    });
  }

  /** Waits `delayMs` on the Timers port; returns early when the execution must park. */
  #wait(delayMs: number): Promise<void> {
    return this.#effects.wait(delayMs, this.#parking);
  }

  async #send(
    call: CallRef,
    send: SendCall,
    options: SendOptions<AnyEntityDefinition, unknown> | undefined,
  ): Promise<unknown> {
    const { entity, id, command } = send;
    requireRuntimeId(`The id of entity '${entity?.name}'`, id);
    if (entity?.kind !== 'entity') throw new ValidationError(`ctx.send needs an entity definition`);
    const name = journalNames.send(entity.name, command);
    const entry = await this.#sendOutcome(call, 'step', name, send);
    assert(!(entry instanceof Error), 'a step send journals its rejection');
    if (entry.status === 'failed') throw this.#failureFromJournal(name, entry);
    this.#registerSendCompensation(name, entity, id, entry.result, options);
    return entry.result;
  }

  /**
   * A send's (or a send compensation's) entry: journaled, or applied now. A routed request that
   * was journaled (the saga stopped while it waited for the reply) is awaited again, not re-sent.
   */
  async #sendOutcome(
    call: CallRef,
    kind: SendKind,
    name: string,
    send: SendCall,
  ): Promise<JournalEntry | Error> {
    const request = journalNames.request(kind, name);
    const first = await this.#calls.nextOf(call, [
      ['event', request],
      [kind, name],
    ]);
    if (first === undefined) return this.#applySend(call, kind, name, send);
    if (first.kind === kind) return first;
    const requestId = (first.result as { requestId: string }).requestId;
    const reply = await this.#calls.next(call, kind, name);
    if (reply !== undefined) return reply;
    const remote = this.#services.remote;
    assert(remote !== undefined, 'a journaled request is resumed on the cluster shape');
    return this.#awaitReply(call, kind, name, requestId, remote);
  }

  /**
   * Applies a command to an entity as the saga's next journal entry of `kind`. When this node
   * owns the entity (always, embedded) the command and its entry commit in one unit. When
   * another node owns it, the request is journaled and routed to that node (through the outbox,
   * in the same unit), the reply awaited, and then journaled: exactly once across crashes on
   * either side, since the owner applies a request id once. A step's rejection is journaled as a
   * failed entry; a compensation's is returned, not journaled (the saga then fails).
   */
  async #applySend(
    call: CallRef,
    kind: SendKind,
    name: string,
    send: SendCall,
  ): Promise<JournalEntry | Error> {
    await this.#boundary(call);
    const remote = this.#services.remote;
    if (remote !== undefined && !remote.owns(send.id)) {
      const requestId = await this.#sendRequest(call, kind, name, send, remote);
      return this.#awaitReply(call, kind, name, requestId, remote);
    }
    const span = this.#spans.start(`saga.${kind === 'step' ? 'send' : 'compensate'} ${name}`, {
      'meridian.entity': send.entity.name,
      'meridian.entity.id': send.id,
      'meridian.command': send.command,
    });
    try {
      const traceparent = traceparentOf(span, () => this.#traceparent);
      const outcome = await withSpan(span, () => this.#applyLocally(call, kind, name, send, traceparent));
      if (kind === 'compensation') {
        const outcomeOf = outcome instanceof Error ? 'failed' : 'succeeded';
        this.#services.measure({ kind: 'compensation', sagaType: this.definition.name, outcome: outcomeOf });
      }
      endSpan(
        span,
        outcome instanceof Error
          ? outcome
          : outcome.status === 'failed'
            ? new Error(outcome.error ?? 'rejected')
            : undefined,
      );
      return outcome;
    } catch (error) {
      endSpan(span, error);
      throw error;
    }
  }

  /** A send applied on this node: the command and its journal entry in one unit. */
  #applyLocally(
    call: CallRef,
    kind: SendKind,
    name: string,
    send: SendCall,
    traceparent: string,
  ): Promise<JournalEntry | Error> {
    return this.#calls.append<JournalEntry | Error>(call, name, async (sequence, tagged) => {
      const nowMs = this.#effects.clock.now();
      const request: CommandRequest = { ...send, traceparent, nowMs, random: this.#effects.random };
      // Planted bug (tests only, src/planted-bugs.ts): the step's entry commits first, without
      // the command's effect, which commits in a unit of its own after it.
      const journalFirst = plantedBug === 'journal-before-effect' && kind === 'step';
      const outcome = await this.#commit(
        async (scope) => {
          const applied = journalFirst
            ? await outcomeWithoutEffect(scope, request)
            : await applyCommand(scope, request);
          if (!applied.ok && kind === 'compensation') return applied.error;
          const entry = sendEntry(
            this.id,
            sequence,
            kind,
            tagged,
            nowMs,
            applied.ok ? applied : applied.error,
          );
          await scope.tx.sagas.appendJournal(entry);
          return entry;
        },
        { reads: [{ entity: send.entity.name, id: send.id }] },
      );
      if (journalFirst && !(outcome instanceof Error) && outcome.status === 'completed')
        await this.#commit((scope) => applyCommand(scope, request));
      return outcome instanceof Error
        ? { entry: undefined, value: outcome }
        : { entry: outcome, value: outcome };
    });
  }

  /** Journals a routed request and publishes it in the same unit; returns its id. */
  #sendRequest(
    call: CallRef,
    kind: SendKind,
    name: string,
    send: SendCall,
    remote: RemoteEntities,
  ): Promise<string> {
    const input = toJson(`The input of '${name}'`, send.input);
    let requestId = '';
    return this.#append(
      call,
      {
        kind: 'event',
        name: journalNames.request(kind, name),
        status: 'completed',
        // Filled in below, once the sequence (which names the request) is known.
        result: null,
        error: null,
        attempts: 1,
      },
      async (scope, sequence) => {
        requestId = `saga/${this.id}/${sequence}`;
        const request: WorkRequest = {
          kind: 'send',
          requestId,
          entity: send.entity.name,
          id: send.id,
          command: send.command,
          input,
          traceparent: this.#traceparent,
        };
        await remote.publish(scope, request, this.id);
        return requestId;
      },
      (sequence) => ({ requestId: `saga/${this.id}/${sequence}`, id: send.id }),
    );
  }

  /** Waits for a routed request's reply and journals it (parks when the saga must stop). */
  async #awaitReply(
    call: CallRef,
    kind: SendKind,
    name: string,
    requestId: string,
    remote: RemoteEntities,
  ): Promise<JournalEntry | Error> {
    let reply: StoredReply;
    try {
      reply = await remote.awaitReply(requestId, this.#parking);
    } catch (error) {
      if (this.#parking.aborted) return this.#park();
      // The store could not be read while waiting (a PostgreSQL failover, a lost connection):
      // nothing the saga's code did failed, so the saga must not fail or compensate. It stops
      // here and is loaded again, and waits for the reply anew.
      return this.#reportAndPark('waiting for a routed reply failed; the saga is parked', error);
    }
    if (!reply.ok && kind === 'compensation') {
      return new Error(reply.error ?? 'the command was rejected');
    }
    return this.#calls.append<JournalEntry | Error>(call, name, async (sequence, tagged) => {
      const entry = sendEntry(
        this.id,
        sequence,
        kind,
        tagged,
        this.#effects.clock.now(),
        reply.ok ? { reply: reply.reply } : errorFromReply(reply),
      );
      // The reply was read elsewhere, maybe from a server that lost it since (a PostgreSQL
      // primary killed before its standby had it): journaled only where it is stored, else the
      // saga parks and, reloaded, waits for the reply again.
      await this.#commit(async (scope) => {
        await scope.tx.replies.require(requestId);
        await scope.tx.sagas.appendJournal(entry);
      });
      return { entry, value: entry };
    });
  }

  #registerSendCompensation(
    name: string,
    entity: AnyEntityDefinition,
    id: string,
    reply: Json,
    options: SendOptions<AnyEntityDefinition, unknown> | undefined,
  ): void {
    const compensate = options?.compensate as { command: string; input: unknown } | undefined;
    if (compensate === undefined) return;
    const input = compensate.input;
    this.#compensations.push({
      kind: 'send',
      name,
      entity,
      id,
      command: compensate.command as CommandName<AnyEntityDefinition>,
      input: (failure) =>
        typeof input === 'function'
          ? (input as (reply: Json, failure: SagaFailure) => unknown)(reply, failure)
          : input,
    });
  }

  async #emit(call: CallRef, topic: string, record: EmitRecord): Promise<void> {
    requireRuntimeName('An emit topic', topic);
    const name = journalNames.emit(topic);
    if ((await this.#calls.next(call, 'event', name)) !== undefined) return;
    await this.#boundary(call);
    if (record?.key !== undefined && record.key !== null && typeof record.key !== 'string')
      throw new ValidationError(`An emitted record's key must be a string or null`);
    const produced = this.#effects.record(topic, record, this.#traceparent, {
      [headers.saga]: this.id,
      [headers.sagaType]: this.definition.name,
    });
    await this.#services.ensureTopic(topic);
    await this.#append(
      call,
      { kind: 'event', name, status: 'completed', result: null, error: null, attempts: 1 },
      (scope) => scope.publish(topic, [produced]),
    );
  }

  // -------------------------------------------------------------------------------------------
  // Ending

  async #markFailed(text: string): Promise<ExecutionResult> {
    const reason = truncateMessage(text);
    await this.#updateStatus('failed', { reason });
    return this.#finish('failed', null, reason);
  }

  /**
   * The saga's code failed: journal why (with the switch to `compensating`), then undo the
   * finished calls in reverse order of their entries, each until it succeeds, journaling each.
   */
  async #compensate(error: Error): Promise<ExecutionResult> {
    let failure: SagaFailure;
    try {
      failure = await this.#within('$failed', false, (call) => this.#journalFailure(call, error));
    } catch (caught) {
      return this.#markFailed(ensureError(caught).message);
    }
    const reason = failure.message;
    for (const compensation of [...this.#compensations].reverse()) {
      if (this.#parking.aborted) return this.#park();
      let failed: string | undefined;
      try {
        failed = await this.#within(`compensation of '${compensation.name}'`, false, (call) =>
          compensation.kind === 'step'
            ? this.#compensateStep(call, compensation, failure)
            : this.#compensateSend(call, compensation, failure),
        );
      } catch (caught) {
        return this.#markFailed(ensureError(caught).message);
      }
      if (failed !== undefined) return this.#markFailed(`${reason}; then ${failed}`);
    }
    const outcome = this.#cancelJournaled === null ? 'compensated' : 'cancelled';
    await this.#updateStatus(outcome, { reason });
    return this.#finish(outcome, null, reason);
  }

  /** The `$failed` entry: journaled with the switch to `compensating`, or replayed. */
  async #journalFailure(call: CallRef, error: Error): Promise<SagaFailure> {
    const journaled = await this.#calls.next(call, 'event', journalNames.failed);
    if (journaled !== undefined) return failureFromEntry(journaled);
    const failure = failureOf(error);
    const version = this.#version;
    this.#version = await this.#append(
      call,
      {
        kind: 'event',
        name: journalNames.failed,
        status: 'failed',
        result: { code: failure.code, step: failure.step, details: failure.details },
        error: failure.message,
        attempts: 1,
      },
      (scope) =>
        scope.tx.sagas.update(
          this.id,
          { status: 'compensating', reason: failure.message, at: this.#effects.clock.now() },
          version,
        ),
    );
    return failure;
  }

  /** Runs a step's compensation until it succeeds; returns why it cannot, for a terminal error. */
  async #compensateStep(
    call: CallRef,
    compensation: Extract<Compensation, { kind: 'step' }>,
    failure: SagaFailure,
  ): Promise<string | undefined> {
    if ((await this.#calls.next(call, 'compensation', compensation.name)) !== undefined) return undefined;
    const span = this.#spans.start(`saga.compensate ${compensation.name}`, {
      'meridian.saga.step': compensation.name,
    });
    try {
      const failed = await this.#runCompensation(call, compensation, failure, span);
      endSpan(span, failed === undefined ? undefined : new Error(failed));
      this.#services.measure({
        kind: 'compensation',
        sagaType: this.definition.name,
        outcome: failed === undefined ? 'succeeded' : 'failed',
      });
      return failed;
    } catch (error) {
      endSpan(span, error);
      throw error;
    }
  }

  async #runCompensation(
    call: CallRef,
    compensation: Extract<Compensation, { kind: 'step' }>,
    failure: SagaFailure,
    span: Span,
  ): Promise<string | undefined> {
    let delayMs = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#attempt(
          compensation.name,
          `${this.id}/${compensation.name}/compensate`,
          attempt,
          undefined,
          (ctx) => compensation.fn(ctx, compensation.result as never, failure),
          span,
        );
      } catch (caught) {
        if (this.#parking.aborted) return this.#park();
        const error = ensureError(caught);
        if (isTerminalError(error)) {
          this.#spans.attemptFailed(span, attempt, error, undefined);
          return `compensation of '${compensation.name}' failed terminally: ${error.message}`;
        }
        // Visible while it lasts: the saga's reason names the failing compensation.
        await this.#updateStatus('compensating', {
          reason: truncateMessage(
            `${failure.message}; compensation of '${compensation.name}' failed (attempt ${attempt}, retrying): ${error.message}`,
          ),
        });
        delayMs =
          this.#services.compensationRetry.nextDelayMs(attempt, error, this.#effects.random, delayMs) ?? 0;
        this.#spans.attemptFailed(span, attempt, error, delayMs);
        await this.#wait(delayMs);
        if (this.#parking.aborted) return this.#park();
        continue;
      }
      await this.#append(call, {
        kind: 'compensation',
        name: compensation.name,
        status: 'completed',
        result: null,
        error: null,
        attempts: attempt,
      });
      return undefined;
    }
  }

  /** Applies a send's compensation command with its journal entry, exactly once. */
  async #compensateSend(
    call: CallRef,
    compensation: Extract<Compensation, { kind: 'send' }>,
    failure: SagaFailure,
  ): Promise<string | undefined> {
    let input: unknown;
    try {
      input = compensation.input(failure);
    } catch (error) {
      return `compensation of '${compensation.name}' could not compute its input: ${ensureError(error).message}`;
    }
    const send = { entity: compensation.entity, id: compensation.id, command: compensation.command, input };
    const outcome = await this.#sendOutcome(call, 'compensation', compensation.name, send);
    if (outcome instanceof Error) {
      return `compensation '${compensation.entity.name}.${compensation.command}' of '${compensation.name}' was rejected: ${outcome.message}`;
    }
    return undefined;
  }
}

/**
 * Planted bug 'journal-before-effect' (tests only, src/planted-bugs.ts): the command's outcome,
 * worked out on a savepoint that is rolled back, so that its entry commits without its effect.
 */
async function outcomeWithoutEffect(scope: UnitScope, request: CommandRequest): Promise<CommandOutcome> {
  const rollback = new Error('the planted bug rolls the command back');
  let outcome: CommandOutcome | undefined;
  try {
    await scope.isolate(async (inner) => {
      outcome = await applyCommand(inner, request);
      throw rollback;
    });
  } catch (error) {
    if (error !== rollback) throw error;
  }
  assert(outcome !== undefined, 'the command ran before its savepoint rolled back');
  return outcome;
}

/**
 * Runs one attempt of a step under its policy. The step sees the policy's signal, which follows
 * the attempt's own (deadline, drain) and also fires when the policy gives up on the call.
 */
function underPolicy<T>(
  fn: (ctx: StepContext) => Promise<T> | T,
  ctx: StepContext,
  policy: Policy<T> | undefined,
): Promise<T> | T {
  if (policy === undefined) return fn(ctx);
  return policy.execute((policyContext) => {
    // Keep ctx's lazily made fields (traceparent) and replace only the signal.
    const stepContext: StepContext = Object.create(ctx, { signal: { get: () => policyContext.signal } });
    return fn(stepContext);
  }, ctx.signal);
}
