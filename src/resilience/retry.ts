/**
 * Retry: runs an operation again after a failure that may pass.
 *
 * It follows Meridian's error semantics (src/errors.ts): a TerminalError (or ValidationError) is
 * never retried; an error carrying `retryAfterMs` (RetryableError, RateLimitedError,
 * BrokenCircuitError) is not retried sooner than it asks; a cancelled call is not retried.
 * Everything is bounded: attempts by `maxAttempts`, each wait by the backoff's cap (or
 * `maxRetryAfterMs` when an error asks for longer), and optionally the whole call by
 * `deadlineMs`. The deadline decides whether to *start* an attempt; to cut one short that is
 * already running, put a timeout inside the retry.
 */
import { isMeridianError, isTerminalError, RetryableError } from '../errors.ts';
import type { Clock, Random, Timers } from '../time.ts';
import { type Backoff, type ExponentialBackoffOptions, exponentialBackoff } from './backoff.ts';
import type { CallContext } from './context.ts';
import { abortedError, isAbortedError, retryAfterMsOf } from './errors.ts';
import { Emitter, type Subscribe } from './events.ts';
import {
  durationOption,
  functionOption,
  integerOption,
  MAX_DURATION_MS,
  portsOf,
  type TimePorts,
} from './options.ts';
import { type Operation, PolicyBase } from './policy.ts';

export interface RetryOptions extends TimePorts {
  /** Attempts in all, the first included, in [1, 100]. @default 3 */
  maxAttempts?: number;
  /** @default exponentialBackoff() — 100 ms doubling to 10 s, full jitter */
  backoff?: Backoff;
  /**
   * The time budget for the whole call, in [1, 86_400_000]: no attempt starts, and no wait is
   * begun that would end, later than this after the call began.
   * @default undefined — bounded by maxAttempts and the delays alone
   */
  deadlineMs?: number;
  /**
   * The longest wait an error may ask for through `retryAfterMs`, in [0, 86_400_000]; an error
   * asking for longer ends the retries at once rather than holding the caller. The default
   * matches the default backoff cap, and is shorter than a breaker's default open duration, so
   * a retry outside an open circuit fails fast instead of waiting for it.
   * @default 10_000
   */
  maxRetryAfterMs?: number;
  /**
   * Whether the failure of attempt `attempt` may be retried.
   * @default every error except TerminalError, ValidationError and AbortedError
   */
  retryIf?: (error: unknown, attempt: number) => boolean;
}

export interface RetryEvent {
  /** The attempt that failed; the next one is `attempt + 1`. */
  attempt: number;
  /** The wait before the next attempt. */
  delayMs: number;
  error: unknown;
}

export type GiveUpReason = 'max-attempts' | 'not-retryable' | 'deadline' | 'retry-after-too-long' | 'aborted';

export interface GiveUpEvent {
  /** Attempts made. */
  attempts: number;
  reason: GiveUpReason;
  /** The error the caller receives. */
  error: unknown;
}

export function isRetryableByDefault(error: unknown): boolean {
  return !isTerminalError(error) && !isAbortedError(error);
}

export class RetryPolicy extends PolicyBase {
  readonly maxAttempts: number;
  readonly backoff: Backoff;
  readonly deadlineMs: number | undefined;
  readonly maxRetryAfterMs: number;
  readonly #retryIf: (error: unknown, attempt: number) => boolean;
  readonly #clock: Clock;
  readonly #timers: Timers;
  readonly #random: Random;
  readonly #retries = new Emitter<RetryEvent>();
  readonly #giveUps = new Emitter<GiveUpEvent>();

  /** Fires before each wait for a new attempt. */
  readonly onRetry: Subscribe<RetryEvent> = this.#retries.subscribe;
  /** Fires when a failed call will not be tried again. */
  readonly onGiveUp: Subscribe<GiveUpEvent> = this.#giveUps.subscribe;

  constructor(options: RetryOptions = {}) {
    super();
    this.maxAttempts = integerOption('maxAttempts', options.maxAttempts, 3, 1, 100);
    this.backoff = options.backoff ?? exponentialBackoff();
    this.deadlineMs =
      options.deadlineMs === undefined ? undefined : durationOption('deadlineMs', options.deadlineMs, 0, 1);
    this.maxRetryAfterMs = durationOption('maxRetryAfterMs', options.maxRetryAfterMs, 10_000);
    this.#retryIf = functionOption('retryIf', options.retryIf, isRetryableByDefault);
    ({ clock: this.#clock, timers: this.#timers, random: this.#random } = portsOf(options));
  }

  async run<T>(operation: Operation<T>, context: CallContext): Promise<T> {
    // Read the clock only when a deadline needs it: the success path stays free of it.
    const startedMs = this.deadlineMs === undefined ? 0 : this.#clock.monotonicNow();
    let previousDelayMs = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        return await operation(context.withAttempt(attempt));
      } catch (error) {
        previousDelayMs = this.#delayBeforeRetry(error, attempt, previousDelayMs, startedMs, context);
      }
      await this.#sleep(previousDelayMs, context, attempt);
    }
  }

  /** Returns the wait before the next attempt, or throws `error` when there is none. */
  #delayBeforeRetry(
    error: unknown,
    attempt: number,
    previousDelayMs: number,
    startedMs: number,
    context: CallContext,
  ): number {
    if (context.aborted) this.#giveUp(attempt, 'aborted', error);
    if (!this.#retryIf(error, attempt)) this.#giveUp(attempt, 'not-retryable', error);
    if (attempt >= this.maxAttempts) this.#giveUp(attempt, 'max-attempts', error);
    let delayMs = this.backoff.delayMs(attempt, previousDelayMs, this.#random);
    const retryAfterMs = retryAfterMsOf(error);
    if (retryAfterMs !== undefined) {
      if (retryAfterMs > this.maxRetryAfterMs) this.#giveUp(attempt, 'retry-after-too-long', error);
      delayMs = Math.max(delayMs, Math.ceil(retryAfterMs));
    }
    if (
      this.deadlineMs !== undefined &&
      this.#clock.monotonicNow() + delayMs >= startedMs + this.deadlineMs
    ) {
      this.#giveUp(attempt, 'deadline', error);
    }
    if (this.#retries.hasListeners) this.#retries.emit({ attempt, delayMs, error });
    return delayMs;
  }

  #giveUp(attempts: number, reason: GiveUpReason, error: unknown): never {
    if (this.#giveUps.hasListeners) this.#giveUps.emit({ attempts, reason, error });
    throw error;
  }

  #sleep(delayMs: number, context: CallContext, attempt: number): Promise<void> {
    if (delayMs === 0 && !context.aborted) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const signal = context.signal;
      if (signal.aborted) {
        this.#abandon(attempt, signal.reason, reject);
        return;
      }
      const onAbort = () => {
        timer.cancel();
        this.#abandon(attempt, signal.reason, reject);
      };
      const timer = this.#timers.setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, delayMs);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  #abandon(attempts: number, reason: unknown, reject: (error: unknown) => void): void {
    const error = abortedError(reason);
    if (this.#giveUps.hasListeners) this.#giveUps.emit({ attempts, reason: 'aborted', error });
    reject(error);
  }
}

/** A retry policy. */
export function retry(options: RetryOptions = {}): RetryPolicy {
  return new RetryPolicy(options);
}

// ---------------------------------------------------------------------------------------------
// Retry strategies: the same vocabulary for durable work (saga steps, entity sends,
// compensations, subscription handlers), which cannot block in a policy's loop because each
// attempt and each wait is journaled or rescheduled by the runtime. The delays are this layer's
// backoff, so a step and a `retry()` policy given the same backoff options wait alike.

/**
 * Decides whether, and after how long, a failed attempt is tried again: the runtime's side of
 * retry, where the caller (not the strategy) waits.
 */
export interface RetryStrategy {
  /**
   * The delay before the next attempt, after attempt number `attempt` (1-based) failed with
   * `error`; undefined to give up. `previousDelayMs` is the delay chosen before that attempt (0
   * before the first retry): decorrelated jitter grows from it.
   */
  nextDelayMs(attempt: number, error: Error, random: Random, previousDelayMs?: number): number | undefined;
}

/** A retry strategy's options: the backoff's, plus how many attempts and which errors. */
export interface StepRetryOptions extends ExponentialBackoffOptions {
  /** Attempts in all, the first included. 1 means never retry. 1 to 1000. @default 5 */
  maxAttempts?: number;
  /**
   * Which errors are worth retrying. A TerminalError (or ValidationError) is never retried,
   * whatever this says. @default every other error
   */
  retryable?: (error: Error) => boolean;
}

export function isRetryStrategy(value: unknown): value is RetryStrategy {
  return (
    typeof value === 'object' && value !== null && typeof (value as RetryStrategy).nextDelayMs === 'function'
  );
}

/** The longest `retryAfterMs` a strategy honours (a day): a longer one is treated as "give up". */
export const maxStrategyRetryAfterMs = MAX_DURATION_MS;

/**
 * Exponential backoff with jitter as a strategy. Honours `RetryableError.retryAfterMs` (the
 * delay is at least that long), never retries a terminal error, and stops after `maxAttempts`.
 */
export function retryStrategy(options: StepRetryOptions = {}): RetryStrategy {
  const maxAttempts = integerOption('maxAttempts', options.maxAttempts, 5, 1, 1000);
  return unboundedRetryStrategy(options, maxAttempts);
}

/**
 * The same strategy with an attempt bound that may be Infinity. Only the runtime uses Infinity,
 * for compensations, which must be retried until they succeed: their delay is still bounded.
 */
export function unboundedRetryStrategy(
  options: Omit<StepRetryOptions, 'maxAttempts'>,
  maxAttempts: number,
): RetryStrategy {
  const backoff = exponentialBackoff({
    initialDelayMs: options.initialDelayMs,
    maxDelayMs: options.maxDelayMs,
    multiplier: options.multiplier,
    jitter: options.jitter,
  });
  const retryable = options.retryable;
  return {
    nextDelayMs(attempt, error, random, previousDelayMs = 0) {
      if (attempt >= maxAttempts || isTerminalError(error)) return undefined;
      if (retryable !== undefined && !retryable(error)) return undefined;
      const delayMs = backoff.delayMs(attempt, previousDelayMs, random);
      const retryAfterMs = strategyRetryAfterOf(error);
      if (retryAfterMs === undefined) return delayMs;
      return retryAfterMs > maxStrategyRetryAfterMs ? undefined : Math.max(delayMs, Math.ceil(retryAfterMs));
    },
  };
}

/**
 * The wait a RetryableError asks for. Only it: an open circuit's BrokenCircuitError (or a rate
 * limiter's refusal) inside a step's policy is retried on the step's own backoff, so a step
 * fails fast while its dependency's breaker is open instead of holding the saga for as long.
 */
function strategyRetryAfterOf(error: Error): number | undefined {
  if (error instanceof RetryableError || (isMeridianError(error) && error.code === 'RETRYABLE')) {
    const value = (error as RetryableError).retryAfterMs;
    return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : undefined;
  }
  return undefined;
}

/** A strategy given as options or as a strategy object. */
export function toRetryStrategy(value: StepRetryOptions | RetryStrategy | undefined): RetryStrategy {
  if (isRetryStrategy(value)) return value;
  return retryStrategy(value ?? {});
}
