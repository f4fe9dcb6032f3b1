/**
 * Load shedding: refuses work beyond an adaptive concurrency limit with a ShedError, before any
 * of it is done, so a service under more load than it can take answers what it can quickly
 * (the gateway maps ShedError to 503) instead of letting every request queue and time out.
 *
 * Use it as a policy around a handler, or, where the work is not one function call (an HTTP
 * framework's hooks), take a permit with `tryAcquire` and release it when the response is sent.
 */
import { assert } from '../assert.ts';
import type { Clock } from '../time.ts';
import type { ConcurrencyLimit } from './concurrency-limit.ts';
import type { CallContext } from './context.ts';
import {
  isBrokenCircuitError,
  isBulkheadRejectedError,
  isRateLimitedError,
  isShedError,
  isTimeoutError,
  refusal,
  ShedError,
} from './errors.ts';
import { Emitter, type Subscribe } from './events.ts';
import { GatePolicy } from './gate.ts';
import { functionOption, portsOf, requiredOption, type TimePorts } from './options.ts';
import type { Operation } from './policy.ts';

export interface LoadShedderOptions extends Pick<TimePorts, 'clock'> {
  /** The limit algorithm: `aimdLimit()` or `gradientLimit()`. Required. */
  limit: ConcurrencyLimit;
  /**
   * Whether a failure signals overload (it shrinks the limit). Other failures are not sampled.
   * @default timeouts and refusals by policies downstream (bulkhead, breaker, rate limit, shedder)
   */
  isDrop?: (error: unknown) => boolean;
}

export interface ShedEvent {
  limit: number;
  inFlight: number;
}

export interface LimitChangeEvent {
  from: number;
  to: number;
}

export type PermitOutcome = 'success' | 'dropped' | 'ignored';

/** A slot taken with `tryAcquire`; release it exactly once when the work is over. */
export interface Permit {
  release(outcome: PermitOutcome): void;
}

export interface LoadShedderSnapshot {
  limit: number;
  inFlight: number;
}

function isDropByDefault(error: unknown): boolean {
  return (
    isTimeoutError(error) ||
    isBulkheadRejectedError(error) ||
    isBrokenCircuitError(error) ||
    isRateLimitedError(error) ||
    isShedError(error)
  );
}

export class LoadShedderPolicy extends GatePolicy<number> {
  readonly #limit: ConcurrencyLimit;
  readonly #isDrop: (error: unknown) => boolean;
  readonly #clock: Clock;
  #inFlight = 0;
  readonly #sheds = new Emitter<ShedEvent>();
  readonly #limitChanges = new Emitter<LimitChangeEvent>();

  /** Fires for each call refused because the limit was reached. */
  readonly onShed: Subscribe<ShedEvent> = this.#sheds.subscribe;
  /** Fires when the adaptive limit moves. */
  readonly onLimitChange: Subscribe<LimitChangeEvent> = this.#limitChanges.subscribe;

  constructor(options: LoadShedderOptions) {
    super();
    this.#limit = requiredOption('limit', options.limit);
    this.#isDrop = functionOption('isDrop', options.isDrop, isDropByDefault);
    this.#clock = portsOf(options).clock;
  }

  get limit(): number {
    return this.#limit.limit;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  snapshot(): LoadShedderSnapshot {
    return { limit: this.#limit.limit, inFlight: this.#inFlight };
  }

  /** Takes a slot if the limit allows; undefined means shed the request (answer 503). */
  tryAcquire(): Permit | undefined {
    if (!this.#admit()) return undefined;
    const startedMs = this.#clock.monotonicNow();
    let released = false;
    return {
      release: (outcome) => {
        assert(!released, 'a load-shedder permit is released exactly once');
        released = true;
        this.#complete(startedMs, outcome);
      },
    };
  }

  override async run<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    const startedMs = this.enter(context);
    let value: T;
    try {
      value = await operation(context);
    } catch (error) {
      throw this.exit(startedMs, true, error, context);
    }
    this.exit(startedMs, false, undefined, context);
    return value;
  }

  enter(_context: CallContext): number {
    if (!this.#admit()) throw refusal(() => new ShedError(this.#limit.limit, this.#inFlight));
    return this.#clock.monotonicNow();
  }

  exit(startedMs: number, failed: boolean, error: unknown, context: CallContext): unknown {
    let outcome: PermitOutcome = 'success';
    if (failed) outcome = !context.aborted && this.#isDrop(error) ? 'dropped' : 'ignored';
    this.#complete(startedMs, outcome);
    return error;
  }

  #admit(): boolean {
    const limit = this.#limit.limit;
    if (this.#inFlight >= limit) {
      if (this.#sheds.hasListeners) this.#sheds.emit({ limit, inFlight: this.#inFlight });
      return false;
    }
    this.#inFlight++;
    return true;
  }

  #complete(startedMs: number, outcome: PermitOutcome): void {
    if (outcome !== 'ignored') {
      const before = this.#limit.limit;
      this.#limit.update({
        rttMs: this.#clock.monotonicNow() - startedMs,
        inFlight: this.#inFlight,
        dropped: outcome === 'dropped',
      });
      const after = this.#limit.limit;
      if (after !== before && this.#limitChanges.hasListeners)
        this.#limitChanges.emit({ from: before, to: after });
    }
    this.#inFlight--;
  }
}

/** A load shedder over an adaptive concurrency limit. */
export function loadShedder(options: LoadShedderOptions): LoadShedderPolicy {
  return new LoadShedderPolicy(options);
}
