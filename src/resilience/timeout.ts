/**
 * Timeout: bounds how long a caller waits for an operation.
 *
 * - `cooperative` (the default) aborts the operation's signal at the deadline and waits for it
 *   to stop; the operation decides how quickly. Use it when the operation honours its signal
 *   (fetch, database drivers, other policies): nothing keeps running after the call returns.
 * - `aggressive` rejects at the deadline at once and aborts the signal; an operation that
 *   ignores its signal keeps running in the background, unobserved.
 *
 * If a cooperative operation succeeds after its deadline, its value is returned: the work is
 * done, and throwing it away would only make the caller repeat it.
 */
import type { CallContext } from './context.ts';
import { DeadlineEntry, DeadlineQueue } from './deadline-queue.ts';
import { TimeoutError } from './errors.ts';
import { Emitter, type Subscribe } from './events.ts';
import { GatePolicy } from './gate.ts';
import { durationOption, oneOfOption, portsOf, requiredOption, type TimePorts } from './options.ts';
import { invoke, type Operation } from './policy.ts';

export type TimeoutStrategy = 'cooperative' | 'aggressive';

export interface TimeoutOptions extends Pick<TimePorts, 'clock' | 'timers'> {
  /** How long a call may run, in [1, 86_400_000]. Required: no single value suits every call. */
  timeoutMs: number;
  /** @default 'cooperative' */
  strategy?: TimeoutStrategy;
}

export interface TimeoutEvent {
  timeoutMs: number;
  strategy: TimeoutStrategy;
}

class TimeoutCall extends DeadlineEntry {
  readonly policy: TimeoutPolicy;
  readonly context: CallContext;
  error: TimeoutError | undefined;
  reject: ((error: unknown) => void) | undefined;

  constructor(policy: TimeoutPolicy, context: CallContext) {
    super();
    this.policy = policy;
    this.context = context;
  }

  expire(): void {
    const error = new TimeoutError(this.policy.timeoutMs);
    this.error = error;
    this.context.abort(error);
    this.reject?.(error);
    this.policy.timedOut();
  }
}

export class TimeoutPolicy extends GatePolicy<TimeoutCall> {
  override readonly derivesContext = true;
  readonly timeoutMs: number;
  readonly strategy: TimeoutStrategy;
  readonly #deadlines: DeadlineQueue;
  readonly #timeouts = new Emitter<TimeoutEvent>();

  /** Fires when a call's deadline passes. */
  readonly onTimeout: Subscribe<TimeoutEvent> = this.#timeouts.subscribe;

  constructor(options: TimeoutOptions) {
    super();
    this.timeoutMs = durationOption('timeoutMs', requiredOption('timeoutMs', options.timeoutMs), 0, 1);
    this.strategy = oneOfOption('strategy', options.strategy, 'cooperative', ['cooperative', 'aggressive']);
    const { clock, timers } = portsOf(options);
    this.#deadlines = new DeadlineQueue(this.timeoutMs, clock, timers);
  }

  /** An aggressive timeout races the call, so it cannot run as a gate. */
  override get gateable(): boolean {
    return this.strategy === 'cooperative';
  }

  /** How many calls are waiting for their deadline. */
  get inFlight(): number {
    return this.#deadlines.size;
  }

  override run<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    return this.strategy === 'cooperative'
      ? this.#cooperative(operation, context)
      : this.#aggressive(operation, context);
  }

  enter(context: CallContext): TimeoutCall {
    const call = new TimeoutCall(this, context.child());
    this.#deadlines.add(call);
    return call;
  }

  exit(call: TimeoutCall, failed: boolean, error: unknown): unknown {
    this.#finish(call);
    // Whatever the operation threw once aborted (usually an AbortError) is a consequence of the
    // timeout; the caller should see the timeout, with the operation's error as its cause.
    const timeout = call.error;
    if (!failed || timeout === undefined || error === timeout) return error;
    return new TimeoutError(this.timeoutMs, { cause: error });
  }

  /** @internal called by a call whose deadline passed. */
  timedOut(): void {
    if (this.#timeouts.hasListeners)
      this.#timeouts.emit({ timeoutMs: this.timeoutMs, strategy: this.strategy });
  }

  async #cooperative<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    const call = this.enter(context);
    let value: T;
    try {
      value = await operation(call.context);
    } catch (error) {
      throw this.exit(call, true, error);
    }
    this.exit(call, false, undefined);
    return value;
  }

  #aggressive<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    const call = this.enter(context);
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    call.reject = reject;
    // A late settlement after the deadline is ignored: the promise already rejected.
    invoke(operation, call.context).then(
      (value) => {
        this.#finish(call);
        resolve(value);
      },
      (error: unknown) => {
        this.#finish(call);
        reject(error);
      },
    );
    return promise;
  }

  #finish(call: TimeoutCall): void {
    this.#deadlines.remove(call);
    call.context.release();
  }
}

/** A timeout policy. */
export function timeout(options: TimeoutOptions): TimeoutPolicy {
  return new TimeoutPolicy(options);
}
