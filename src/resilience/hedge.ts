/**
 * Hedging: when an attempt has not answered within `delayMs`, start another one alongside it;
 * the first success wins and the others are aborted. It trims the tail latency that one slow
 * replica, GC pause or lost packet adds, at the cost of some extra load, bounded by `maxHedges`.
 * A failed attempt starts the next hedge at once instead of waiting for the delay.
 *
 * Only hedge idempotent operations: several attempts may reach the dependency.
 */
import { isTerminalError } from '../errors.ts';
import type { CallContext } from './context.ts';
import { DeadlineEntry, DeadlineQueue } from './deadline-queue.ts';
import { AbortedError, abortedError, isAbortedError } from './errors.ts';
import { Emitter, type Subscribe } from './events.ts';
import {
  durationOption,
  functionOption,
  integerOption,
  portsOf,
  requiredOption,
  type TimePorts,
} from './options.ts';
import { type Operation, PolicyBase } from './policy.ts';

export interface HedgeOptions extends Pick<TimePorts, 'clock' | 'timers'> {
  /**
   * How long an attempt may run before another starts beside it, in [1, 86_400_000]: typically
   * the dependency's p95 latency. Required: it depends on the dependency.
   */
  delayMs: number;
  /** Extra attempts allowed per call, in [1, 10]. @default 1 */
  maxHedges?: number;
  /**
   * Whether a failed attempt should be hedged; other errors end the call at once.
   * @default every error except TerminalError, ValidationError and AbortedError
   */
  shouldHedge?: (error: unknown) => boolean;
}

export interface HedgeEvent {
  /** The attempt being started: 2 for the first hedge. */
  attempt: number;
  /** Whether it starts because the delay passed or because an attempt failed. */
  trigger: 'delay' | 'failure';
}

class HedgeCall extends DeadlineEntry {
  readonly policy: HedgePolicy;
  readonly operation: Operation<unknown>;
  readonly context: CallContext;
  readonly attempts: CallContext[] = [];
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  failed = 0;
  settled = false;

  constructor(
    policy: HedgePolicy,
    operation: Operation<unknown>,
    context: CallContext,
    resolve: (value: unknown) => void,
    reject: (error: unknown) => void,
  ) {
    super();
    this.policy = policy;
    this.operation = operation;
    this.context = context;
    this.resolve = resolve;
    this.reject = reject;
  }

  expire(): void {
    this.policy.launch(this, 'delay');
  }
}

export class HedgePolicy extends PolicyBase {
  readonly delayMs: number;
  readonly maxHedges: number;
  readonly #shouldHedge: (error: unknown) => boolean;
  readonly #deadlines: DeadlineQueue;
  readonly #hedges = new Emitter<HedgeEvent>();

  /** Fires when a hedged attempt starts. */
  readonly onHedge: Subscribe<HedgeEvent> = this.#hedges.subscribe;

  constructor(options: HedgeOptions) {
    super();
    this.delayMs = durationOption('delayMs', requiredOption('delayMs', options.delayMs), 0, 1);
    this.maxHedges = integerOption('maxHedges', options.maxHedges, 1, 1, 10);
    this.#shouldHedge = functionOption(
      'shouldHedge',
      options.shouldHedge,
      (error) => !isTerminalError(error) && !isAbortedError(error),
    );
    const { clock, timers } = portsOf(options);
    this.#deadlines = new DeadlineQueue(this.delayMs, clock, timers);
  }

  run<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    const call = new HedgeCall(this, operation, context, resolve as (value: unknown) => void, reject);
    this.launch(call, undefined);
    return promise;
  }

  /** @internal starts the next attempt of `call`. */
  launch(call: HedgeCall, trigger: HedgeEvent['trigger'] | undefined): void {
    if (call.settled) return;
    if (call.context.aborted) {
      this.#settle(call, undefined);
      call.reject(abortedError(call.context.reason));
      return;
    }
    const attempt = call.attempts.length + 1;
    const context = call.context.child(attempt);
    call.attempts.push(context);
    if (attempt <= this.maxHedges) this.#deadlines.add(call);
    if (trigger !== undefined && this.#hedges.hasListeners) this.#hedges.emit({ attempt, trigger });
    let result: unknown;
    try {
      result = call.operation(context);
    } catch (error) {
      result = Promise.reject(error);
    }
    Promise.resolve(result).then(
      (value) => {
        if (call.settled) return;
        this.#settle(call, context);
        call.resolve(value);
      },
      (error: unknown) => this.#attemptFailed(call, error),
    );
  }

  #attemptFailed(call: HedgeCall, error: unknown): void {
    if (call.settled) return;
    call.failed++;
    const launched = call.attempts.length;
    if (!call.context.aborted && this.#shouldHedge(error)) {
      if (launched <= this.maxHedges) {
        this.#deadlines.remove(call);
        this.launch(call, 'failure');
        return;
      }
      // Every attempt is out: wait for the ones still running, unless none is.
      if (call.failed < launched) return;
    }
    this.#settle(call, undefined);
    call.reject(error);
  }

  /**
   * Ends the race: stops further hedges and aborts the attempts still running. The winner is
   * left alone: its result may still be streaming (a response body) under its signal.
   */
  #settle(call: HedgeCall, winner: CallContext | undefined): void {
    call.settled = true;
    this.#deadlines.remove(call);
    let lost: AbortedError | undefined;
    for (const attempt of call.attempts) {
      if (attempt !== winner && !attempt.aborted) {
        lost ??= new AbortedError('Another hedged attempt settled the call first');
        attempt.abort(lost);
      }
      attempt.release();
    }
  }
}

/** A hedging policy. */
export function hedge(options: HedgeOptions): HedgePolicy {
  return new HedgePolicy(options);
}
