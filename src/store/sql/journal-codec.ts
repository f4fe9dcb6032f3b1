import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { SchemaMismatchError } from '../schema-mismatch-error.ts';
import type { JournalEntry, JournalEntryKind, Json } from '../types.ts';

/**
 * The folded form of an ended saga's journal: its entries as one compressed value on the saga's
 * record instead of one row each. A row repeats the saga id and the column names' worth of
 * per-row overhead, and a commerce order's eight entries took ~1,150 bytes as rows; folded, the
 * same journal takes ~250 (docs/benchmarks.md). Only an ended saga's journal is folded: no
 * runner appends to it any more, so the dense, row-per-entry form appends need is not lost.
 *
 * Layout: u8 format version, then raw DEFLATE of the UTF-8 JSON array of the entries, with
 * `dictionary` as its preset dictionary (version 1) or `dictionary` followed by the saga's id
 * (version 2, written since store migration 10: results that repeat the id, as an order's do,
 * store it as a back-reference; ~15 bytes a commerce order). Version 1 values are still read.
 * The entries are each `[code, name, result, error, attempts, at - previous at]`: `code` is the kind's index in `kinds` times 2 plus the status's in `statuses`,
 * the first entry's `at` is absolute. The saga id and the sequence (the entry's index) are implied.
 * Never change the lists or the dictionary of a released version: add the next version instead.
 */
export const foldedJournalVersion = 2;

const kinds: readonly JournalEntryKind[] = ['step', 'compensation', 'sleep', 'event'];
const statuses: readonly JournalEntry['status'][] = ['completed', 'failed'];
/** Text most journals hold, so that even a short journal compresses: saves ~30 bytes a saga. */
const dictionary = Buffer.from('[[6,"$start",{"traceparent":"00-"}],[0,"status":"completed",null,1,');

type FoldedEntry = [number, string, Json | null, string | null, number, number];

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
  const packed = deflateRawSync(JSON.stringify(folded), {
    dictionary: dictionaryOf(foldedJournalVersion, sagaId),
  });
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
  if (version !== 1 && version !== foldedJournalVersion) {
    throw corrupt(sagaId, `format version ${version} is not 1 or ${foldedJournalVersion}`);
  }
  try {
    const text = inflateRawSync(bytes.subarray(1), { dictionary: dictionaryOf(version, sagaId) });
    return JSON.parse(text.toString('utf8'));
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
