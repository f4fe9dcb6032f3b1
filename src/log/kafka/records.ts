import type { RecordsBatch } from '@platformatic/kafka';
import type { LogRecord, RecordHeaders } from '../types.ts';

/**
 * Conversions between Kafka's record batches (as the client parses them) and the log's records.
 * Bit masks of a batch's `attributes`, from Kafka's record format v2 (kept here so that this
 * file needs the client's types only, not its code).
 */
const timestampTypeLogAppendTime = 0x08;
const controlBatch = 0x20;

// Non-fatal: headers written by other producers may hold bytes that are not UTF-8; Meridian's
// headers are strings, so such bytes read as U+FFFD rather than failing the whole fetch.
const headerDecoder = new TextDecoder('utf-8');

/** A zero-copy plain Uint8Array view of a Buffer (records expose Uint8Array, as the SQLite log's do). */
function view(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A zero-copy Buffer view of bytes, as the client's record writer needs. */
export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function decodeHeaders(headers: readonly [Uint8Array | null, Uint8Array | null][]): RecordHeaders {
  if (headers.length === 0) return {};
  const out: Record<string, string> = {};
  for (const [name, value] of headers) {
    if (name === null) continue;
    out[headerDecoder.decode(name)] = value === null ? '' : headerDecoder.decode(value);
  }
  return out;
}

export interface BatchesRead {
  /** How many records were added to `out`. */
  added: number;
  /**
   * The offset to fetch next: after the last record taken, or after the last batch when every
   * record of it was taken (which skips transaction markers and offsets removed by compaction).
   */
  nextOffset: number;
  /** Key + value bytes of the records added. */
  bytes: number;
}

/**
 * Appends the records of `batches` at or after `fromOffset` to `out`, at most `maxRecords` of
 * them and no more than `maxBytes` of keys and values, except that an empty `out` always gets
 * one record. A fetch returns whole batches, so the first batch may start before `fromOffset`.
 */
export function readBatches(
  topic: string,
  partition: number,
  batches: readonly RecordsBatch[] | null | undefined,
  fromOffset: number,
  maxRecords: number,
  maxBytes: number,
  out: LogRecord[],
): BatchesRead {
  let added = 0;
  let bytes = 0;
  let nextOffset = fromOffset;
  for (const batch of batches ?? []) {
    const firstOffset = Number(batch.firstOffset);
    const lastOffset = firstOffset + batch.lastOffsetDelta;
    if (lastOffset < nextOffset) continue;
    if ((batch.attributes & controlBatch) === 0) {
      const appendTime = (batch.attributes & timestampTypeLogAppendTime) !== 0;
      for (const record of batch.records) {
        const offset = firstOffset + record.offsetDelta;
        if (offset < nextOffset) continue;
        const size = (record.key?.byteLength ?? 0) + (record.value?.byteLength ?? 0);
        if (added >= maxRecords || (out.length > 0 && bytes + size > maxBytes)) {
          return { added, nextOffset, bytes };
        }
        out.push({
          topic,
          partition,
          offset,
          key: record.key === null ? null : view(record.key),
          value: record.value === null ? null : view(record.value),
          headers: decodeHeaders(record.headers),
          timestamp: Number(appendTime ? batch.maxTimestamp : batch.firstTimestamp + record.timestampDelta),
        });
        added++;
        bytes += size;
        nextOffset = offset + 1;
      }
    }
    nextOffset = Math.max(nextOffset, lastOffset + 1);
  }
  return { added, nextOffset, bytes };
}
