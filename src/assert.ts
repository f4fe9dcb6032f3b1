import { MeridianError } from './errors.ts';

/**
 * Asserts a programmer's invariant. A failed assertion is a bug in Meridian or in the
 * caller's use of it, never an operating condition: it throws an AssertionFailedError
 * that must not be caught and retried.
 */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionFailedError(message);
}

export class AssertionFailedError extends MeridianError {
  constructor(message: string) {
    super('ASSERTION_FAILED', `Invariant violated: ${message}`);
  }
}
