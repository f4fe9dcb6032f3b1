/**
 * Circuit breaker: stops calling a dependency that is failing or slow, so callers fail fast
 * instead of queueing behind it, and the dependency gets room to recover.
 *
 * States: `closed` (calls flow; outcomes are recorded), `open` (calls are refused with a
 * BrokenCircuitError until `openDurationMs` has passed), `half-open` (up to `halfOpenMaxCalls`
 * probe calls are let through: one failed or slow probe opens the circuit again, that many
 * successful probes close it) and `isolated` (held open by an operator through `isolate()`).
 *
 * When to open, by `mode`:
 * - `consecutive`: after `failureThreshold` failures in a row;
 * - `count-window`: over the last `windowSize` calls, once at least `minimumCalls` were made;
 * - `time-window`: over the calls of the last `windowMs`, once at least `minimumCalls` were made.
 * The windowed modes open when the failure rate reaches `failureRateThreshold`, or, with
 * `slowCallDurationMs` set, when the share of calls at least that slow reaches
 * `slowCallRateThreshold`: a dependency that answers in 20 s is as broken as one that fails.
 *
 * A call's outcome only counts in the state it was admitted in: a call let through while closed
 * that fails after the circuit opened does not touch the open circuit's probes.
 */
import { isTerminalError } from '../errors.ts';
import type { Clock } from '../time.ts';
import type { CallContext } from './context.ts';
import { CountWindow } from './count-window.ts';
import {
  BrokenCircuitError,
  type CircuitState,
  isAbortedError,
  isBrokenCircuitError,
  isBulkheadRejectedError,
  isRateLimitedError,
  isShedError,
  refusal,
} from './errors.ts';
import { Emitter, type Subscribe, type Subscription } from './events.ts';
import { GatePolicy } from './gate.ts';
import {
  durationOption,
  functionOption,
  integerOption,
  invalidOption,
  oneOfOption,
  portsOf,
  ratioOption,
  requiredOption,
  type TimePorts,
} from './options.ts';
import type { Operation } from './policy.ts';
import { TimeWindow } from './time-window.ts';

export type { CircuitState } from './errors.ts';

export type BreakerMode = 'consecutive' | 'count-window' | 'time-window';

export interface CircuitBreakerOptions extends Pick<TimePorts, 'clock'> {
  /** Names the breaker in errors, events and snapshots. @default 'circuit' */
  name?: string;
  /** How failures are counted. Required: the choice depends on the traffic. */
  mode: BreakerMode;
  /** `consecutive` only: failures in a row that open the circuit, in [1, 10_000]. @default 5 */
  failureThreshold?: number;
  /** `count-window` only: how many recent calls the window holds, in [1, 100_000]. @default 100 */
  windowSize?: number;
  /** `time-window` only: how far back the window reaches, in [100, 86_400_000]. @default 60_000 */
  windowMs?: number;
  /** `time-window` only: buckets the window is cut into, in [1, 600]. @default 10 */
  windowBucketCount?: number;
  /**
   * Windowed modes: calls the window must hold before a rate can open the circuit, in
   * [1, windowSize] (count-window) or [1, 1_000_000] (time-window).
   * @default 20, or windowSize when that is smaller
   */
  minimumCalls?: number;
  /** Windowed modes: the failure rate that opens the circuit, in (0, 1]. @default 0.5 */
  failureRateThreshold?: number;
  /**
   * Windowed modes: a call taking at least this long is slow, in [1, 86_400_000].
   * @default undefined — call durations are not measured
   */
  slowCallDurationMs?: number;
  /** Windowed modes, with slowCallDurationMs: the slow-call rate that opens the circuit, in (0, 1]. @default 1 */
  slowCallRateThreshold?: number;
  /** How long the circuit stays open before probing, in [1, 86_400_000]. @default 30_000 */
  openDurationMs?: number;
  /** Probe calls let through while half-open, in [1, 1000]. @default 1 */
  halfOpenMaxCalls?: number;
  /**
   * Whether an error counts against the dependency. Errors that do not count are successes: the
   * dependency answered. A call whose caller cancelled it never counts either way.
   * @default every error except TerminalError, ValidationError, AbortedError, and the refusals of
   * policies inside the breaker (BulkheadRejectedError, RateLimitedError, ShedError,
   * BrokenCircuitError), since then the dependency was never called
   */
  isFailure?: (error: unknown) => boolean;
}

export type OpenReason = 'consecutive-failures' | 'failure-rate' | 'slow-call-rate' | 'probe-failed';

export interface OpenEvent {
  name: string;
  reason: OpenReason;
  /** The failure rate over the window (or over the probes) when the circuit opened. */
  failureRate: number;
  slowCallRate: number;
  openDurationMs: number;
}

export interface StateChangeEvent {
  name: string;
  from: CircuitState;
  to: CircuitState;
}

export interface RejectEvent {
  name: string;
  state: CircuitState;
}

/** What a dashboard or the public API shows about a breaker. */
export interface CircuitSnapshot {
  name: string;
  mode: BreakerMode;
  state: CircuitState;
  /** Calls in the window (windowed modes) or failures in a row (consecutive). */
  calls: number;
  failures: number;
  slowCalls: number;
  failureRate: number;
  slowCallRate: number;
  /** Until the next probe is admitted; 0 unless open. */
  retryAfterMs: number;
  halfOpenInFlight: number;
}

function isFailureByDefault(error: unknown): boolean {
  // A refusal by a policy inside the breaker (full bulkhead, rate limit, shed load) means the
  // dependency was never called: it says nothing about the dependency's health.
  return (
    !isTerminalError(error) &&
    !isAbortedError(error) &&
    !isBulkheadRejectedError(error) &&
    !isRateLimitedError(error) &&
    !isShedError(error) &&
    !isBrokenCircuitError(error)
  );
}

/**
 * What the breaker remembers about an admitted call: the state generation that admitted it (its
 * outcome counts only if the state is unchanged), and its start time when durations matter.
 */
type BreakerTicket = number | { generation: number; startedMs: number };

export class CircuitBreakerPolicy extends GatePolicy<BreakerTicket> {
  readonly name: string;
  readonly mode: BreakerMode;
  readonly failureThreshold: number;
  readonly minimumCalls: number;
  readonly failureRateThreshold: number;
  readonly slowCallDurationMs: number | undefined;
  readonly slowCallRateThreshold: number;
  readonly openDurationMs: number;
  readonly halfOpenMaxCalls: number;
  readonly #isFailure: (error: unknown) => boolean;
  readonly #clock: Clock;
  readonly #countWindow: CountWindow | undefined;
  readonly #timeWindow: TimeWindow | undefined;
  /** Whether recording an outcome needs the time: slow-call detection or a time window. */
  readonly #timed: boolean;

  #state: CircuitState = 'closed';
  /** Bumped on every transition, so an outcome is only counted in the state that admitted it. */
  #generation = 0;
  #openUntilMs = 0;
  #consecutiveFailures = 0;
  #halfOpenInFlight = 0;
  #halfOpenSucceeded = 0;
  #isolations = 0;

  readonly #opens = new Emitter<OpenEvent>();
  readonly #halfOpens = new Emitter<StateChangeEvent>();
  readonly #closes = new Emitter<StateChangeEvent>();
  readonly #stateChanges = new Emitter<StateChangeEvent>();
  readonly #rejects = new Emitter<RejectEvent>();

  /** Fires when the circuit opens (breaks). */
  readonly onOpen: Subscribe<OpenEvent> = this.#opens.subscribe;
  /** Fires when the open duration has passed and probes are admitted. */
  readonly onHalfOpen: Subscribe<StateChangeEvent> = this.#halfOpens.subscribe;
  /** Fires when the circuit closes (resets) after successful probes or an isolation ends. */
  readonly onClose: Subscribe<StateChangeEvent> = this.#closes.subscribe;
  /** Fires on every transition, isolation included. */
  readonly onStateChange: Subscribe<StateChangeEvent> = this.#stateChanges.subscribe;
  /** Fires for each call refused while open, isolated, or half-open with every probe taken. */
  readonly onReject: Subscribe<RejectEvent> = this.#rejects.subscribe;
  /** Cockatiel's names for the same events. */
  readonly onBreak: Subscribe<OpenEvent> = this.onOpen;
  readonly onReset: Subscribe<StateChangeEvent> = this.onClose;

  constructor(options: CircuitBreakerOptions) {
    super();
    this.name = options.name ?? 'circuit';
    this.mode = oneOfOption('mode', requiredOption('mode', options.mode), undefined, [
      'consecutive',
      'count-window',
      'time-window',
    ]);
    const windowed = this.mode !== 'consecutive';
    const only = (option: keyof CircuitBreakerOptions, modes: string) => {
      if (options[option] !== undefined)
        invalidOption(option, `left out for mode '${this.mode}' (it applies to ${modes})`, options[option]);
    };
    if (windowed) only('failureThreshold', "mode 'consecutive'");
    else {
      for (const option of [
        'minimumCalls',
        'failureRateThreshold',
        'slowCallDurationMs',
        'slowCallRateThreshold',
      ] as const) {
        only(option, "modes 'count-window' and 'time-window'");
      }
    }
    if (this.mode !== 'count-window') only('windowSize', "mode 'count-window'");
    if (this.mode !== 'time-window') {
      only('windowMs', "mode 'time-window'");
      only('windowBucketCount', "mode 'time-window'");
    }

    this.failureThreshold = integerOption('failureThreshold', options.failureThreshold, 5, 1, 10_000);
    if (this.mode === 'count-window') {
      const windowSize = integerOption('windowSize', options.windowSize, 100, 1, 100_000);
      this.#countWindow = new CountWindow(windowSize);
      this.minimumCalls = integerOption(
        'minimumCalls',
        options.minimumCalls,
        Math.min(20, windowSize),
        1,
        windowSize,
      );
    } else if (this.mode === 'time-window') {
      const windowMs = integerOption('windowMs', options.windowMs, 60_000, 100, 86_400_000);
      const bucketCount = integerOption('windowBucketCount', options.windowBucketCount, 10, 1, 600);
      this.#timeWindow = new TimeWindow(windowMs, bucketCount);
      this.minimumCalls = integerOption('minimumCalls', options.minimumCalls, 20, 1, 1_000_000);
    } else {
      this.minimumCalls = 0;
    }
    this.failureRateThreshold = ratioOption('failureRateThreshold', options.failureRateThreshold, 0.5);
    this.slowCallDurationMs =
      options.slowCallDurationMs === undefined
        ? undefined
        : durationOption('slowCallDurationMs', options.slowCallDurationMs, 0, 1);
    if (this.slowCallDurationMs === undefined && options.slowCallRateThreshold !== undefined) {
      invalidOption(
        'slowCallRateThreshold',
        "left out unless 'slowCallDurationMs' is set",
        options.slowCallRateThreshold,
      );
    }
    this.slowCallRateThreshold = ratioOption('slowCallRateThreshold', options.slowCallRateThreshold, 1);
    this.openDurationMs = durationOption('openDurationMs', options.openDurationMs, 30_000, 1);
    this.halfOpenMaxCalls = integerOption('halfOpenMaxCalls', options.halfOpenMaxCalls, 1, 1, 1000);
    this.#isFailure = functionOption('isFailure', options.isFailure, isFailureByDefault);
    this.#clock = portsOf(options).clock;
    this.#timed = this.slowCallDurationMs !== undefined || this.#timeWindow !== undefined;
  }

  /** The current state. Reading it lets an open circuit whose open duration passed go half-open. */
  get state(): CircuitState {
    if (this.#state === 'open' && this.#clock.monotonicNow() >= this.#openUntilMs) this.#halfOpen();
    return this.#state;
  }

  override async run<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    const ticket = this.enter(context);
    let value: T;
    try {
      value = await operation(context);
    } catch (error) {
      throw this.exit(ticket, true, error, context);
    }
    this.exit(ticket, false, undefined, context);
    return value;
  }

  /** The ticket is the admitting generation, plus the start time when durations matter. */
  enter(_context: CallContext): BreakerTicket {
    if (this.#state !== 'closed') {
      const retryAfterMs = this.#admit();
      if (retryAfterMs >= 0)
        throw refusal(() => new BrokenCircuitError(this.name, this.#state, retryAfterMs));
    }
    return this.#timed
      ? { generation: this.#generation, startedMs: this.#clock.monotonicNow() }
      : this.#generation;
  }

  exit(ticket: BreakerTicket, failed: boolean, error: unknown, context: CallContext): unknown {
    const generation = typeof ticket === 'number' ? ticket : ticket.generation;
    const startedMs = typeof ticket === 'number' ? 0 : ticket.startedMs;
    if (!failed) this.#record(generation, false, startedMs);
    else if (context.aborted) this.#ignore(generation);
    else this.#record(generation, this.#isFailure(error), startedMs);
    return error;
  }

  /**
   * Holds the circuit open (state `isolated`) until every returned subscription is disposed;
   * then it closes with empty counts. For operators taking a dependency out of service.
   */
  isolate(): Subscription {
    this.#isolations++;
    if (this.#state !== 'isolated') this.#transition('isolated');
    let active = true;
    const dispose = () => {
      if (!active) return;
      active = false;
      this.#isolations--;
      if (this.#isolations === 0 && this.#state === 'isolated') this.#close();
    };
    return { dispose, [Symbol.dispose]: dispose };
  }

  snapshot(): CircuitSnapshot {
    const state = this.state;
    const nowMs = this.#clock.monotonicNow();
    let calls: number;
    let failures: number;
    let slowCalls: number;
    if (this.#countWindow !== undefined) {
      ({ calls, failures, slowCalls } = this.#countWindow);
    } else if (this.#timeWindow !== undefined) {
      calls = this.#timeWindow.calls(nowMs);
      failures = this.#timeWindow.failures(nowMs);
      slowCalls = this.#timeWindow.slowCalls(nowMs);
    } else {
      calls = this.#consecutiveFailures;
      failures = this.#consecutiveFailures;
      slowCalls = 0;
    }
    return {
      name: this.name,
      mode: this.mode,
      state,
      calls,
      failures,
      slowCalls,
      failureRate: calls === 0 ? 0 : failures / calls,
      slowCallRate: calls === 0 ? 0 : slowCalls / calls,
      retryAfterMs: state === 'open' ? Math.max(0, Math.ceil(this.#openUntilMs - nowMs)) : 0,
      halfOpenInFlight: this.#halfOpenInFlight,
    };
  }

  /**
   * Lets a call through when the state allows it (returns -1), or reports the refusal and
   * returns how long until a probe will be admitted.
   */
  #admit(): number {
    if (this.#state === 'open') {
      const nowMs = this.#clock.monotonicNow();
      if (nowMs < this.#openUntilMs) return this.#refuse(Math.ceil(this.#openUntilMs - nowMs));
      this.#halfOpen();
    }
    if (this.#state === 'half-open') {
      if (this.#halfOpenInFlight + this.#halfOpenSucceeded >= this.halfOpenMaxCalls) return this.#refuse(0);
      this.#halfOpenInFlight++;
      return -1;
    }
    if (this.#state === 'isolated') return this.#refuse(0);
    return -1;
  }

  #refuse(retryAfterMs: number): number {
    if (this.#rejects.hasListeners) this.#rejects.emit({ name: this.name, state: this.#state });
    return retryAfterMs;
  }

  #ignore(generation: number): void {
    if (generation === this.#generation && this.#state === 'half-open') this.#halfOpenInFlight--;
  }

  #record(generation: number, failed: boolean, startedMs: number): void {
    if (generation !== this.#generation) return;
    const nowMs = this.#timed ? this.#clock.monotonicNow() : 0;
    const slow = this.slowCallDurationMs !== undefined && nowMs - startedMs >= this.slowCallDurationMs;
    if (this.#state === 'half-open') {
      this.#halfOpenInFlight--;
      if (failed || slow) {
        this.#open('probe-failed', failed ? 1 : 0, slow ? 1 : 0);
      } else if (++this.#halfOpenSucceeded >= this.halfOpenMaxCalls) {
        this.#close();
      }
      return;
    }
    if (this.#state !== 'closed') return;
    if (this.mode === 'consecutive') {
      if (!failed) this.#consecutiveFailures = 0;
      else if (++this.#consecutiveFailures >= this.failureThreshold) this.#open('consecutive-failures', 1, 0);
      return;
    }
    let calls: number;
    let failures: number;
    let slowCalls: number;
    if (this.#countWindow !== undefined) {
      this.#countWindow.record(failed, slow);
      ({ calls, failures, slowCalls } = this.#countWindow);
    } else {
      const window = this.#timeWindow!;
      window.record(failed, slow, nowMs);
      calls = window.calls(nowMs);
      failures = window.failures(nowMs);
      slowCalls = window.slowCalls(nowMs);
    }
    if (calls < this.minimumCalls) return;
    const failureRate = failures / calls;
    const slowCallRate = slowCalls / calls;
    if (failureRate >= this.failureRateThreshold) this.#open('failure-rate', failureRate, slowCallRate);
    else if (this.slowCallDurationMs !== undefined && slowCallRate >= this.slowCallRateThreshold) {
      this.#open('slow-call-rate', failureRate, slowCallRate);
    }
  }

  #open(reason: OpenReason, failureRate: number, slowCallRate: number): void {
    this.#openUntilMs = this.#clock.monotonicNow() + this.openDurationMs;
    this.#transition('open');
    if (this.#opens.hasListeners) {
      this.#opens.emit({
        name: this.name,
        reason,
        failureRate,
        slowCallRate,
        openDurationMs: this.openDurationMs,
      });
    }
  }

  #halfOpen(): void {
    const from = this.#state;
    this.#transition('half-open');
    if (this.#halfOpens.hasListeners) this.#halfOpens.emit({ name: this.name, from, to: 'half-open' });
  }

  #close(): void {
    const from = this.#state;
    this.#transition('closed');
    if (this.#closes.hasListeners) this.#closes.emit({ name: this.name, from, to: 'closed' });
  }

  #transition(to: CircuitState): void {
    const from = this.#state;
    this.#state = to;
    this.#generation++;
    this.#halfOpenInFlight = 0;
    this.#halfOpenSucceeded = 0;
    this.#consecutiveFailures = 0;
    this.#countWindow?.reset();
    this.#timeWindow?.reset();
    if (this.#stateChanges.hasListeners) this.#stateChanges.emit({ name: this.name, from, to });
  }
}

/** A circuit breaker policy. Share one instance among every call to the same dependency. */
export function circuitBreaker(options: CircuitBreakerOptions): CircuitBreakerPolicy {
  return new CircuitBreakerPolicy(options);
}
