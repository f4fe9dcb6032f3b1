// A packed record batch decodes to exactly the records that went in, honours the read budget,
// and reports damaged or newer-format bytes as SchemaMismatchError instead of garbage.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LogRecord } from '../types.ts';
import {
  type DecodeBudget,
  decodeBatchInto,
  encodeBatch,
  encodedRecordBytes,
  forEachRecord,
  keepRecords,
  type PackedRecordInput,
  packBatch,
  type RecordEntry,
  unpackBatch,
} from './batch-codec.ts';

const recordArbitrary: fc.Arbitrary<PackedRecordInput & { headerObject: Record<string, string> }> = fc
  .record({
    key: fc.option(fc.uint8Array({ maxLength: 20 }), { nil: null }),
    value: fc.option(fc.uint8Array({ maxLength: 200 }), { nil: null }),
    headerObject: fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 12 }), { maxKeys: 3 }),
    timestamp: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  })
  .map((record) => ({
    ...record,
    headers:
      Object.keys(record.headerObject).length === 0
        ? null
        : new TextEncoder().encode(JSON.stringify(record.headerObject)),
  }));

function encode(records: readonly PackedRecordInput[]): Uint8Array {
  const total = records.reduce((sum, record) => sum + encodedRecordBytes(record), 0);
  return encodeBatch(records, 0, records.length, total);
}

function unlimited(): DecodeBudget {
  return { records: Number.MAX_SAFE_INTEGER, bytes: Number.MAX_SAFE_INTEGER, any: false };
}

describe('batch codec', () => {
  it('round-trips any records with dense offsets from the base offset', () => {
    fc.assert(
      fc.property(
        fc.array(recordArbitrary, { minLength: 1, maxLength: 30 }),
        fc.nat(1e12),
        (records, base) => {
          const out: LogRecord[] = [];
          expect(decodeBatchInto(out, 't', 2, base, encode(records), 0, unlimited())).toBe(true);
          expect(out).toEqual(
            records.map((record, i) => ({
              topic: 't',
              partition: 2,
              offset: base + i,
              key: record.key,
              value: record.value,
              headers: record.headerObject,
              timestamp: record.timestamp,
            })),
          );
        },
      ),
    );
  });

  it('skips records before fromOffset and stops when the budget is spent', () => {
    const records = Array.from({ length: 10 }, (_, i) => ({
      key: null,
      value: new Uint8Array(10).fill(i),
      headers: null,
      timestamp: i,
    }));
    const bytes = encode(records);
    const out: LogRecord[] = [];
    expect(decodeBatchInto(out, 't', 0, 100, bytes, 103, { records: 4, bytes: 1e9, any: false })).toBe(false);
    expect(out.map((record) => record.offset)).toEqual([103, 104, 105, 106]);
    const byBytes: LogRecord[] = [];
    decodeBatchInto(byBytes, 't', 0, 100, bytes, 100, { records: 100, bytes: 25, any: false });
    expect(byBytes).toHaveLength(2);
    // The first record always comes, even over the byte budget.
    const oversized: LogRecord[] = [];
    decodeBatchInto(oversized, 't', 0, 100, bytes, 100, { records: 100, bytes: 1, any: false });
    expect(oversized).toHaveLength(1);
  });

  it('keeps offsets and bytes when compaction drops records from a batch', () => {
    const records = Array.from({ length: 5 }, (_, i) => ({
      key: new Uint8Array([i % 2]),
      value: i === 4 ? null : new Uint8Array([i]),
      headers: null,
      timestamp: 1000 + i,
    }));
    const bytes = encode(records);
    const entries: RecordEntry[] = [];
    forEachRecord(bytes, 50, (entry) => entries.push(entry));
    expect(entries.map((entry) => [entry.offset, entry.timestamp, entry.isTombstone])).toEqual([
      [50, 1000, false],
      [51, 1001, false],
      [52, 1002, false],
      [53, 1003, false],
      [54, 1004, true],
    ]);
    const out: LogRecord[] = [];
    decodeBatchInto(out, 't', 0, 50, keepRecords(bytes, [entries[1]!, entries[4]!]), 0, unlimited());
    expect(out.map((record) => [record.offset, record.value])).toEqual([
      [51, new Uint8Array([1])],
      [54, null],
    ]);
  });

  it('reports a newer format or damaged bytes as SchemaMismatchError', () => {
    const bytes = encode([{ key: null, value: new Uint8Array(5), headers: null, timestamp: 1 }]);
    const newer = Uint8Array.from(bytes);
    newer[0] = 3;
    expect(() => decodeBatchInto([], 't', 0, 0, newer, 0, unlimited())).toThrowError(
      expect.objectContaining({
        code: 'SCHEMA_MISMATCH',
        message: expect.stringMatching(/format version 3/),
      }),
    );
    expect(() =>
      decodeBatchInto([], 't', 0, 0, bytes.subarray(0, bytes.length - 2), 0, unlimited()),
    ).toThrowError(expect.objectContaining({ code: 'SCHEMA_MISMATCH' }));
    expect(() => forEachRecord(bytes.subarray(0, 10), 0, () => undefined)).toThrowError(
      expect.objectContaining({ code: 'SCHEMA_MISMATCH' }),
    );
  });

  it('stores a batch that compresses in format 2, which reads, visits and unpacks the same', () => {
    fc.assert(
      fc.property(fc.array(recordArbitrary, { minLength: 1, maxLength: 30 }), (records) => {
        const batch = encode(records);
        const stored = packBatch(batch);
        expect(stored.length).toBeLessThanOrEqual(batch.length);
        expect(unpackBatch(stored, 'here')).toEqual(batch);
        const fromStored: LogRecord[] = [];
        const fromBatch: LogRecord[] = [];
        decodeBatchInto(fromStored, 't', 0, 7, stored, 0, unlimited());
        decodeBatchInto(fromBatch, 't', 0, 7, batch, 0, unlimited());
        expect(fromStored).toEqual(fromBatch);
        const offsets: number[] = [];
        forEachRecord(stored, 7, (entry) => offsets.push(entry.offset));
        expect(offsets).toEqual(fromBatch.map((record) => record.offset));
      }),
    );
    const json = new TextEncoder().encode(
      JSON.stringify({ type: 'OrderPlaced', orderId: 'ord-1', items: [] }),
    );
    const repetitive = encode(
      Array.from({ length: 5 }, (_, i) => ({ key: null, value: json, headers: null, timestamp: i })),
    );
    expect(packBatch(repetitive)[0]).toBe(2);
    expect(packBatch(repetitive).length).toBeLessThan(repetitive.length / 3);
    const short = encode([{ key: null, value: new Uint8Array(8), headers: null, timestamp: 1 }]);
    expect(packBatch(short)).toBe(short);
  });

  it('reports a damaged compressed batch as SchemaMismatchError', () => {
    const json = new TextEncoder().encode(
      JSON.stringify({ type: 'OrderPlaced', orderId: 'ord-1', items: [] }),
    );
    const stored = packBatch(
      encode([
        { key: null, value: json, headers: null, timestamp: 1 },
        { key: null, value: json, headers: null, timestamp: 2 },
      ]),
    );
    expect(stored[0]).toBe(2);
    const damaged = Uint8Array.from(stored.subarray(0, 6));
    expect(() => decodeBatchInto([], 't', 0, 0, damaged, 0, unlimited())).toThrowError(
      expect.objectContaining({ code: 'SCHEMA_MISMATCH' }),
    );
  });
});
