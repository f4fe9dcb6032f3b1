/**
 * Rate limiting. A `RateLimiter` decides whether a unit of work for a key (a client, a route, a
 * tenant) may proceed now and, when not, how long until it may. Limiters come in process
 * (`tokenBucket`, `gcra`) and shared across instances (`redisRateLimiter`); the gateway calls
 * `consume` directly to answer 429 with `Retry-After`, and `rateLimit` makes any limiter a policy.
 */
import type { CallContext, PolicyContext } from './context.ts';
import { RateLimitedError, refusal } from './errors.ts';
import { Emitter, type Subscribe } from './events.ts';
import { GatePolicy } from './gate.ts';
import { integerOption, invalidOption, requiredOption } from './options.ts';
import { invoke, type Operation } from './policy.ts';

export interface RateLimitDecision {
  allowed: boolean;
  /** How long until the same request would be allowed; 0 when allowed. */
  retryAfterMs: number;
  /** Requests of cost 1 that would still be allowed right now. */
  remaining: number;
}

export interface RateLimiter {
  /** The sustained rate the limiter allows per key. */
  readonly ratePerSecond: number;
  /** Requests a key may make at once after being idle. */
  readonly burst: number;
  /**
   * Takes `cost` units for `key` if the limit allows it now. In-process limiters answer
   * synchronously; shared ones return a promise.
   */
  consume(key: string, cost?: number): RateLimitDecision | Promise<RateLimitDecision>;
}

/** Checks a consume call's cost: an integer in [1, burst], since more could never be allowed. */
export function checkCost(cost: number, burst: number): number {
  return integerOption('cost', cost, 1, 1, burst);
}

export interface RateLimitOptions {
  /** The limiter deciding. Required. */
  limiter: RateLimiter;
  /** The key calls are counted under, or a function choosing it per call. @default 'default' */
  key?: string | ((context: PolicyContext) => string);
  /** Units each call takes, in [1, limiter.burst]. @default 1 */
  cost?: number;
}

export interface RateLimitRejectEvent {
  key: string;
  retryAfterMs: number;
}

export class RateLimitPolicy extends GatePolicy<undefined> {
  readonly limiter: RateLimiter;
  readonly cost: number;
  readonly #key: string | ((context: PolicyContext) => string);
  readonly #rejects = new Emitter<RateLimitRejectEvent>();

  /** Fires for each call refused by the limit. */
  readonly onReject: Subscribe<RateLimitRejectEvent> = this.#rejects.subscribe;

  constructor(options: RateLimitOptions) {
    super();
    this.limiter = requiredOption('limiter', options.limiter);
    if (typeof this.limiter.consume !== 'function') invalidOption('limiter', 'a RateLimiter', this.limiter);
    this.#key = options.key ?? 'default';
    if (typeof this.#key !== 'string' && typeof this.#key !== 'function')
      invalidOption('key', 'a string or a function', this.#key);
    this.cost = checkCost(options.cost ?? 1, this.limiter.burst);
  }

  override run<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    const key = typeof this.#key === 'string' ? this.#key : this.#key(context);
    const decision = this.limiter.consume(key, this.cost);
    if ('then' in decision)
      return decision.then((settled) => this.#proceed(settled, key, operation, context));
    return this.#proceed(decision, key, operation, context);
  }

  #proceed<T>(
    decision: RateLimitDecision,
    key: string,
    operation: Operation<T>,
    context: CallContext,
  ): Promise<T> {
    try {
      this.#check(decision, key);
    } catch (error) {
      return Promise.reject(error);
    }
    // Nothing to do after the call: hand back the operation's own promise, no extra async layer.
    return invoke(operation, context);
  }

  enter(context: CallContext): undefined | Promise<undefined> {
    const key = typeof this.#key === 'string' ? this.#key : this.#key(context);
    const decision = this.limiter.consume(key, this.cost);
    if ('then' in decision) return decision.then((settled) => this.#check(settled, key));
    return this.#check(decision, key);
  }

  exit(_ticket: undefined, _failed: boolean, error: unknown): unknown {
    return error;
  }

  #check(decision: RateLimitDecision, key: string): undefined {
    if (decision.allowed) return undefined;
    if (this.#rejects.hasListeners) this.#rejects.emit({ key, retryAfterMs: decision.retryAfterMs });
    throw refusal(() => new RateLimitedError(key, decision.retryAfterMs));
  }
}

/** Turns a rate limiter into a policy that refuses calls over the limit with RateLimitedError. */
export function rateLimit(options: RateLimitOptions): RateLimitPolicy {
  return new RateLimitPolicy(options);
}
