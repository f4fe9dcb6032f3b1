/**
 * Bulkhead: caps how many calls run at once, so one slow dependency cannot take every
 * connection, worker or socket a service has. Calls over the cap wait in a bounded FIFO queue;
 * calls over both are refused at once with a BulkheadRejectedError. A queued call whose signal
 * fires (the caller gave up, an outer timeout passed) leaves the queue at once.
 */
import type { CallContext } from './context.ts';
import { abortedError, BulkheadRejectedError } from './errors.ts';
import { Emitter, type Subscribe } from './events.ts';
import { integerOption, requiredOption } from './options.ts';
import { type Operation, PolicyBase } from './policy.ts';

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

interface QueuedCall {
  operation: Operation<unknown>;
  context: CallContext;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal;
  onAbort: () => void;
  previous: QueuedCall | undefined;
  next: QueuedCall | undefined;
}

export class BulkheadPolicy extends PolicyBase {
  readonly maxConcurrent: number;
  readonly maxQueued: number;
  #active = 0;
  #queued = 0;
  #head: QueuedCall | undefined;
  #tail: QueuedCall | undefined;
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

  run<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    if (this.#active < this.maxConcurrent) return this.#start(operation, context);
    if (this.#queued < this.maxQueued) return this.#enqueue(operation, context);
    if (this.#rejects.hasListeners)
      this.#rejects.emit({ maxConcurrent: this.maxConcurrent, maxQueued: this.maxQueued });
    return Promise.reject(new BulkheadRejectedError(this.maxConcurrent, this.maxQueued));
  }

  async #start<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    this.#active++;
    try {
      return await operation(context);
    } finally {
      this.#active--;
      if (this.#head !== undefined) this.#drain();
    }
  }

  #enqueue<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const signal = context.signal;
      const call: QueuedCall = {
        operation,
        context,
        resolve: resolve as (value: unknown) => void,
        reject,
        signal,
        onAbort: () => {
          this.#unlink(call);
          reject(abortedError(signal.reason));
        },
        previous: this.#tail,
        next: undefined,
      };
      if (this.#tail === undefined) this.#head = call;
      else this.#tail.next = call;
      this.#tail = call;
      this.#queued++;
      signal.addEventListener('abort', call.onAbort, { once: true });
    });
  }

  #drain(): void {
    while (this.#active < this.maxConcurrent && this.#head !== undefined) {
      const call = this.#head;
      this.#unlink(call);
      call.signal.removeEventListener('abort', call.onAbort);
      this.#start(call.operation, call.context).then(call.resolve, call.reject);
    }
  }

  #unlink(call: QueuedCall): void {
    const { previous, next } = call;
    if (previous === undefined) this.#head = next;
    else previous.next = next;
    if (next === undefined) this.#tail = previous;
    else next.previous = previous;
    call.previous = undefined;
    call.next = undefined;
    this.#queued--;
  }
}

/** A bulkhead policy. Share one instance among every call to the same dependency. */
export function bulkhead(options: BulkheadOptions): BulkheadPolicy {
  return new BulkheadPolicy(options);
}
