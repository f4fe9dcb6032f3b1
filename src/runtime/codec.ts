import { ValidationError } from '../errors.ts';
import { parsedJson } from '../store/limits.ts';
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
  // The store's limit, checked here so that a value too large fails its step or command instead
  // of the transaction that would journal it.
  if (text.length > maxJsonBytes / 3 && Buffer.byteLength(text, 'utf8') > maxJsonBytes) {
    throw new ValidationError(
      `${what} must be at most ${maxJsonBytes} bytes of JSON: current value has ${Buffer.byteLength(text, 'utf8')}`,
    );
  }
  return parsedJson(JSON.parse(text) as Json);
}

/** The largest JSON value the store keeps (state, input, output, a step's result). */
export const maxJsonBytes = 1_048_576;

export function encodeJson(value: Json): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** Parses a record value written as JSON; null stays null (a tombstone). */
export function decodeJson(bytes: Uint8Array | null): Json {
  if (bytes === null) return null;
  return JSON.parse(decoder.decode(bytes)) as Json;
}

export function decodeText(bytes: Uint8Array | null): string | null {
  return bytes === null ? null : decoder.decode(bytes);
}
