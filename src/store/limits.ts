import { ValidationError } from '../errors.ts';
import type { Json } from './types.ts';

/**
 * The store's fixed limits. They are not options: every node of a cluster must agree on them,
 * and each one keeps a row small enough that a transaction stays fast on both dialects.
 */
export const storeLimits = {
  /** Entity types, saga types, timer kinds, journal names, topics, consumers, scopes. */
  maxNameLength: 256,
  /** Entity, saga, timer and message ids, idempotency keys and fingerprints. */
  maxIdLength: 512,
  /** JSON text of one state, saga input/output, timer payload or journal result (UTF-8 bytes). */
  maxJsonBytes: 1_048_576,
  /** Saga reasons, journal errors (characters). */
  maxTextLength: 16_384,
  /** Idempotent response bodies (UTF-8 bytes). */
  maxResponseBodyBytes: 1_048_576,
  /** Outbox key + value of one message (bytes). */
  maxOutboxMessageBytes: 1_048_576,
  /** Headers of one outbox message or stored response. */
  maxHeaders: 64,
  /** Rows one list/due/pending call returns at most. */
  maxPageSize: 1000,
  /** Rows a list call returns when it names no limit. */
  defaultPageSize: 100,
  /** Messages one outbox.add or ids one markPublished call takes at most. */
  maxBatchSize: 1000,
  /** Entries in one saga's journal: sequences 0 .. maxJournalEntries - 1. */
  maxJournalEntries: 10_000,
  /** Lease of an idempotency reservation (ms): one day. */
  maxLeaseMs: 86_400_000,
  /** Work partitions are numbered 0 .. maxPartitions - 1; a partition filter names at most this many. */
  maxPartitions: 10_000,
  /** Payload of one notification (UTF-8 bytes): PostgreSQL's NOTIFY takes less than 8000. */
  maxNotificationBytes: 7999,
} as const;

function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value.length > 64 ? `${value.slice(0, 64)}...` : value}'`;
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'object' && value !== null) return Array.isArray(value) ? 'an array' : 'an object';
  return String(value);
}

function fail(field: string, rule: string, value: unknown): never {
  throw new ValidationError(`'${field}' must be ${rule}: current value is ${describe(value)}`, {
    details: { field, rule },
  });
}

/**
 * A non-empty string of at most `maxLength` characters without NUL (PostgreSQL text cannot
 * hold NUL, so both dialects refuse it and behave the same).
 */
export function requireString(field: string, value: unknown, maxLength: number): string {
  if (typeof value !== 'string' || value.length === 0) fail(field, 'a non-empty string', value);
  if (value.length > maxLength) {
    throw new ValidationError(
      `'${field}' must be at most ${maxLength} characters: current value has ${value.length}`,
      { details: { field, rule: 'maxLength', maxLength, length: value.length } },
    );
  }
  if (value.includes('\u0000')) fail(field, 'free of NUL characters', value);
  return value;
}

export function requireName(field: string, value: unknown): string {
  return requireString(field, value, storeLimits.maxNameLength);
}

export function requireId(field: string, value: unknown): string {
  return requireString(field, value, storeLimits.maxIdLength);
}

/** null, or text like `requireString` (empty allowed). */
export function optionalText(field: string, value: unknown, maxLength: number): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'string') fail(field, 'a string or null', value);
  if (value.length > maxLength) {
    throw new ValidationError(
      `'${field}' must be at most ${maxLength} characters: current value has ${value.length}`,
      { details: { field, rule: 'maxLength', maxLength, length: value.length } },
    );
  }
  if (value.includes('\u0000')) fail(field, 'free of NUL characters', value);
  return value;
}

/** An integer in [min, max]. */
export function requireInteger(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) fail(field, 'an integer', value);
  if (value < min) fail(field, `>= ${min}`, value);
  if (value > max) fail(field, `<= ${max}`, value);
  return value;
}

/** Milliseconds since the epoch (or a version): a safe integer >= 0. */
export function requireTimestamp(field: string, value: unknown): number {
  return requireInteger(field, value, 0, Number.MAX_SAFE_INTEGER);
}

export function requireLimit(field: string, value: unknown, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  return requireInteger(field, value, 1, storeLimits.maxPageSize);
}

export function requireOneOf<T extends string>(field: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    fail(field, `one of ${allowed.map((item) => `'${item}'`).join(', ')}`, value);
  }
  return value as T;
}

/**
 * Values that are the result of JSON.parse, registered with `parsedJson`: they hold nothing JSON
 * would change, so `toJsonText` can skip its per-key check (a replacer function takes
 * JSON.stringify off its fast path: it was a visible share of every commit's CPU).
 */
const parsedValues = new WeakSet<object>();

/**
 * Registers `value`, fresh from JSON.parse and not to be changed afterwards, as needing no
 * check when the store writes it. Returns it.
 */
export function parsedJson<T extends Json>(value: T): T {
  if (typeof value === 'object' && value !== null) parsedValues.add(value);
  return value;
}

/**
 * The JSON text of `value`. Refuses what JSON would silently change or drop (NaN, Infinity,
 * undefined, functions, symbols) and what it cannot hold (bigint, cycles), so what is read back
 * equals what was written.
 */
export function toJsonText(field: string, value: Json | undefined): string {
  let text: string | undefined;
  try {
    text =
      typeof value === 'object' && value !== null && parsedValues.has(value)
        ? JSON.stringify(value)
        : JSON.stringify(value, function check(key, item: unknown) {
            const kind = typeof item;
            if (kind === 'number' && !Number.isFinite(item)) {
              throw new ValidationError(
                `'${field}' must be JSON-serialisable: ${String(item)} at key '${key}' is not a finite number`,
                { details: { field, rule: 'json', key } },
              );
            }
            if (kind === 'undefined' || kind === 'function' || kind === 'symbol') {
              throw new ValidationError(
                `'${field}' must be JSON-serialisable: ${kind} at key '${key}' has no JSON form`,
                { details: { field, rule: 'json', key } },
              );
            }
            return item;
          });
  } catch (error) {
    if (error instanceof ValidationError) throw error;
    throw new ValidationError(`'${field}' must be JSON-serialisable: ${(error as Error).message}`, {
      cause: error,
      details: { field, rule: 'json' },
    });
  }
  if (text === undefined) fail(field, 'JSON-serialisable', value);
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > storeLimits.maxJsonBytes) {
    throw new ValidationError(
      `'${field}' must be at most ${storeLimits.maxJsonBytes} bytes of JSON: current value has ${bytes}`,
      { details: { field, rule: 'maxJsonBytes', maxBytes: storeLimits.maxJsonBytes, bytes } },
    );
  }
  return text;
}

/** String headers, at most `maxHeaders` of them, as JSON text. */
export function toHeadersText(field: string, value: unknown): string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(field, 'an object of string values', value);
  }
  const entries = Object.entries(value);
  if (entries.length > storeLimits.maxHeaders) {
    throw new ValidationError(
      `'${field}' must hold at most ${storeLimits.maxHeaders} headers: current value has ${entries.length}`,
      { details: { field, rule: 'maxHeaders', length: entries.length } },
    );
  }
  for (const [name, item] of entries) {
    if (typeof item !== 'string') fail(`${field}.${name}`, 'a string', item);
  }
  return JSON.stringify(value);
}

/** A work partition number: an integer in 0 .. storeLimits.maxPartitions - 1. */
export function requirePartition(field: string, value: unknown): number {
  return requireInteger(field, value, 0, storeLimits.maxPartitions - 1);
}

/**
 * A partition filter (see PartitionFilter) as one JSON array parameter, so the SQL text is the same
 * for any count: null when absent (all partitions), the array's JSON text otherwise (possibly []).
 */
export function toPartitionsText(field: string, value: unknown): string | null {
  if (value === undefined) return null;
  if (!Array.isArray(value)) fail(field, 'an array of partition numbers', value);
  if (value.length > storeLimits.maxPartitions) {
    throw new ValidationError(
      `'${field}' must hold at most ${storeLimits.maxPartitions} partitions: current value has ${value.length}`,
      { details: { field, rule: 'maxPartitions', length: value.length } },
    );
  }
  value.forEach((partition, index) => {
    requirePartition(`${field}[${index}]`, partition);
  });
  return JSON.stringify(value);
}

const channelPattern = /^[a-z0-9_.]{1,63}$/;

/** A notification channel: 1 to 63 characters of a-z, 0-9, '_' and '.'. */
export function requireChannel(field: string, value: unknown): string {
  if (typeof value !== 'string' || !channelPattern.test(value)) {
    fail(field, `a channel name matching ${channelPattern}`, value);
  }
  return value;
}

/** A notification payload: a non-empty string of at most storeLimits.maxNotificationBytes UTF-8 bytes. */
export function requireNotificationPayload(field: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) fail(field, 'a non-empty string', value);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > storeLimits.maxNotificationBytes) {
    throw new ValidationError(
      `'${field}' must be at most ${storeLimits.maxNotificationBytes} bytes: current value has ${bytes}`,
      { details: { field, rule: 'maxNotificationBytes', bytes } },
    );
  }
  if (value.includes('\u0000')) fail(field, 'free of NUL characters', value);
  return value;
}
