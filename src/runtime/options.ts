import { ValidationError } from '../errors.ts';

/**
 * Names and ids in the runtime. Numeric options are checked with the resilience layer's
 * integerOption and numberOption, so every bad option reads alike.
 */

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
