import { ValidationError } from '../errors.ts';
import type { LogRecord } from './types.ts';

/**
 * Small helpers between the log's bytes and the values applications use: UTF-8 strings for keys
 * and JSON for values. The log itself stores bytes only, as Kafka does.
 */

const encoder = new TextEncoder();
// fatal: invalid UTF-8 must be reported, not silently replaced with U+FFFD.
const decoder = new TextDecoder('utf-8', { fatal: true });

/** The UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** The string a UTF-8 byte array holds; ValidationError when the bytes are not valid UTF-8. */
export function fromUtf8(bytes: Uint8Array): string {
  try {
    return decoder.decode(bytes);
  } catch (error) {
    throw new ValidationError('The bytes are not valid UTF-8', { cause: error });
  }
}

/** A producer key as bytes: strings become UTF-8, bytes stay, null and undefined mean no key. */
export function keyBytes(key: string | Uint8Array | null | undefined): Uint8Array | null {
  if (key === null || key === undefined) return null;
  if (typeof key === 'string') return encoder.encode(key);
  if (key instanceof Uint8Array) return key;
  throw new ValidationError(
    `A record key must be a string, a Uint8Array or null: current value is a ${typeof key}`,
  );
}

/** A value to append as JSON: `log.append(topic, [{ key, value: jsonValue({ ... }) }])`. */
export function jsonValue(value: unknown): Uint8Array {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new ValidationError(`The value cannot be encoded as JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (text === undefined) {
    throw new ValidationError(`The value cannot be encoded as JSON: a ${typeof value} has no JSON form`);
  }
  return encoder.encode(text);
}

function where(record: LogRecord): string {
  return `topic '${record.topic}' partition ${record.partition} offset ${record.offset}`;
}

function details(record: LogRecord): Record<string, unknown> {
  return { topic: record.topic, partition: record.partition, offset: record.offset };
}

/**
 * The JSON value a record holds, or null for a tombstone (check `record.value === null` to tell a
 * tombstone from a JSON null). ValidationError naming the record when it is not UTF-8 JSON.
 */
export function decodeJson<T = unknown>(record: LogRecord): T | null {
  if (record.value === null) return null;
  let text: string;
  try {
    text = decoder.decode(record.value);
  } catch (error) {
    throw new ValidationError(`The value at ${where(record)} is not valid UTF-8, so not JSON`, {
      cause: error,
      details: details(record),
    });
  }
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new ValidationError(`The value at ${where(record)} is not JSON: ${(error as Error).message}`, {
      cause: error,
      details: details(record),
    });
  }
}

/** The record's value as a UTF-8 string, or null for a tombstone. */
export function decodeString(record: LogRecord): string | null {
  if (record.value === null) return null;
  try {
    return decoder.decode(record.value);
  } catch (error) {
    throw new ValidationError(`The value at ${where(record)} is not valid UTF-8`, {
      cause: error,
      details: details(record),
    });
  }
}

/** The record's key as a UTF-8 string, or null when it has none. */
export function decodeKey(record: LogRecord): string | null {
  if (record.key === null) return null;
  try {
    return decoder.decode(record.key);
  } catch (error) {
    throw new ValidationError(`The key at ${where(record)} is not valid UTF-8`, {
      cause: error,
      details: details(record),
    });
  }
}
