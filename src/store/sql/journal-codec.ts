import { inflateRaw, PresetDictionary } from '../../deflate.ts';
import { SchemaMismatchError } from '../schema-mismatch-error.ts';
import type { JournalEntry, JournalEntryKind, Json } from '../types.ts';

/**
 * The folded form of an ended saga's journal: its entries as one compressed value on the saga's
 * record instead of one row each. A row repeats the saga id and the column names' worth of
 * per-row overhead, and a commerce order's eight entries took ~1,150 bytes as rows; folded, the
 * same journal takes ~250 (docs/benchmarks.md). Only an ended saga's journal is folded: no
 * runner appends to it any more, so the dense, row-per-entry form appends need is not lost.
 *
 * Layout: u8 format version, then raw DEFLATE of the UTF-8 JSON array of the entries with a
 * preset dictionary. Results often repeat the saga's id (an order's do), which the dictionary
 * lets DEFLATE store as a back-reference (~15 bytes a commerce order):
 * - version 3 (written since 2026-12-07): every occurrence of the id in the JSON text replaced by
 *   U+0001 (`placeholder`, which JSON.stringify never writes raw), and the dictionary
 *   `dictionary` followed by `"` U+0001 `"`: the same for every saga, so one zlib stream packs
 *   them all (src/deflate.ts, `PresetDictionary`) instead of one built per journal.
 * - version 2 (store migration 10 until then): the text as it is, the dictionary `dictionary`
 *   followed by the saga's id. Still read.
 * - version 1 (before migration 10): the dictionary `dictionary` alone. Still read.
 * The entries are each `[code, name, result, error, attempts, at - previous at]`: `code` is the kind's index in `kinds` times 2 plus the status's in `statuses`,
 * the first entry's `at` is absolute. The saga id and the sequence (the entry's index) are implied.
 * Never change the lists or the dictionary of a released version: add the next version instead.
 */
export const foldedJournalVersion = 3;
const placeholder = '\u0001';

const kinds: readonly JournalEntryKind[] = ['step', 'compensation', 'sleep', 'event'];
const statuses: readonly JournalEntry['status'][] = ['completed', 'failed'];
/** Text most journals hold, so that even a short journal compresses: saves ~30 bytes a saga. */
const dictionary = Buffer.from('[[6,"$start",{"traceparent":"00-"}],[0,"status":"completed",null,1,');

type FoldedEntry = [number, string, Json | null, string | null, number, number];

/** Version 3's dictionary, with its zlib streams. */
const preset = new PresetDictionary(Buffer.concat([dictionary, Buffer.from(`"${placeholder}"`, 'utf8')]));

/** The dictionary of a version-1 or version-2 value. */
function dictionaryOf(version: number, sagaId: string): Buffer {
  return version === 1 ? dictionary : Buffer.concat([dictionary, Buffer.from(sagaId, 'utf8')]);
}

/** Folds the journal of saga `sagaId`, entries in sequence order from 0. */
export function encodeJournal(sagaId: string, entries: readonly JournalEntry[]): Uint8Array {
  let previousAt = 0;
  const folded = entries.map((entry): FoldedEntry => {
    const delta = entry.at - previousAt;
    previousAt = entry.at;
    const code = kinds.indexOf(entry.kind) * 2 + statuses.indexOf(entry.status);
    return [code, entry.name, entry.result, entry.error, entry.attempts, delta];
  });
  const packed = preset.deflate(JSON.stringify(folded).replaceAll(sagaId, placeholder));
  const bytes = new Uint8Array(1 + packed.length);
  bytes[0] = foldedJournalVersion;
  bytes.set(packed, 1);
  return bytes;
}

function corrupt(sagaId: string, detail: string): SchemaMismatchError {
  return new SchemaMismatchError(
    `The folded journal of saga '${sagaId}' does not decode: ${detail}; it was written by another version of Meridian or damaged`,
    { details: { sagaId } },
  );
}

function isFoldedEntry(value: unknown): value is FoldedEntry {
  if (!Array.isArray(value) || value.length !== 6) return false;
  const [code, name, , error, attempts, delta] = value as unknown[];
  return (
    Number.isInteger(code) &&
    (code as number) >= 0 &&
    (code as number) < kinds.length * statuses.length &&
    typeof name === 'string' &&
    (error === null || typeof error === 'string') &&
    Number.isSafeInteger(attempts) &&
    Number.isSafeInteger(delta)
  );
}

function inflate(sagaId: string, bytes: Uint8Array): unknown {
  const version = bytes[0];
  if (version !== 1 && version !== 2 && version !== foldedJournalVersion) {
    throw corrupt(sagaId, `format version ${version} is not 1 to ${foldedJournalVersion}`);
  }
  try {
    const text =
      version === foldedJournalVersion
        ? preset.inflate(bytes.subarray(1)).toString('utf8').replaceAll(placeholder, sagaId)
        : inflateRaw(bytes.subarray(1), dictionaryOf(version, sagaId)).toString('utf8');
    return JSON.parse(text);
  } catch (cause) {
    throw corrupt(sagaId, cause instanceof Error ? cause.message : String(cause));
  }
}

/** The entries of saga `sagaId`'s folded journal, as `encodeJournal` was given them. */
export function decodeJournal(sagaId: string, bytes: Uint8Array): JournalEntry[] {
  const folded = inflate(sagaId, bytes);
  if (!Array.isArray(folded)) throw corrupt(sagaId, 'not an array of entries');
  let at = 0;
  return folded.map((value: unknown, sequence) => {
    if (!isFoldedEntry(value)) throw corrupt(sagaId, `entry ${sequence} is malformed`);
    const [code, name, result, error, attempts, delta] = value;
    at += delta;
    const kind = kinds[code >> 1]!;
    const status = statuses[code & 1]!;
    return { sagaId, sequence, kind, name, status, result, error, attempts, at };
  });
}
