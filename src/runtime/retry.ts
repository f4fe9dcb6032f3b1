import { isMeridianError, isTerminalError, RetryableError } from '../errors.ts';
import { exponentialBackoff as backoffOf, type Jitter } from '../resilience/backoff.ts';
import { integerOption } from '../resilience/options.ts';
import type { Random } from '../time.ts';

/**
 * Decides whether, and after how long, a failed attempt is tried again. Saga steps, entity
 * sends, compensations and subscription handlers all retry through this one small interface.
 * The delays come from the resilience layer's backoff, so a step and a `retry()` policy given
 * the same options wait alike.
 */
export interface RetryStrategy {
  /**
   * The delay before the next attempt, after attempt number `attempt` (1-based) failed with
   * `error`; undefined to give up. `previousDelayMs` is the delay chosen before that attempt (0
   * before the first retry): decorrelated jitter grows from it.
   */
  nextDelayMs(attempt: number, error: Error, random: Random, previousDelayMs?: number): number | undefined;
}

export interface RetryOptions {
  /** Attempts in all, the first included. 1 means never retry. 1 to 1000. @default 5 */
  maxAttempts?: number;
  /** Delay before the first retry, before jitter. An integer, 0 to 86400000. @default 100 */
  initialDelayMs?: number;
  /** Upper bound of any backoff delay, initialDelayMs to 86400000. @default 10000 */
  maxDelayMs?: number;
  /** Growth of the delay per attempt. 1 to 10. @default 2 */
  multiplier?: number;
  /**
   * 'full': uniform in [0, delay]; 'equal': uniform in [delay/2, delay]; 'decorrelated':
   * uniform in [initialDelayMs, multiplier × the previous delay]; 'none': the delay itself.
   * Jitter spreads the retries of many callers that failed together. @default 'full'
   */
  jitter?: Jitter;
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

/** The longest `retryAfterMs` honoured (a day): a longer one is treated as "give up". */
export const maxRetryAfterMs = 86_400_000;

/**
 * Exponential backoff with jitter. Honours `RetryableError.retryAfterMs` (the delay is at least
 * that long), never retries a terminal error, and stops after `maxAttempts`.
 */
export function exponentialBackoff(options: RetryOptions = {}): RetryStrategy {
  const maxAttempts = integerOption('maxAttempts', options.maxAttempts, 5, 1, 1000);
  return unboundedBackoff(options, maxAttempts);
}

/**
 * The same backoff with an attempt bound that may be Infinity. Only the runtime uses Infinity,
 * for compensations, which must be retried until they succeed: their delay is still bounded.
 */
export function unboundedBackoff(
  options: Omit<RetryOptions, 'maxAttempts'>,
  maxAttempts: number,
): RetryStrategy {
  const backoff = backoffOf({
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
      const retryAfterMs = retryAfterOf(error);
      if (retryAfterMs === undefined) return delayMs;
      return retryAfterMs > maxRetryAfterMs ? undefined : Math.max(delayMs, Math.ceil(retryAfterMs));
    },
  };
}

/**
 * The wait a RetryableError asks for. Only it: an open circuit's BrokenCircuitError (or a rate
 * limiter's refusal) inside a step's policy is retried on the step's own backoff, so a step
 * fails fast while its dependency's breaker is open instead of holding the saga for as long.
 */
function retryAfterOf(error: Error): number | undefined {
  if (error instanceof RetryableError || (isMeridianError(error) && error.code === 'RETRYABLE')) {
    const value = (error as RetryableError).retryAfterMs;
    return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : undefined;
  }
  return undefined;
}

/** A strategy given as options or as a strategy object. */
export function toRetryStrategy(value: RetryOptions | RetryStrategy | undefined): RetryStrategy {
  if (isRetryStrategy(value)) return value;
  return exponentialBackoff(value ?? {});
}
