/**
 * Policy events as disposable subscriptions: metrics and the dashboard watch a policy without the
 * policy knowing about them, and stop watching with `sub.dispose()` or a `using` declaration.
 */

export interface Subscription extends Disposable {
  /** Stops delivering events to the listener. Calling it again does nothing. */
  dispose(): void;
}

export type Listener<E> = (event: E) => void;

/** Subscribes a listener to one kind of event; the returned subscription removes it. */
export type Subscribe<E> = (listener: Listener<E>) => Subscription;

export class Emitter<E> {
  #listeners: Listener<E>[] = [];
  readonly #onListenerError: ((error: unknown) => void) | undefined;

  /**
   * @param onListenerError where a listener's exception goes; by default it surfaces as an
   *   uncaught exception, the way an EventTarget listener's does.
   */
  constructor(onListenerError?: (error: unknown) => void) {
    this.#onListenerError = onListenerError;
  }

  /** True when someone listens: policies build event objects only then, off the hot path. */
  get hasListeners(): boolean {
    return this.#listeners.length > 0;
  }

  readonly subscribe: Subscribe<E> = (listener) => {
    if (typeof listener !== 'function') throw new TypeError('An event listener must be a function');
    // Copy on write, so a listener that unsubscribes during emit does not skip its neighbour.
    this.#listeners = [...this.#listeners, listener];
    let active = true;
    const dispose = () => {
      if (!active) return;
      active = false;
      this.#listeners = this.#listeners.filter((candidate) => candidate !== listener);
    };
    return { dispose, [Symbol.dispose]: dispose };
  };

  emit(event: E): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        // A broken listener must not change what its emitter does (the policy's call, the
        // commit it follows), but it is a bug, so it surfaces.
        if (this.#onListenerError !== undefined) this.#onListenerError(error);
        else
          queueMicrotask(() => {
            throw error;
          });
      }
    }
  }
}
