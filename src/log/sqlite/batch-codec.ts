import { PresetDictionary } from '../../deflate.ts';
import { SchemaMismatchError } from '../errors.ts';
import type { LogRecord, RecordHeaders } from '../types.ts';

/**
 * The stored form of a record batch: the records one append puts into one partition, packed into
 * a single BLOB, as Kafka packs a record batch into its log segment. One row per batch instead of
 * one per record is what makes the SQLite log fast: SQLite's cost is per row and per BLOB column
 * (measured: ~1.3 µs to materialise each BLOB), while decoding a packed batch costs a few
 * DataView reads per record and no copy (keys and values are views into the batch's bytes).
 *
 * Layout (little-endian):
 *   u8 format version (1)
 *   then per record:
 *     u32 offset delta from the batch's base offset (dense on append; gaps after compaction)
 *     f64 timestamp in ms (exact for integers up to 2^53)
 *     i32 key length, -1 for a null key
 *     i32 value length, -1 for a null value (a tombstone)
 *     u32 headers length, 0 for no headers (headers are UTF-8 JSON of a string→string object)
 *     key bytes, value bytes, headers bytes
 */
export const batchFormatVersion = 1;
export const recordOverheadBytes = 24;

/**
 * The stored form of a batch that compresses: u8 2, then the raw DEFLATE (with
 * `batchDictionary` as its preset dictionary) of the format-1 batch after its version byte.
 * Records are mostly JSON, and a key often repeats in the value and the headers: a commerce
 * order's record takes ~220 bytes instead of ~390. Batches of both formats live side by side
 * (a database written before format 2 reads as it is); `size_bytes` and retention by bytes count
 * the uncompressed form, the bytes a consumer reads.
 */
export const compressedBatchVersion = 2;
/** Batches shorter than this are stored as they are: DEFLATE's own overhead would eat the gain. */
const minCompressedBytes = 64;
/** Text most batches hold (JSON, W3C trace context, Meridian's header names). Never change it: add a format. */
const batchDictionary = new PresetDictionary(
  '{"traceparent":"00-","meridian-entity":"","meridian-entity-id":"","type":"',
);

/** The stored form of an encoded batch: compressed (format 2) when that makes it smaller. */
export function packBatch(batch: Uint8Array): Uint8Array {
  if (batch.length < minCompressedBytes) return batch;
  const packed = batchDictionary.deflate(batch.subarray(1));
  if (packed.length + 1 >= batch.length) return batch;
  const bytes = new Uint8Array(packed.length + 1);
  bytes[0] = compressedBatchVersion;
  bytes.set(packed, 1);
  return bytes;
}

/** A stored batch in format 1, decompressing a format-2 one (keys and values are views into it). */
export function unpackBatch(stored: Uint8Array, where: string): Uint8Array {
  if (stored[0] !== compressedBatchVersion) return stored;
  let body: Buffer;
  try {
    body = batchDictionary.inflate(stored.subarray(1));
  } catch (error) {
    throw corrupt(where, `its compressed records do not inflate (${(error as Error).message})`);
  }
  const batch = new Uint8Array(body.length + 1);
  batch[0] = batchFormatVersion;
  batch.set(body, 1);
  return batch;
}

/** A record ready to be packed: bytes resolved, timestamp fixed. */
export interface PackedRecordInput {
  key: Uint8Array | null;
  value: Uint8Array | null;
  /** UTF-8 JSON of the headers, or null when there are none. */
  headers: Uint8Array | null;
  timestamp: number;
}

/** The bytes a record takes inside a batch. */
export function encodedRecordBytes(record: PackedRecordInput): number {
  return (
    recordOverheadBytes +
    (record.key?.length ?? 0) +
    (record.value?.length ?? 0) +
    (record.headers?.length ?? 0)
  );
}

/**
 * Packs `records[from..to)` with the given offset deltas (dense 0..n-1 when `deltas` is omitted).
 * `totalBytes` must be the sum of `encodedRecordBytes` over the range.
 */
export function encodeBatch(
  records: readonly PackedRecordInput[],
  from: number,
  to: number,
  totalBytes: number,
  deltas?: readonly number[],
): Uint8Array {
  const bytes = new Uint8Array(1 + totalBytes);
  const view = new DataView(bytes.buffer);
  bytes[0] = batchFormatVersion;
  let position = 1;
  for (let i = from; i < to; i++) {
    const record = records[i]!;
    const { key, value, headers } = record;
    view.setUint32(position, deltas === undefined ? i - from : deltas[i - from]!, true);
    view.setFloat64(position + 4, record.timestamp, true);
    view.setInt32(position + 12, key === null ? -1 : key.length, true);
    view.setInt32(position + 16, value === null ? -1 : value.length, true);
    view.setUint32(position + 20, headers === null ? 0 : headers.length, true);
    position += recordOverheadBytes;
    if (key !== null) {
      bytes.set(key, position);
      position += key.length;
    }
    if (value !== null) {
      bytes.set(value, position);
      position += value.length;
    }
    if (headers !== null) {
      bytes.set(headers, position);
      position += headers.length;
    }
  }
  if (position !== bytes.length) {
    throw new RangeError(`encodeBatch: 'totalBytes' was ${totalBytes} but the records take ${position - 1}`);
  }
  return bytes;
}

const emptyHeaders: RecordHeaders = Object.freeze({});
const decoder = new TextDecoder();

function corrupt(where: string, detail: string): SchemaMismatchError {
  return new SchemaMismatchError(`The stored record batch at ${where} does not decode: ${detail}`);
}

/** Where decoding a batch stopped, so the caller can continue or advance its position. */
export interface DecodeBudget {
  /** Records still wanted; decoding stops at 0. */
  records: number;
  /** Key+value bytes still allowed; the first record is always returned even when larger. */
  bytes: number;
  /** True once a record was returned (so the byte budget may stop the next one). */
  any: boolean;
}

/**
 * Appends to `out` the records of one stored batch with offset >= `fromOffset`, within `budget`.
 * Returns false when the budget ran out inside the batch (more records remain).
 */
export function decodeBatchInto(
  out: LogRecord[],
  topic: string,
  partition: number,
  baseOffset: number,
  stored: Uint8Array,
  fromOffset: number,
  budget: DecodeBudget,
): boolean {
  const bytes = unpackBatch(stored, `topic '${topic}' partition ${partition} base offset ${baseOffset}`);
  if (bytes[0] !== batchFormatVersion) {
    throw corrupt(
      `topic '${topic}' partition ${partition} base offset ${baseOffset}`,
      `format version ${bytes[0]} is not ${batchFormatVersion} (written by a newer Meridian?)`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.length;
  let position = 1;
  while (position < end) {
    if (position + recordOverheadBytes > end) {
      throw corrupt(
        `topic '${topic}' partition ${partition} base offset ${baseOffset}`,
        'truncated record header',
      );
    }
    const offset = baseOffset + view.getUint32(position, true);
    const keyLength = view.getInt32(position + 12, true);
    const valueLength = view.getInt32(position + 16, true);
    const headersLength = view.getUint32(position + 20, true);
    const recordStart = position + recordOverheadBytes;
    const recordEnd = recordStart + Math.max(keyLength, 0) + Math.max(valueLength, 0) + headersLength;
    if (recordEnd > end || keyLength < -1 || valueLength < -1) {
      throw corrupt(`topic '${topic}' partition ${partition} offset ${offset}`, 'lengths run past the batch');
    }
    if (offset >= fromOffset) {
      const payloadBytes = Math.max(keyLength, 0) + Math.max(valueLength, 0);
      if (budget.records === 0 || (budget.any && payloadBytes > budget.bytes)) return false;
      let cursor = recordStart;
      let key: Uint8Array | null = null;
      if (keyLength >= 0) {
        key = bytes.subarray(cursor, cursor + keyLength);
        cursor += keyLength;
      }
      let value: Uint8Array | null = null;
      if (valueLength >= 0) {
        value = bytes.subarray(cursor, cursor + valueLength);
        cursor += valueLength;
      }
      let headers = emptyHeaders;
      if (headersLength > 0) {
        try {
          headers = JSON.parse(
            decoder.decode(bytes.subarray(cursor, cursor + headersLength)),
          ) as RecordHeaders;
        } catch (error) {
          throw new SchemaMismatchError(
            `The headers at topic '${topic}' partition ${partition} offset ${offset} do not decode as JSON`,
            { cause: error },
          );
        }
      }
      out.push({
        topic,
        partition,
        offset,
        key,
        value,
        headers,
        timestamp: view.getFloat64(position + 4, true),
      });
      budget.records--;
      budget.bytes -= payloadBytes;
      budget.any = true;
    }
    position = recordEnd;
  }
  return true;
}

/** One record's place and facts inside a stored batch, without materialising its bytes. */
export interface RecordEntry {
  offset: number;
  timestamp: number;
  /** Byte range of the key inside the batch, or start = -1 for a null key. */
  keyStart: number;
  keyEnd: number;
  isTombstone: boolean;
  /** Byte range of the whole record (header included) inside the batch. */
  recordStart: number;
  recordEnd: number;
}

/**
 * Calls `visit` for each record of a stored batch in offset order (for retention and compaction).
 * The entries' byte ranges are in the format-1 form: `unpackBatch` a compressed batch first to use them.
 */
export function forEachRecord(
  stored: Uint8Array,
  baseOffset: number,
  visit: (entry: RecordEntry) => void,
): void {
  const bytes = unpackBatch(stored, `base offset ${baseOffset}`);
  if (bytes[0] !== batchFormatVersion) {
    throw corrupt(`base offset ${baseOffset}`, `format version ${bytes[0]} is not ${batchFormatVersion}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let position = 1;
  while (position < bytes.length) {
    if (position + recordOverheadBytes > bytes.length) {
      throw corrupt(`base offset ${baseOffset}`, 'truncated record header');
    }
    const keyLength = view.getInt32(position + 12, true);
    const valueLength = view.getInt32(position + 16, true);
    const keyStart = position + recordOverheadBytes;
    const recordEnd =
      keyStart + Math.max(keyLength, 0) + Math.max(valueLength, 0) + view.getUint32(position + 20, true);
    if (recordEnd > bytes.length) throw corrupt(`base offset ${baseOffset}`, 'lengths run past the batch');
    visit({
      offset: baseOffset + view.getUint32(position, true),
      timestamp: view.getFloat64(position + 4, true),
      keyStart: keyLength >= 0 ? keyStart : -1,
      keyEnd: keyStart + Math.max(keyLength, 0),
      isTombstone: valueLength < 0,
      recordStart: position,
      recordEnd,
    });
    position = recordEnd;
  }
}

/**
 * A copy of a stored batch keeping only the records whose ranges are given (compaction). Offset
 * deltas stay relative to the same base offset, so no record's offset changes.
 */
export function keepRecords(bytes: Uint8Array, kept: readonly RecordEntry[]): Uint8Array {
  let total = 1;
  for (const entry of kept) total += entry.recordEnd - entry.recordStart;
  const copy = new Uint8Array(total);
  copy[0] = batchFormatVersion;
  let position = 1;
  for (const entry of kept) {
    copy.set(bytes.subarray(entry.recordStart, entry.recordEnd), position);
    position += entry.recordEnd - entry.recordStart;
  }
  return copy;
}
