/**
 * Meridian's error hierarchy. Every error Meridian throws on purpose is a MeridianError with a
 * stable `code`; `isMeridianError` recognises one even when two copies of the package are
 * loaded, because it checks a marker property rather than the prototype chain.
 *
 * Retry semantics (used by sagas, subscriptions and resilience policies):
 * - a TerminalError is never retried;
 * - a RetryableError may be retried, after `retryAfterMs` when it names one;
 * - anything else is retried by the policy in force.
 */
const marker = Symbol.for('meridian.error');

export type ErrorCode =
  | 'ASSERTION_FAILED'
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'CONFLICT'
  | 'RECORD_TOO_LARGE'
  | 'OFFSET_OUT_OF_RANGE'
  | 'SCHEMA_MISMATCH'
  | 'CLOSED'
  | 'TIMEOUT'
  | 'ABORTED'
  | 'UNAVAILABLE'
  | 'TERMINAL'
  | 'RETRYABLE'
  | (string & {});

export interface MeridianErrorOptions {
  cause?: unknown;
  /** Structured facts about the failure (the option, the limit, the value) for logs and APIs. */
  details?: Record<string, unknown>;
}

export class MeridianError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  readonly [marker] = true;

  constructor(code: ErrorCode, message: string, options: MeridianErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details ?? {};
  }
}

export function isMeridianError(value: unknown): value is MeridianError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[marker] === true;
}

/** Bad input from a caller: a name, an option, a record, a request body. Never retried. */
export class ValidationError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('INVALID_ARGUMENT', message, options);
  }
}

export class NotFoundError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('NOT_FOUND', message, options);
  }
}

export class AlreadyExistsError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('ALREADY_EXISTS', message, options);
  }
}

/** A write lost a race: an expected version, epoch or lease did not match. */
export class ConflictError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('CONFLICT', message, options);
  }
}

/** The component was closed; open a new one. */
export class ClosedError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('CLOSED', message, options);
  }
}

/** A failure that retrying cannot fix. Policies and sagas give up on it at once. */
export class TerminalError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('TERMINAL', message, options);
  }
}

/** A failure that may pass; `retryAfterMs` says how long the caller should wait at least. */
export class RetryableError extends MeridianError {
  readonly retryAfterMs: number | undefined;
  constructor(message: string, options: MeridianErrorOptions & { retryAfterMs?: number } = {}) {
    super('RETRYABLE', message, options);
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** Codes of failures that the same call will hit again however often it is retried. */
const terminalCodes = new Set<string>([
  'TERMINAL',
  'INVALID_ARGUMENT',
  'RECORD_TOO_LARGE',
  'SCHEMA_MISMATCH',
  'ASSERTION_FAILED',
]);

/** True for errors a retry policy must not retry: terminal errors and bad input of every kind. */
export function isTerminalError(value: unknown): value is MeridianError {
  return isMeridianError(value) && terminalCodes.has(value.code);
}

/** Turns any thrown value into an Error before it travels further (journals, logs, dead letters). */
export function ensureError(value: unknown): Error {
  if (value instanceof Error) return value;
  if (typeof value === 'string') return new Error(value);
  try {
    return new Error(`Non-error thrown: ${JSON.stringify(value)}`);
  } catch {
    return new Error(`Non-error thrown: ${String(value)}`);
  }
}
