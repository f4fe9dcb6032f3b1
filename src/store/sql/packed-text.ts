import { deflateRaw, inflateRaw, PresetDictionary } from '../../deflate.ts';
import { SchemaMismatchError } from '../schema-mismatch-error.ts';

/**
 * Packed text: a value the store would keep as TEXT (an entity's JSON state, a stored
 * Idempotency-Key response), kept compressed in a BYTEA/BLOB column beside it when that is
 * smaller. A commerce order's Order and Notifications states took ~270 bytes of JSON each and
 * its stored `202` response ~160; packed, ~125 and ~55 (docs/benchmarks.md, "Storage per
 * order").
 *
 * A row is packed with what its key already holds, which is never stored twice: its kind (an
 * entity's type; '' for a saga or a stored response) and its own key (an entity's or a saga's
 * id), which a value often repeats. Layout: u8 format version, then raw DEFLATE of the UTF-8
 * text with a preset dictionary:
 * - version 2 (written since 2026-12-07): every occurrence of the key in the text replaced by
 *   U+0001 (`placeholder`, which JSON text never holds raw), and the dictionary `commonText`,
 *   the kind, then `"` U+0001 `"`. The dictionary is the same for every row of a kind, so one
 *   zlib stream per kind packs them all (src/deflate.ts, `PresetDictionary`). A text that
 *   holds U+0001 itself is written in version 1.
 * - version 1: the text as it is, the dictionary `commonText` followed by the kind, `"`, the
 *   key and `"` (just the key when the kind is ''): one dictionary per row. Still read.
 *
 * Short texts (under `minPackedBytes`) stay plain: they gain a few bytes at most, and a hot row
 * (a stock counter written at every order) would pay the compression at every write for
 * nothing. Never change the dictionary of a released version: add the next version instead.
 */
export const packedTextVersion = 2;
const keyedTextVersion = 1;
const placeholder = '\u0001';

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

/** Kinds whose dictionaries keep their zlib streams: more than an application has types (past it, the oldest is dropped). */
const maxKinds = 256;
const presets = new Map<string, PresetDictionary>();

/** The version-2 dictionary of `kind`. */
function presetOf(kind: string): PresetDictionary {
  let preset = presets.get(kind);
  if (preset === undefined) {
    preset = new PresetDictionary(`${commonText}${kind}"${placeholder}"`);
    if (presets.size >= maxKinds) presets.delete(presets.keys().next().value ?? '');
    presets.set(kind, preset);
  }
  return preset;
}

function keyedDictionary(kind: string, key: string): Buffer {
  return Buffer.from(`${commonText}${kind === '' ? key : `${kind}"${key}"`}`, 'utf8');
}

function deflateText(text: string, kind: string, key: string): [version: number, packed: Buffer] {
  if (text.includes(placeholder)) return [keyedTextVersion, deflateRaw(text, keyedDictionary(kind, key))];
  const keyless = key === '' ? text : text.replaceAll(key, placeholder);
  return [packedTextVersion, presetOf(kind).deflate(keyless)];
}

function inflateText(version: number, packed: Uint8Array, kind: string, key: string): string {
  if (version === keyedTextVersion) return inflateRaw(packed, keyedDictionary(kind, key)).toString('utf8');
  const text = presetOf(kind).inflate(packed).toString('utf8');
  return key === '' ? text : text.replaceAll(placeholder, key);
}

/**
 * `text` packed for the row of `kind` with key `key`, or null when it is short or does not get
 * smaller (the caller stores it plain).
 */
export function packText(text: string, kind: string, key: string): Uint8Array | null {
  const plainBytes = Buffer.byteLength(text, 'utf8');
  if (plainBytes < minPackedBytes) return null;
  const [version, packed] = deflateText(text, kind, key);
  if (packed.length + 1 >= plainBytes) return null;
  // A Buffer: pg sends one as bytea, also inside an array parameter (the batched writes').
  const bytes = Buffer.allocUnsafe(packed.length + 1);
  bytes[0] = version;
  packed.copy(bytes, 1);
  return bytes;
}

/**
 * The text `packText(text, kind, key)` was given. `what` names the value in the error a damaged
 * value or one of a newer format gets (a SchemaMismatchError).
 */
export function unpackText(bytes: Uint8Array, kind: string, key: string, what: string): string {
  const corrupt = (detail: string) =>
    new SchemaMismatchError(
      `The packed value of ${what} does not decode: ${detail}; it was written by another version of Meridian or damaged`,
      { details: { value: what.slice(0, 600) } },
    );
  const version = bytes[0];
  if (version !== keyedTextVersion && version !== packedTextVersion) {
    throw corrupt(`format version ${version} is not ${keyedTextVersion} or ${packedTextVersion}`);
  }
  try {
    return inflateText(version, bytes.subarray(1), kind, key);
  } catch (cause) {
    throw corrupt(cause instanceof Error ? cause.message : String(cause));
  }
}
