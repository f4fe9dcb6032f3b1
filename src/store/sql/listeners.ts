import { ValidationError } from '../../errors.ts';
import { requireChannel } from '../limits.ts';

/** A `Store.listen` callback. */
export type NotificationListener = (payload: string) => void;

/** Throws a ValidationError unless `listener` is a function. */
export function requireListener(listener: unknown): NotificationListener {
  if (typeof listener !== 'function') {
    throw new ValidationError(`'listener' must be a function: current value is ${typeof listener}`, {
      details: { field: 'listener', rule: 'function' },
    });
  }
  return listener as NotificationListener;
}

/**
 * The listeners of each channel of one store. A listener that throws is a bug in it: the error
 * surfaces as an uncaught exception (as an after-commit callback's does) and the other listeners
 * of the channel still hear the notification.
 */
export class ListenerRegistry {
  readonly #channels = new Map<string, Set<NotificationListener>>();

  /** The channels that have at least one listener. */
  channels(): string[] {
    return [...this.#channels.keys()];
  }

  /** Adds `listener` to `channel`; returns true when it is the channel's first listener. */
  add(channel: string, listener: NotificationListener): boolean {
    requireChannel('channel', channel);
    requireListener(listener);
    let listeners = this.#channels.get(channel);
    const first = listeners === undefined;
    if (listeners === undefined) {
      listeners = new Set();
      this.#channels.set(channel, listeners);
    }
    listeners.add(listener);
    return first;
  }

  /** Removes `listener` from `channel`; returns true when the channel has no listener left. */
  remove(channel: string, listener: NotificationListener): boolean {
    const listeners = this.#channels.get(channel);
    if (listeners === undefined) return false;
    listeners.delete(listener);
    if (listeners.size > 0) return false;
    this.#channels.delete(channel);
    return true;
  }

  /** Calls every listener of `channel` with `payload`. */
  emit(channel: string, payload: string): void {
    const listeners = this.#channels.get(channel);
    if (listeners === undefined) return;
    for (const listener of [...listeners]) {
      try {
        listener(payload);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  /** Calls every listener of every channel with `payload`. */
  emitAll(payload: string): void {
    for (const channel of this.channels()) this.emit(channel, payload);
  }

  clear(): void {
    this.#channels.clear();
  }
}
