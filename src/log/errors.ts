import { MeridianError, type MeridianErrorOptions } from '../errors.ts';

/**
 * The errors particular to the log. Every backend throws these (and the shared ones from
 * src/errors.ts: ValidationError, NotFoundError, AlreadyExistsError, ClosedError) for the same
 * conditions, so callers never depend on which backend they run on.
 */

/** A record (key + value + headers) is larger than the log accepts. Retrying cannot help. */
export class RecordTooLargeError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('RECORD_TOO_LARGE', message, options);
  }
}

/** An offset past the end of a partition (a read or a commit of an offset not written yet). */
export class OffsetOutOfRangeError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('OFFSET_OUT_OF_RANGE', message, options);
  }
}

/**
 * A consumer's `onAssignment` listener threw (or its promise rejected). The assignment change
 * it was told about stands; the next poll throws this once, with the listener's error as cause.
 */
export class AssignmentListenerError extends MeridianError {
  constructor(message: string, options: MeridianErrorOptions = {}) {
    super('ASSIGNMENT_LISTENER_FAILED', message, options);
  }
}

/**
 * Stored data this code cannot read: a database whose log schema is newer than this Meridian, or
 * a stored record batch that does not decode. One class with the store's, so callers test one
 * type (and code 'SCHEMA_MISMATCH') whichever layer refused.
 */
export { SchemaMismatchError } from '../store/schema-mismatch-error.ts';
