import { isMeridianError, isTerminalError, RetryableError } from '../errors.ts';
import type { Random } from '../time.ts';
import { integerOption, numberOption } from './options.ts';

/**
 * Decides whether, and after how long, a failed attempt is tried again. Saga steps, entity
 * sends, compensations and subscription handlers all retry through this one small interface, so
 * a resilience `Policy` can satisfy it later without the runtime changing.
 */
export interface RetryStrategy {
  /**
   * The delay before the next attempt, after attempt number `attempt` (1-based) failed with
   * `error`; undefined to give up.
   */
  nextDelayMs(attempt: number, error: Error, random: Random): number | undefined;
}

export type Jitter = 'full' | 'equal' | 'none';

export interface RetryOptions {
  /** Attempts in all, the first included. 1 means never retry. 1 to 1000. @default 5 */
  maxAttempts?: number;
  /** Delay before the first retry, before jitter. 0 to 3600000. @default 100 */
  initialDelayMs?: number;
  /** Upper bound of any backoff delay, before jitter. 0 to 86400000. @default 10000 */
  maxDelayMs?: number;
  /** Growth of the delay per attempt. 1 to 10. @default 2 */
  multiplier?: number;
  /**
   * 'full': uniform in [0, delay]; 'equal': uniform in [delay/2, delay]; 'none': the delay
   * itself. Jitter spreads the retries of many callers that failed together. @default 'full'
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
  const initialDelayMs = numberOption('initialDelayMs', options.initialDelayMs, 100, 0, 3_600_000);
  const maxDelayMs = numberOption('maxDelayMs', options.maxDelayMs, 10_000, 0, 86_400_000);
  const multiplier = numberOption('multiplier', options.multiplier, 2, 1, 10);
  const jitter = options.jitter ?? 'full';
  if (jitter !== 'full' && jitter !== 'equal' && jitter !== 'none') {
    throw new RangeError(`'jitter' must be 'full', 'equal' or 'none': current value is '${String(jitter)}'`);
  }
  const retryable = options.retryable;
  return {
    nextDelayMs(attempt, error, random) {
      if (attempt >= maxAttempts || isTerminalError(error)) return undefined;
      if (retryable !== undefined && !retryable(error)) return undefined;
      const exponent = Math.min(attempt - 1, 64);
      const capped = Math.min(maxDelayMs, initialDelayMs * multiplier ** exponent);
      let delayMs = capped;
      if (jitter === 'full') delayMs = random.next() * capped;
      else if (jitter === 'equal') delayMs = capped / 2 + (random.next() * capped) / 2;
      const retryAfterMs = retryAfterOf(error);
      if (retryAfterMs !== undefined) {
        if (retryAfterMs > maxRetryAfterMs) return undefined;
        delayMs = Math.max(delayMs, retryAfterMs);
      }
      return Math.round(delayMs);
    },
  };
}

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
