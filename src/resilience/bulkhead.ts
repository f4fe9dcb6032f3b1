/**
 * Bulkhead: caps how many calls run at once, so one slow dependency cannot take every
 * connection, worker or socket a service has. Calls over the cap wait in a bounded FIFO queue;
 * calls over both are refused at once with a BulkheadRejectedError. A queued call whose signal
 * fires (the caller gave up, an outer timeout passed) leaves the queue at once.
 */
import { CallContext } from './context.ts';
import { abortedError, BulkheadRejectedError, refusal } from './errors.ts';
import { Emitter, type Subscribe } from './events.ts';
import { GatePolicy } from './gate.ts';
import { integerOption, requiredOption } from './options.ts';
import type { Operation } from './policy.ts';

export interface BulkheadOptions {
  /** Calls allowed to run at once, in [1, 100_000]. Required: it depends on the dependency. */
  maxConcurrent: number;
  /** Calls allowed to wait for a slot, in [0, 1_000_000]. @default 0 — refuse at once */
  maxQueued?: number;
}

export interface BulkheadRejectEvent {
  maxConcurrent: number;
  maxQueued: number;
}

export interface BulkheadSnapshot {
  active: number;
  queued: number;
  maxConcurrent: number;
  maxQueued: number;
}

interface Waiter {
  resolve: (value: undefined) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal;
  onAbort: () => void;
  previous: Waiter | undefined;
  next: Waiter | undefined;
}

export class BulkheadPolicy extends GatePolicy<undefined> {
  readonly maxConcurrent: number;
  readonly maxQueued: number;
  #active = 0;
  #queued = 0;
  #head: Waiter | undefined;
  #tail: Waiter | undefined;
  readonly #rejects = new Emitter<BulkheadRejectEvent>();

  /** Fires for each call refused because every slot and queue place was taken. */
  readonly onReject: Subscribe<BulkheadRejectEvent> = this.#rejects.subscribe;

  constructor(options: BulkheadOptions) {
    super();
    this.maxConcurrent = integerOption(
      'maxConcurrent',
      requiredOption('maxConcurrent', options.maxConcurrent),
      0,
      1,
      100_000,
    );
    this.maxQueued = integerOption('maxQueued', options.maxQueued, 0, 0, 1_000_000);
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queued;
  }

  snapshot(): BulkheadSnapshot {
    return {
      active: this.#active,
      queued: this.#queued,
      maxConcurrent: this.maxConcurrent,
      maxQueued: this.maxQueued,
    };
  }

  override execute<T>(operation: Operation<T>, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) return Promise.reject(abortedError(signal.reason));
    return this.run(operation, signal === undefined ? CallContext.root : CallContext.fromSignal(signal));
  }

  /**
   * The bulkhead's whole cost is a counter, so the shape of the call shows: with a free slot it
   * chains two handlers made once per bulkhead onto the operation's promise, which is cheaper
   * than an async frame. Waiting for a slot takes the async path.
   */
  override run<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    if (this.#active >= this.maxConcurrent) return this.#runAfterWaiting(operation, context);
    this.#active++;
    let result: T | PromiseLike<T>;
    try {
      result = operation(context);
    } catch (error) {
      this.#release();
      return Promise.reject(error);
    }
    return Promise.resolve(result).then(this.#releaseWith, this.#releaseAndRethrow) as Promise<T>;
  }

  readonly #releaseWith = (value: unknown): unknown => {
    this.#release();
    return value;
  };

  readonly #releaseAndRethrow = (error: unknown): never => {
    this.#release();
    throw error;
  };

  async #runAfterWaiting<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    await this.enter(context);
    try {
      return await operation(context);
    } finally {
      this.#release();
    }
  }

  enter(context: CallContext): undefined | Promise<undefined> {
    if (this.#active < this.maxConcurrent) {
      this.#active++;
      return;
    }
    if (this.#queued < this.maxQueued) return this.#wait(context);
    if (this.#rejects.hasListeners)
      this.#rejects.emit({ maxConcurrent: this.maxConcurrent, maxQueued: this.maxQueued });
    throw refusal(() => new BulkheadRejectedError(this.maxConcurrent, this.maxQueued));
  }

  exit(_ticket: undefined, _failed: boolean, error: unknown): unknown {
    this.#release();
    return error;
  }

  #release(): void {
    const waiter = this.#head;
    if (waiter === undefined) {
      this.#active--;
      return;
    }
    // Hand the slot straight to the oldest waiter: the count of active calls does not change.
    this.#unlink(waiter);
    waiter.signal.removeEventListener('abort', waiter.onAbort);
    waiter.resolve(undefined);
  }

  #wait(context: CallContext): Promise<undefined> {
    return new Promise<undefined>((resolve, reject) => {
      const signal = context.signal;
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          this.#unlink(waiter);
          reject(abortedError(signal.reason));
        },
        previous: this.#tail,
        next: undefined,
      };
      if (this.#tail === undefined) this.#head = waiter;
      else this.#tail.next = waiter;
      this.#tail = waiter;
      this.#queued++;
      signal.addEventListener('abort', waiter.onAbort, { once: true });
    });
  }

  #unlink(waiter: Waiter): void {
    const { previous, next } = waiter;
    if (previous === undefined) this.#head = next;
    else previous.next = next;
    if (next === undefined) this.#tail = previous;
    else next.previous = previous;
    waiter.previous = undefined;
    waiter.next = undefined;
    this.#queued--;
  }
}

/** A bulkhead policy. Share one instance among every call to the same dependency. */
export function bulkhead(options: BulkheadOptions): BulkheadPolicy {
  return new BulkheadPolicy(options);
}
