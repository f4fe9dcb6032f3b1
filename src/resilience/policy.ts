/**
 * What every policy is: something that runs an operation for a caller and decides what happens
 * around it (wait, retry, refuse, race, substitute). A saga step, an outbound call or an HTTP
 * route takes a `Policy` and calls `execute`; policies compose with `pipeline`.
 */

import { CallContext, type PolicyContext } from './context.ts';
import { abortedError } from './errors.ts';

/** The work a policy protects. It may return a value or a promise, and may throw. */
export type Operation<T> = (context: PolicyContext) => T | PromiseLike<T>;

/** A type-only key carrying a policy's alternative value type, so `pipeline` can infer it. */
declare const alternativeType: unique symbol;

/**
 * A resilience policy. `Alt` is the type of value the policy can return instead of the
 * operation's own (a fallback's); it is `never` for every other policy.
 */
export interface Policy<Alt = never> {
  /** Type-level only: never present at run time. */
  readonly [alternativeType]?: () => Alt;
  /**
   * Runs `operation` under this policy. When `signal` fires, the policy stops waiting (in
   * queues, between retries) and the operation's own `context.signal` fires.
   */
  execute<T>(operation: Operation<T>, signal?: AbortSignal): Promise<T | Alt>;
  /**
   * Runs `operation` inside an existing call context. Pipelines use it to pass one context
   * through every layer; application code calls `execute`.
   */
  run<T>(operation: Operation<T>, context: CallContext): Promise<T | Alt>;
}

/** The alternative value type of a policy, for composing types in `pipeline`. */
export type AltOf<P> = P extends { readonly [alternativeType]?: () => infer Alt } ? Alt : never;

/** The one implementation of `execute`, shared by every policy. */
export abstract class PolicyBase<Alt = never> implements Policy<Alt> {
  declare readonly [alternativeType]?: () => Alt;

  execute<T>(operation: Operation<T>, signal?: AbortSignal): Promise<T | Alt> {
    if (signal?.aborted) return Promise.reject(abortedError(signal.reason));
    return this.run(operation, CallContext.fromSignal(signal));
  }

  abstract run<T>(operation: Operation<T>, context: CallContext): Promise<T | Alt>;
}

/** Calls `operation` and returns its outcome as a promise, a synchronous throw included. */
export function invoke<T>(operation: Operation<T>, context: CallContext): Promise<T> {
  try {
    return Promise.resolve(operation(context));
  } catch (error) {
    return Promise.reject(error);
  }
}
