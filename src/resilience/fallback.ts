/**
 * Fallback: answers with something else when the operation fails, such as a cached balance or
 * a clear degraded response instead of an error page. It sits outermost in a pipeline, so it
 * also catches the refusals of the policies inside it (open circuit, full bulkhead, timeout).
 */
import type { CallContext, PolicyContext } from './context.ts';
import { isAbortedError } from './errors.ts';
import { Emitter, type Subscribe } from './events.ts';
import { functionOption, requiredOption } from './options.ts';
import { type Operation, PolicyBase } from './policy.ts';

export interface FallbackOptions<F> {
  /** Produces the substitute value from the error. Required. */
  fallback: (error: unknown, context: PolicyContext) => F | PromiseLike<F>;
  /**
   * Whether to substitute for this error; others propagate.
   * @default every error except a cancellation (nobody is waiting for the substitute)
   */
  handle?: (error: unknown) => boolean;
}

export interface FallbackEvent {
  error: unknown;
}

export class FallbackPolicy<F> extends PolicyBase<F> {
  readonly #fallback: (error: unknown, context: PolicyContext) => F | PromiseLike<F>;
  readonly #handle: (error: unknown) => boolean;
  readonly #fallbacks = new Emitter<FallbackEvent>();

  /** Fires when the fallback value is used. */
  readonly onFallback: Subscribe<FallbackEvent> = this.#fallbacks.subscribe;

  constructor(options: FallbackOptions<F>) {
    super();
    this.#fallback = functionOption(
      'fallback',
      requiredOption('fallback', options.fallback),
      options.fallback,
    );
    this.#handle = functionOption('handle', options.handle, (error) => !isAbortedError(error));
  }

  async run<T>(operation: Operation<T>, context: CallContext): Promise<T | F> {
    try {
      return await operation(context);
    } catch (error) {
      if (context.aborted || !this.#handle(error)) throw error;
      if (this.#fallbacks.hasListeners) this.#fallbacks.emit({ error });
      return await this.#fallback(error, context);
    }
  }
}

/** A fallback policy. */
export function fallback<F>(options: FallbackOptions<F>): FallbackPolicy<F> {
  return new FallbackPolicy(options);
}
