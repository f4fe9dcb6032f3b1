// How fetched Kafka record batches become log records: offsets from a position inside a batch,
// the maxRecords/maxBytes bounds, transaction markers skipped, LogAppendTime honoured.
import type { RecordsBatch } from '@platformatic/kafka';
import { describe, expect, it } from 'vitest';
import type { LogRecord } from '../types.ts';
import { readBatches } from './records.ts';

function batch(
  firstOffset: number,
  values: string[],
  options: { attributes?: number; firstTimestamp?: number } = {},
) {
  const firstTimestamp = BigInt(options.firstTimestamp ?? 1000);
  return {
    firstOffset: BigInt(firstOffset),
    length: 0,
    partitionLeaderEpoch: 0,
    magic: 2,
    crc: 0,
    attributes: options.attributes ?? 0,
    lastOffsetDelta: values.length - 1,
    firstTimestamp,
    maxTimestamp: firstTimestamp + BigInt(values.length * 10),
    producerId: -1n,
    producerEpoch: -1,
    firstSequence: 0,
    records: values.map((value, i) => ({
      length: 0,
      attributes: 0,
      timestampDelta: BigInt(i * 10),
      offsetDelta: i,
      key: i === 0 ? null : Buffer.from(`k${i}`),
      value: Buffer.from(value),
      headers: i === 1 ? [[Buffer.from('trace'), Buffer.from('t-1')] as [Buffer, Buffer]] : [],
    })),
  } satisfies RecordsBatch;
}

describe('readBatches', () => {
  it('starts at the requested offset inside a batch and continues across batches', () => {
    const out: LogRecord[] = [];
    const read = readBatches('t', 2, [batch(10, ['a', 'b', 'c']), batch(13, ['d'])], 11, 100, 1 << 20, out);
    expect(out.map((record) => record.offset)).toEqual([11, 12, 13]);
    // Keys and values: 'k1'+'b', 'k2'+'c', and 'd' (the first record of a batch has no key here).
    expect(read).toEqual({ added: 3, nextOffset: 14, bytes: 3 + 3 + 1 });
    expect(out[0]).toMatchObject({ topic: 't', partition: 2, timestamp: 1010, headers: { trace: 't-1' } });
    expect(out[0]!.key).toEqual(new Uint8Array(Buffer.from('k1')));
    expect(out[0]!.value!.constructor).toBe(Uint8Array);
  });

  it('stops at maxRecords, and at maxBytes after the first record', () => {
    const limited: LogRecord[] = [];
    expect(readBatches('t', 0, [batch(0, ['aa', 'bb', 'cc'])], 0, 2, 1 << 20, limited).nextOffset).toBe(2);
    expect(limited).toHaveLength(2);
    const small: LogRecord[] = [];
    // The first record is returned even though alone it exceeds maxBytes.
    expect(readBatches('t', 0, [batch(0, ['aaaa', 'bb'])], 0, 10, 1, small).added).toBe(1);
    expect(small[0]!.offset).toBe(0);
  });

  it('skips transaction markers but moves past them', () => {
    const out: LogRecord[] = [];
    const control = batch(5, ['marker'], { attributes: 0x20 });
    const read = readBatches('t', 0, [batch(3, ['a', 'b']), control, batch(6, ['c'])], 3, 100, 1 << 20, out);
    expect(out.map((record) => record.offset)).toEqual([3, 4, 6]);
    expect(read.nextOffset).toBe(7);
    const onlyMarker: LogRecord[] = [];
    expect(readBatches('t', 0, [control], 5, 100, 1 << 20, onlyMarker)).toEqual({
      added: 0,
      nextOffset: 6,
      bytes: 0,
    });
  });

  it('gives every record of a LogAppendTime batch the broker time', () => {
    const out: LogRecord[] = [];
    readBatches(
      't',
      0,
      [batch(0, ['a', 'b'], { attributes: 0x08, firstTimestamp: 5000 })],
      0,
      100,
      1 << 20,
      out,
    );
    expect(out.map((record) => record.timestamp)).toEqual([5020, 5020]);
  });

  it('returns nothing for an empty or missing record set', () => {
    expect(readBatches('t', 0, null, 7, 100, 100, [])).toEqual({ added: 0, nextOffset: 7, bytes: 0 });
  });
});
