/**
 * The errors resilience policies throw. Each is a MeridianError with a stable `code`, so callers
 * (the gateway mapping them to 429/503, a saga deciding whether to retry) recognise them by code
 * even when two copies of Meridian are loaded. The ones that know when trying again makes sense
 * carry `retryAfterMs`, which the retry policy honours.
 */
import { isMeridianError, MeridianError, type MeridianErrorOptions } from '../errors.ts';

export type CircuitState = 'closed' | 'open' | 'half-open' | 'isolated';

/** A timeout policy's deadline passed before the operation finished. Retryable. */
export class TimeoutError extends MeridianError {
  readonly timeoutMs: number;
  constructor(timeoutMs: number, options: MeridianErrorOptions = {}) {
    super('TIMEOUT', `Operation timed out after ${timeoutMs} ms`, {
      ...options,
      details: { timeoutMs, ...options.details },
    });
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The caller cancelled (its AbortSignal fired, or a hedge race was won by another attempt).
 * Never retried, never counted against a dependency's health: nobody is waiting for the result.
 */
export class AbortedError extends MeridianError {
  constructor(message = 'Operation was aborted', options: MeridianErrorOptions = {}) {
    super('ABORTED', message, options);
  }
}

/** A circuit breaker refused the call because its dependency is considered broken. */
export class BrokenCircuitError extends MeridianError {
  readonly state: CircuitState;
  /** How long until the breaker lets a probe through; 0 when probes are merely all busy. */
  readonly retryAfterMs: number;
  constructor(name: string, state: CircuitState, retryAfterMs: number) {
    super(
      'CIRCUIT_OPEN',
      state === 'isolated'
        ? `Circuit '${name}' is isolated by an operator`
        : `Circuit '${name}' is ${state}: retry after ${retryAfterMs} ms`,
      { details: { name, state, retryAfterMs } },
    );
    this.state = state;
    this.retryAfterMs = retryAfterMs;
  }
}

/** A bulkhead had every execution slot and every queue slot taken. */
export class BulkheadRejectedError extends MeridianError {
  constructor(maxConcurrent: number, maxQueued: number) {
    super(
      'BULKHEAD_FULL',
      `Bulkhead is full: ${maxConcurrent} calls running and ${maxQueued} queued (the limits)`,
      { details: { maxConcurrent, maxQueued } },
    );
  }
}

/** A rate limit refused the call; `retryAfterMs` is when the limit will admit it. */
export class RateLimitedError extends MeridianError {
  readonly retryAfterMs: number;
  readonly key: string;
  constructor(key: string, retryAfterMs: number) {
    super('RATE_LIMITED', `Rate limit for '${key}' exceeded: retry after ${retryAfterMs} ms`, {
      details: { key, retryAfterMs },
    });
    this.key = key;
    this.retryAfterMs = retryAfterMs;
  }
}

/** A load shedder refused the call because the adaptive concurrency limit was reached. */
export class ShedError extends MeridianError {
  readonly limit: number;
  constructor(limit: number, inFlight: number) {
    super('SHED', `Load shed: ${inFlight} calls in flight reached the adaptive limit of ${limit}`, {
      details: { limit, inFlight },
    });
    this.limit = limit;
  }
}

/** Whether this runtime lets us change Error.stackTraceLimit (a frozen realm may not). */
const stackLimitWritable = (() => {
  const descriptor = Object.getOwnPropertyDescriptor(Error, 'stackTraceLimit');
  return descriptor === undefined ? Object.isExtensible(Error) : descriptor.writable === true;
})();

/**
 * Builds a refusal error (open circuit, full bulkhead, rate limit, shed load) without capturing
 * a stack trace. Refusing is the expected, frequent outcome of a protective policy under stress,
 * raised from one known place, and capturing the stack is nearly all of its cost: without it an
 * open circuit refuses several times faster, which is the point of failing fast. The message
 * names the policy and the numbers, which is what a reader needs. (Resilience4j makes the same
 * choice with `writableStackTraceEnabled = false`; Node builds some internal errors this way.)
 */
export function refusal<E extends Error>(build: () => E): E {
  if (!stackLimitWritable) return build();
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return build();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

function hasCode(value: unknown, code: string): boolean {
  return isMeridianError(value) && value.code === code;
}

export const isTimeoutError = (value: unknown): value is TimeoutError => hasCode(value, 'TIMEOUT');
export const isAbortedError = (value: unknown): value is AbortedError => hasCode(value, 'ABORTED');
export const isBrokenCircuitError = (value: unknown): value is BrokenCircuitError =>
  hasCode(value, 'CIRCUIT_OPEN');
export const isBulkheadRejectedError = (value: unknown): value is BulkheadRejectedError =>
  hasCode(value, 'BULKHEAD_FULL');
export const isRateLimitedError = (value: unknown): value is RateLimitedError =>
  hasCode(value, 'RATE_LIMITED');
export const isShedError = (value: unknown): value is ShedError => hasCode(value, 'SHED');

/**
 * The wait an error asks for before trying again: RetryableError, RateLimitedError and
 * BrokenCircuitError carry one. Undefined when the error does not say.
 */
export function retryAfterMsOf(error: unknown): number | undefined {
  if (!isMeridianError(error)) return undefined;
  const value = (error as { retryAfterMs?: unknown }).retryAfterMs;
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
}

/** The error a policy rejects with when the call's signal fired: the reason, typed. */
export function abortedError(reason: unknown): Error {
  // A timeout or hedge that aborted the call chose a typed reason; keep it so the caller sees
  // the real cause. A caller's bare `controller.abort()` becomes an AbortedError.
  if (isMeridianError(reason)) return reason;
  return new AbortedError('Operation was aborted', { cause: reason });
}
