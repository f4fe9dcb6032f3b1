import { describe, expect, it } from 'vitest';
import { AssertionFailedError, assert } from './assert.ts';
import {
  ConflictError,
  ensureError,
  isMeridianError,
  isTerminalError,
  MeridianError,
  RetryableError,
  TerminalError,
  ValidationError,
} from './errors.ts';

describe('errors', () => {
  it('recognises Meridian errors by their marker, even from another copy of the package', () => {
    const foreign = Object.assign(new Error('from a second copy'), { [Symbol.for('meridian.error')]: true });
    expect(isMeridianError(foreign)).toBe(true);
    expect(isMeridianError(new ConflictError('version 3 expected, found 4'))).toBe(true);
    expect(isMeridianError(new Error('plain'))).toBe(false);
    expect(isMeridianError('a string')).toBe(false);
  });

  it('carries a stable code, a name, details and a cause', () => {
    const cause = new Error('disk full');
    const error = new ValidationError("'batchSize' must be <= 1000: current value is 4096", {
      cause,
      details: { option: 'batchSize', value: 4096 },
    });
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.name).toBe('ValidationError');
    expect(error.details).toEqual({ option: 'batchSize', value: 4096 });
    expect(error.cause).toBe(cause);
  });

  it('treats terminal and validation errors as not retryable, and keeps retryAfterMs', () => {
    expect(isTerminalError(new TerminalError('card declined'))).toBe(true);
    expect(isTerminalError(new ValidationError('bad'))).toBe(true);
    expect(isTerminalError(new RetryableError('busy', { retryAfterMs: 250 }))).toBe(false);
    expect(new RetryableError('busy', { retryAfterMs: 250 }).retryAfterMs).toBe(250);
  });

  it('turns any thrown value into an Error', () => {
    expect(ensureError('boom').message).toBe('boom');
    expect(ensureError({ a: 1 }).message).toContain('{"a":1}');
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    expect(ensureError(circular)).toBeInstanceOf(Error);
    const error = new Error('same');
    expect(ensureError(error)).toBe(error);
  });

  it('assert throws an AssertionFailedError naming the invariant', () => {
    expect(() => assert(false, 'offsets are dense')).toThrow(AssertionFailedError);
    expect(() => assert(false, 'offsets are dense')).toThrow(/Invariant violated: offsets are dense/);
    expect(() => assert(true, 'never')).not.toThrow();
  });
});

describe('isTerminalError', () => {
  it('counts every failure a retry cannot fix, by code', () => {
    for (const code of ['RECORD_TOO_LARGE', 'SCHEMA_MISMATCH', 'ASSERTION_FAILED']) {
      expect(isTerminalError(new MeridianError(code, 'x'))).toBe(true);
    }
    for (const code of ['CONFLICT', 'UNAVAILABLE', 'TIMEOUT']) {
      expect(isTerminalError(new MeridianError(code, 'x'))).toBe(false);
    }
  });
});
