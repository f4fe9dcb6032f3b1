import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { SchemaMismatchError } from '../schema-mismatch-error.ts';

/**
 * Packed text: a value the store would keep as TEXT (an entity's JSON state, a stored
 * Idempotency-Key response), kept compressed in a BYTEA/BLOB column beside it when that is
 * smaller. A commerce order's Order and Notifications states took ~270 bytes of JSON each and
 * its stored `202` response ~160; packed, ~125 and ~55 (docs/benchmarks.md, "Storage per
 * order").
 *
 * Layout: u8 format version (1), then raw DEFLATE of the UTF-8 text with a preset dictionary:
 * `commonText` followed by the row's context — text the row's key already holds (an entity's
 * type and id), so a value that repeats its own key stores it as a back-reference. The context
 * is derived from the key when reading, never stored twice. Short texts (under
 * `minPackedBytes`) stay plain: they gain a few bytes at most, and a hot row (a stock counter
 * written at every order) would pay the compression at every write for nothing. Never change
 * the dictionary of a released version: add the next version instead.
 */
export const packedTextVersion = 1;

/** Texts shorter than this (UTF-8 bytes) stay plain. */
export const minPackedBytes = 128;

/**
 * Words JSON records commonly hold (names of fields most business records have, status words,
 * literals) and HTTP response headers. Nothing of one application's own: the commerce app's
 * field names (`orderId`, `sku`, ...) are not in it, so what it gains there any app gains.
 */
const commonText =
  '{"location":"/","content-type":"application/json; charset=utf-8","etag":"W/"}\u0000' +
  '{"id":"","type":"","name":"","kind":"","state":"","error":null,"reason":null,"message":"",' +
  '"createdAt":,"updatedAt":,"at":17,"items":[{"quantity":,"price":,"amount":,"total":,' +
  '"currency":"","status":"pending","completed","confirmed","cancelled","failed",true,false,';

function dictionary(context: string): Buffer {
  return Buffer.from(`${commonText}${context}`, 'utf8');
}

/** `text` packed, or null when it is short or does not get smaller (the caller stores it plain). */
export function packText(text: string, context: string): Uint8Array | null {
  const plainBytes = Buffer.byteLength(text, 'utf8');
  if (plainBytes < minPackedBytes) return null;
  const packed = deflateRawSync(text, { dictionary: dictionary(context) });
  if (packed.length + 1 >= plainBytes) return null;
  // A Buffer: pg sends one as bytea, also inside an array parameter (the batched writes').
  return Buffer.concat([Buffer.of(packedTextVersion), packed]);
}

/**
 * The text `packText(text, context)` was given. `what` names the value in the error a damaged
 * value or one of a newer format gets (a SchemaMismatchError).
 */
export function unpackText(bytes: Uint8Array, context: string, what: string): string {
  const corrupt = (detail: string) =>
    new SchemaMismatchError(
      `The packed value of ${what} does not decode: ${detail}; it was written by another version of Meridian or damaged`,
      { details: { value: what.slice(0, 600) } },
    );
  if (bytes[0] !== packedTextVersion) {
    throw corrupt(`format version ${bytes[0]} is not ${packedTextVersion}`);
  }
  try {
    return inflateRawSync(bytes.subarray(1), { dictionary: dictionary(context) }).toString('utf8');
  } catch (cause) {
    throw corrupt(cause instanceof Error ? cause.message : String(cause));
  }
}
