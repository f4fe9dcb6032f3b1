import { assert } from '../assert.ts';
import { ClosedError, ensureError, isMeridianError, isTerminalError, ValidationError } from '../errors.ts';
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
import { toJson } from './codec.ts';
import type { UnitScope } from './commit-path.ts';
import type {
  AnyEntityDefinition,
  CommandName,
  EmitRecord,
  SagaContext,
  SagaDefinition,
  SendOptions,
  StepContext,
  StepOptions,
} from './definitions.ts';
import { type Effects, truncateMessage } from './effects.ts';
import { applyCommand, headers } from './entity-command.ts';
import { NonDeterminismError, StepFailedError, StepTimeoutError } from './errors.ts';
import { requireRuntimeId, requireRuntimeName } from './options.ts';
import { childTraceparent } from './trace.ts';
import { errorFromReply, type WorkRequest } from './work-requests.ts';

/** Journal names the runtime writes for itself. User names cannot start with '$'. */
export const journalNames = {
  /** Sequence 0 of every saga: the trace context it runs in. */
  start: '$start',
  /** The saga's code failed: the reason, written with the switch to `compensating`. */
  failed: '$failed',
  /** A step's deadline, written before its first attempt so it survives restarts. */
  deadline: (step: string) => `$deadline:${step}`,
  send: (entity: string, command: string) => `${entity}.${command}`,
  /**
   * A send (or a send's compensation) to an entity another node owns: the request, journaled with
   * its id before the reply is awaited (cluster shape). The reply follows as the entry itself.
   */
  request: (kind: 'step' | 'compensation', name: string) => `$request:${kind}:${name}`,
  emit: (topic: string) => `emit:${topic}`,
} as const;

/** The timer kind that wakes a sleeping saga. */
export const sagaWakeTimerKind = 'meridian.saga.wake';

/** Where a saga's durable sleeps go: the durable timer table's firing, and the saga scheduler. */
export interface SagaSleeps {
  /** A durable timer now exists at `dueAt`. */
  scheduled(dueAt: number): void;
  /** Resolves once a timer of this saga fired at or after `wakeAt`, or the saga must park. */
  sleep(sagaId: string, wakeAt: number): Promise<void>;
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

type SendKind = 'step' | 'compensation';

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

export type ExecutionOutcome = 'completed' | 'compensated' | 'failed' | 'parked';

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
      readonly fn: (ctx: StepContext, result: never) => Promise<void> | void;
    }
  | {
      readonly kind: 'send';
      readonly name: string;
      readonly entity: AnyEntityDefinition;
      readonly id: string;
      readonly command: string;
      readonly input: () => unknown;
    };

/**
 * A promise that never settles: what a parked execution's user code awaits. A fresh one each
 * time, so nothing long-lived references the abandoned frames and they can be collected.
 */
function never(): Promise<never> {
  return new Promise<never>(() => {});
}

function codeOf(error: Error): string | null {
  return isMeridianError(error) ? error.code : null;
}

/**
 * One run of one saga in this process: from its journal (replay) to its end (completed,
 * compensated, failed) or until the runtime stops (parked; a later start resumes it).
 *
 * Replay: every durable call takes the next journal position. When the journal has an entry
 * there, the call must match it (kind and name) and returns its journaled outcome without
 * running anything; a mismatch is non-determinism. Past the journal's end, calls run for real
 * and append their entry. The journal is dense, and calls must be awaited one at a time, so
 * positions are well defined and completion order equals call order.
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
  readonly #traceparent: string;
  #cursor: number;
  #version: number;
  #busy: string | null = null;
  #nondeterminism: NonDeterminismError | null = null;
  #parked = false;
  readonly #compensations: Compensation[] = [];
  readonly #stepNames = new Set<string>();
  readonly #context: SagaContext;
  #result: ExecutionResult | undefined;

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
    if (start?.kind === 'event' && start.name === journalNames.start) {
      const traceparent = (start.result as { traceparent?: unknown } | null)?.traceparent;
      this.#traceparent =
        typeof traceparent === 'string' ? traceparent : childTraceparent(null, services.effects.random);
      this.#cursor = 1;
    } else {
      // A saga created without the runtime's start entry (by hand, or by an older version).
      this.#traceparent = childTraceparent(null, services.effects.random);
      this.#cursor = 0;
    }
    this.#context = this.#createContext();
  }

  /** The result, once `run` has settled. */
  get result(): ExecutionResult | undefined {
    return this.#result;
  }

  /** Journal entries this execution knows (replayed and appended). */
  get journalLength(): number {
    return this.#journal.length;
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
    this.#result ??= { outcome, output, reason };
    return this.#result;
  }

  /** Stops this execution where it is: user code awaiting a durable call never resumes. */
  #park(): Promise<never> {
    if (!this.#parked) {
      this.#parked = true;
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
    if (this.#parked) return never();
    if (this.#nondeterminism !== null) return this.#markFailed(this.#nondeterminism.message);
    if (this.#busy !== null) {
      return this.#markFailed(
        `The saga's code ${failure === undefined ? 'returned' : 'threw'} while its call '${this.#busy}' was still running: await every ctx call`,
      );
    }
    if (failure === undefined) {
      const unread = this.#journal[this.#cursor];
      if (unread !== undefined) {
        return this.#markFailed(
          new NonDeterminismError(
            `Saga '${this.id}' returned, but its journal has more entries from position ${unread.sequence} ('${unread.kind}' '${unread.name}'): the code changed since it ran`,
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
    return this.#compensate(failure);
  }

  // -------------------------------------------------------------------------------------------
  // Durable calls

  #createContext(): SagaContext {
    return {
      sagaId: this.id,
      traceparent: this.#traceparent,
      step: (name, fn, options) => this.#call(name, () => this.#step(name, fn, options ?? {})),
      send: (entity, id, command, input, options) =>
        this.#call(journalNames.send(entity.name, command), () =>
          this.#send(
            entity,
            id,
            command,
            input,
            options as SendOptions<AnyEntityDefinition, unknown> | undefined,
          ),
        ) as never,
      sleep: (name, durationMs) => this.#call(name, () => this.#sleep(name, durationMs)),
      emit: (topic, record) => this.#call(journalNames.emit(topic), () => this.#emit(topic, record)),
    };
  }

  /** Admits one durable call at a time, and parks instead of running once the runtime stops. */
  async #call<T>(label: string, fn: () => Promise<T>): Promise<T> {
    if (this.#nondeterminism !== null) throw this.#nondeterminism;
    if (this.#busy !== null) {
      throw new ValidationError(
        `Saga '${this.id}' called '${label}' while '${this.#busy}' is still running: await each ctx call before the next`,
      );
    }
    if (this.#parked || this.#parking.aborted) return this.#park();
    this.#busy = label;
    try {
      return await fn();
    } finally {
      this.#busy = null;
    }
  }

  /** The journaled entry at the cursor, checked against what the code asks for now. */
  #replay(kind: JournalEntryKind, name: string): JournalEntry | undefined {
    const entry = this.#journal[this.#cursor];
    if (entry === undefined) return undefined;
    if (entry.kind !== kind || entry.name !== name) {
      this.#nondeterminism = new NonDeterminismError(
        `Saga '${this.id}' (${this.definition.name}) is not deterministic: at journal position ${entry.sequence} the code asked for ${kind} '${name}' but the journal holds ${entry.kind} '${entry.name}'`,
        {
          details: {
            sagaId: this.id,
            sequence: entry.sequence,
            expected: { kind, name },
            journaled: { kind: entry.kind, name: entry.name },
          },
        },
      );
      throw this.#nondeterminism;
    }
    this.#cursor++;
    return entry;
  }

  /**
   * Commits `entry` as the next journal position, together with `extra` effects, in one unit.
   * Returns what `extra` returned. Parks the execution when the write fails for good.
   */
  async #append<T>(
    entry: Omit<JournalEntry, 'sagaId' | 'sequence' | 'at'>,
    extra?: (scope: UnitScope) => Promise<T>,
  ): Promise<T> {
    const full: JournalEntry = {
      ...entry,
      sagaId: this.id,
      sequence: this.#journal.length,
      at: this.#effects.clock.now(),
    };
    const value = await this.#commit(async (scope) => {
      const extraValue = extra === undefined ? (undefined as T) : await extra(scope);
      await scope.tx.sagas.appendJournal(full);
      return extraValue;
    });
    this.#journal.push(full);
    this.#cursor = this.#journal.length;
    return value;
  }

  /** Submits a unit (Effects.commit's rule); parks the execution when it fails for good. */
  #commit<T>(work: (scope: UnitScope) => Promise<T>): Promise<T> {
    return this.#effects.commit(work, this.#parking, (error) => {
      if (!(error instanceof ClosedError)) {
        this.#services.report({
          sagaId: this.id,
          message: 'a journal write failed; the saga is parked',
          error,
        });
      }
      return this.#park();
    });
  }

  async #updateStatus(status: SagaStatus, change: { output?: Json; reason?: string }): Promise<void> {
    const version = this.#version;
    this.#version = await this.#commit((scope) =>
      scope.tx.sagas.update(this.id, { status, at: this.#effects.clock.now(), ...change }, version),
    );
  }

  async #step<T>(
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
    const deadlineAt = timeoutMs === undefined ? undefined : await this.#stepDeadline(name, timeoutMs);
    const journaled = this.#replay('step', name);
    if (journaled !== undefined) {
      if (journaled.status === 'failed') throw this.#failureFromJournal(journaled);
      this.#registerStepCompensation(name, journaled.result, options);
      return journaled.result as T;
    }
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
        const raw = await this.#attempt(name, `${this.id}/${name}`, attempt, deadlineAt, (ctx) =>
          underPolicy(fn, ctx, options.policy),
        );
        value = toJson(`The result of step '${name}'`, raw);
      } catch (error) {
        if (this.#parking.aborted) return this.#park();
        lastError = ensureError(error);
        const nextDelayMs = strategy.nextDelayMs(attempt, lastError, this.#effects.random, delayMs);
        if (nextDelayMs === undefined) break;
        delayMs = nextDelayMs;
        const untilDeadline =
          deadlineAt === undefined ? delayMs : Math.max(0, deadlineAt - this.#effects.clock.now());
        await this.#wait(Math.min(delayMs, untilDeadline));
        if (this.#parking.aborted) return this.#park();
        continue;
      }
      await this.#append({
        kind: 'step',
        name,
        status: 'completed',
        result: value,
        error: null,
        attempts: attempt,
      });
      this.#registerStepCompensation(name, value, options);
      return value as T;
    }
    assert(lastError !== undefined, 'a step gives up only after an error or its deadline');
    const causeCode = codeOf(lastError);
    await this.#append({
      kind: 'step',
      name,
      status: 'failed',
      result: { code: causeCode },
      error: truncateMessage(lastError.message),
      attempts: attempt,
    });
    throw new StepFailedError(name, attempt, lastError.message, causeCode, { cause: lastError });
  }

  /** A step's deadline: journaled before its first attempt, so it survives restarts. */
  async #stepDeadline(name: string, timeoutMs: number): Promise<number> {
    const journaled = this.#replay('event', journalNames.deadline(name));
    if (journaled !== undefined) return (journaled.result as { deadlineAt: number }).deadlineAt;
    const deadlineAt = this.#effects.clock.now() + timeoutMs;
    await this.#append({
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
      fn: options.compensate as (ctx: StepContext, result: never) => Promise<void> | void,
    });
  }

  #failureFromJournal(entry: JournalEntry): StepFailedError {
    const code = (entry.result as { code?: unknown } | null)?.code;
    return new StepFailedError(
      entry.name,
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
        traceparent ??= childTraceparent(parent, random);
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
        running = Promise.resolve(fn(ctx));
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
    entity: AnyEntityDefinition,
    id: string,
    command: string,
    input: unknown,
    options: SendOptions<AnyEntityDefinition, unknown> | undefined,
  ): Promise<unknown> {
    requireRuntimeId(`The id of entity '${entity?.name}'`, id);
    if (entity?.kind !== 'entity') throw new ValidationError(`ctx.send needs an entity definition`);
    const name = journalNames.send(entity.name, command);
    const requestId = this.#pendingRequest('step', name);
    let entry = this.#replay('step', name);
    if (entry === undefined) {
      const applied = await this.#applySend('step', name, { entity, id, command, input }, requestId);
      assert(!(applied instanceof Error), 'a step send journals its rejection');
      entry = applied;
    }
    if (entry.status === 'failed') throw this.#failureFromJournal(entry);
    this.#registerSendCompensation(name, entity, id, entry.result, options);
    return entry.result;
  }

  /**
   * The request id of a routed send whose request is journaled at the cursor (the saga stopped
   * while it waited for the reply): consumed, so the reply is awaited again instead of re-sent.
   */
  #pendingRequest(kind: SendKind, name: string): string | undefined {
    const entry = this.#journal[this.#cursor];
    if (entry?.kind !== 'event' || entry.name !== journalNames.request(kind, name)) return undefined;
    this.#cursor++;
    return (entry.result as { requestId: string }).requestId;
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
    kind: SendKind,
    name: string,
    call: { entity: AnyEntityDefinition; id: string; command: string; input: unknown },
    pendingRequestId: string | undefined,
  ): Promise<JournalEntry | Error> {
    const remote = this.#services.remote;
    if (pendingRequestId !== undefined || (remote !== undefined && !remote.owns(call.id))) {
      assert(remote !== undefined, 'a journaled request is resumed on the cluster shape');
      const requestId = pendingRequestId ?? (await this.#sendRequest(kind, name, call, remote));
      return this.#awaitReply(kind, name, requestId, remote);
    }
    const nowMs = this.#effects.clock.now();
    const sequence = this.#journal.length;
    const outcome = await this.#commit(async (scope) => {
      const applied = await applyCommand(scope, {
        ...call,
        traceparent: this.#traceparent,
        nowMs,
        random: this.#effects.random,
      });
      if (!applied.ok && kind === 'compensation') return applied.error;
      const entry = sendEntry(this.id, sequence, kind, name, nowMs, applied.ok ? applied : applied.error);
      await scope.tx.sagas.appendJournal(entry);
      return entry;
    });
    if (outcome instanceof Error) return outcome;
    // Remembered only now that the unit committed.
    this.#journal.push(outcome);
    this.#cursor = this.#journal.length;
    return outcome;
  }

  /** Journals a routed request and publishes it in the same unit; returns its id. */
  async #sendRequest(
    kind: SendKind,
    name: string,
    call: { entity: AnyEntityDefinition; id: string; command: string; input: unknown },
    remote: RemoteEntities,
  ): Promise<string> {
    const requestId = `saga/${this.id}/${this.#journal.length}`;
    const request: WorkRequest = {
      kind: 'send',
      requestId,
      entity: call.entity.name,
      id: call.id,
      command: call.command,
      input: toJson(`The input of '${name}'`, call.input),
      traceparent: this.#traceparent,
    };
    await this.#append(
      {
        kind: 'event',
        name: journalNames.request(kind, name),
        status: 'completed',
        result: { requestId, id: call.id },
        error: null,
        attempts: 1,
      },
      (scope) => remote.publish(scope, request, this.id),
    );
    return requestId;
  }

  /** Waits for a routed request's reply and journals it (parks when the saga must stop). */
  async #awaitReply(
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
      throw error;
    }
    if (!reply.ok && kind === 'compensation') {
      return new Error(reply.error ?? 'the command was rejected');
    }
    const nowMs = this.#effects.clock.now();
    const entry = sendEntry(
      this.id,
      this.#journal.length,
      kind,
      name,
      nowMs,
      reply.ok ? { reply: reply.reply } : errorFromReply(reply),
    );
    await this.#append(entry);
    return this.#journal[this.#journal.length - 1]!;
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
      input: () => (typeof input === 'function' ? (input as (reply: Json) => unknown)(reply) : input),
    });
  }

  async #sleep(name: string, durationMs: number): Promise<void> {
    requireRuntimeName('A sleep name', name);
    integerOption('durationMs', durationMs, 0, 0, 31_536_000_000);
    const journaled = this.#replay('sleep', name);
    let wakeAt: number;
    if (journaled !== undefined) {
      wakeAt = (journaled.result as { wakeAt: number }).wakeAt;
    } else {
      wakeAt = this.#effects.clock.now() + durationMs;
      const timerId = `saga/${this.id}/${this.#journal.length}`;
      await this.#append(
        { kind: 'sleep', name, status: 'completed', result: { wakeAt, timerId }, error: null, attempts: 0 },
        (scope) =>
          scope.tx.timers.schedule({
            id: timerId,
            dueAt: wakeAt,
            kind: sagaWakeTimerKind,
            payload: { sagaId: this.id },
          }),
      );
      this.#services.sleeps.scheduled(wakeAt);
    }
    if (this.#effects.clock.now() < wakeAt) {
      await this.#services.sleeps.sleep(this.id, wakeAt);
      if (this.#parking.aborted) return this.#park();
    }
  }

  async #emit(topic: string, record: EmitRecord): Promise<void> {
    requireRuntimeName('An emit topic', topic);
    const name = journalNames.emit(topic);
    if (this.#replay('event', name) !== undefined) return;
    if (record?.key !== undefined && record.key !== null && typeof record.key !== 'string')
      throw new ValidationError(`An emitted record's key must be a string or null`);
    const produced = this.#effects.record(topic, record, this.#traceparent, {
      [headers.saga]: this.id,
      [headers.sagaType]: this.definition.name,
    });
    await this.#services.ensureTopic(topic);
    await this.#append(
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
   * finished steps in reverse order, each until it succeeds, journaling each one.
   */
  async #compensate(failure: Error): Promise<ExecutionResult> {
    let reason = truncateMessage(failure.message);
    let journaled: JournalEntry | undefined;
    try {
      journaled = this.#replay('event', journalNames.failed);
    } catch (error) {
      return this.#markFailed((error as Error).message);
    }
    if (journaled !== undefined) {
      reason = journaled.error ?? reason;
    } else {
      const version = this.#version;
      this.#version = await this.#append(
        {
          kind: 'event',
          name: journalNames.failed,
          status: 'failed',
          result: { code: codeOf(failure) },
          error: reason,
          attempts: 1,
        },
        (scope) =>
          scope.tx.sagas.update(
            this.id,
            { status: 'compensating', reason, at: this.#effects.clock.now() },
            version,
          ),
      );
    }
    for (const compensation of [...this.#compensations].reverse()) {
      let done: JournalEntry | undefined;
      let pendingRequestId: string | undefined;
      try {
        if (compensation.kind === 'send')
          pendingRequestId = this.#pendingRequest('compensation', compensation.name);
        done = this.#replay('compensation', compensation.name);
      } catch (error) {
        return this.#markFailed((error as Error).message);
      }
      if (done !== undefined) continue;
      if (this.#parking.aborted) return this.#park();
      const failed =
        compensation.kind === 'step'
          ? await this.#compensateStep(compensation, reason)
          : await this.#compensateSend(compensation, pendingRequestId);
      if (failed !== undefined) return this.#markFailed(`${reason}; then ${failed}`);
    }
    await this.#updateStatus('compensated', { reason });
    return this.#finish('compensated', null, reason);
  }

  /** Runs a step's compensation until it succeeds; returns why it cannot, for a terminal error. */
  async #compensateStep(
    compensation: Extract<Compensation, { kind: 'step' }>,
    reason: string,
  ): Promise<string | undefined> {
    let delayMs = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#attempt(
          compensation.name,
          `${this.id}/${compensation.name}/compensate`,
          attempt,
          undefined,
          (ctx) => compensation.fn(ctx, compensation.result as never),
        );
      } catch (caught) {
        if (this.#parking.aborted) return this.#park();
        const error = ensureError(caught);
        if (isTerminalError(error)) {
          return `compensation of '${compensation.name}' failed terminally: ${error.message}`;
        }
        // Visible while it lasts: the saga's reason names the failing compensation.
        await this.#updateStatus('compensating', {
          reason: truncateMessage(
            `${reason}; compensation of '${compensation.name}' failed (attempt ${attempt}, retrying): ${error.message}`,
          ),
        });
        delayMs =
          this.#services.compensationRetry.nextDelayMs(attempt, error, this.#effects.random, delayMs) ?? 0;
        await this.#wait(delayMs);
        if (this.#parking.aborted) return this.#park();
        continue;
      }
      await this.#append({
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
    compensation: Extract<Compensation, { kind: 'send' }>,
    pendingRequestId: string | undefined,
  ): Promise<string | undefined> {
    let input: unknown;
    try {
      input = compensation.input();
    } catch (error) {
      return `compensation of '${compensation.name}' could not compute its input: ${ensureError(error).message}`;
    }
    const call = { entity: compensation.entity, id: compensation.id, command: compensation.command, input };
    const outcome = await this.#applySend('compensation', compensation.name, call, pendingRequestId);
    if (outcome instanceof Error) {
      return `compensation '${compensation.entity.name}.${compensation.command}' of '${compensation.name}' was rejected: ${outcome.message}`;
    }
    return undefined;
  }
}

/** The journal entry of an applied send: its reply, or (a step's) rejection. */
function sendEntry(
  sagaId: string,
  sequence: number,
  kind: SendKind,
  name: string,
  at: number,
  outcome: { reply: Json } | Error,
): JournalEntry {
  const failed = outcome instanceof Error;
  return {
    sagaId,
    sequence,
    kind,
    name,
    status: failed ? 'failed' : 'completed',
    result: failed ? { code: codeOf(outcome) } : outcome.reply,
    error: failed ? truncateMessage(outcome.message) : null,
    attempts: 1,
    at,
  };
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
