import { ValidationError } from '../errors.ts';

/**
 * Option validation for the runtime: every option has a bound, and a bad one is refused with a
 * message naming the option, the rule and the value.
 */

/** `value` (or `fallback` when undefined) as an integer in [min, max]. */
export function integerOption(
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
): number {
  const actual = value === undefined ? fallback : value;
  if (typeof actual !== 'number' || !Number.isInteger(actual)) {
    throw new ValidationError(`'${name}' must be an integer: current value is ${String(actual)}`);
  }
  if (actual < min) throw new ValidationError(`'${name}' must be >= ${min}: current value is ${actual}`);
  if (actual > max) throw new ValidationError(`'${name}' must be <= ${max}: current value is ${actual}`);
  return actual;
}

/** `value` (or `fallback` when undefined) as a finite number in [min, max]. */
export function numberOption(
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
): number {
  const actual = value === undefined ? fallback : value;
  if (typeof actual !== 'number' || !Number.isFinite(actual)) {
    throw new ValidationError(`'${name}' must be a finite number: current value is ${String(actual)}`);
  }
  if (actual < min) throw new ValidationError(`'${name}' must be >= ${min}: current value is ${actual}`);
  if (actual > max) throw new ValidationError(`'${name}' must be <= ${max}: current value is ${actual}`);
  return actual;
}

/**
 * Names of entities, sagas, subscriptions and steps: they become topic names, journal names and
 * idempotency keys, so they are limited to characters every backend (and Kafka) accepts.
 */
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export function requireRuntimeName(what: string, value: unknown): string {
  if (typeof value !== 'string' || !namePattern.test(value)) {
    throw new ValidationError(
      `${what} must match ${namePattern} (letters, digits, '.', '_', '-'; at most 100): current value is '${String(value)}'`,
    );
  }
  return value;
}

/** Entity and saga ids: any non-empty string up to 512 characters without NUL (the store's limit). */
export function requireRuntimeId(what: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 512 || value.includes('\u0000')) {
    throw new ValidationError(
      `${what} must be a non-empty string of at most 512 characters without NUL: current value is '${String(value).slice(0, 64)}'`,
    );
  }
  return value;
}
