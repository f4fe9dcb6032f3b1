import { ValidationError } from '../errors.ts';
import type { Json } from '../store/types.ts';

/**
 * JSON is the runtime's one encoding: entity state, journal results, event payloads. Values go
 * through a round trip before code sees them, so the first run of a step and its replay from
 * the journal hand the saga exactly the same value (a Date becomes a string both times).
 */
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** The JSON form of `value` (undefined becomes null), or a ValidationError naming `what`. */
export function toJson(what: string, value: unknown): Json {
  if (value === undefined) return null;
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new ValidationError(`${what} must be JSON-serialisable: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (text === undefined) {
    throw new ValidationError(`${what} must be JSON-serialisable: current value is ${typeof value}`);
  }
  return JSON.parse(text) as Json;
}

export function encodeJson(value: Json): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** Parses a record value written as JSON; null stays null (a tombstone). */
export function decodeJson(bytes: Uint8Array | null): Json {
  if (bytes === null) return null;
  return JSON.parse(decoder.decode(bytes)) as Json;
}

export function encodeText(text: string): Uint8Array {
  return encoder.encode(text);
}

export function decodeText(bytes: Uint8Array | null): string | null {
  return bytes === null ? null : decoder.decode(bytes);
}
