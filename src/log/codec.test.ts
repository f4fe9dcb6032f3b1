// The codec turns application values into the log's bytes and back, and reports bad stored bytes
// as a ValidationError that names the record.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isMeridianError } from '../errors.ts';
import { decodeJson, decodeKey, decodeString, fromUtf8, jsonValue, keyBytes, utf8 } from './codec.ts';
import type { LogRecord } from './types.ts';

function record(value: Uint8Array | null, key: Uint8Array | null = null): LogRecord {
  return { topic: 'orders', partition: 3, offset: 42, key, value, headers: {}, timestamp: 0 };
}

describe('codec', () => {
  it('round-trips any JSON value through jsonValue and decodeJson', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        // JSON has no -0; the round trip is through JSON text, so compare with its parse.
        expect(decodeJson(record(jsonValue(value)))).toEqual(JSON.parse(JSON.stringify(value)));
      }),
    );
  });

  it('decodes a tombstone as null without throwing', () => {
    expect(decodeJson(record(null))).toBeNull();
    expect(decodeString(record(null))).toBeNull();
  });

  it('round-trips strings through utf8 and fromUtf8, and keys through keyBytes and decodeKey', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (text) => {
        expect(fromUtf8(utf8(text))).toBe(text);
        expect(decodeKey(record(null, keyBytes(text)))).toBe(text);
      }),
    );
    const bytes = new Uint8Array([1, 2, 3]);
    expect(keyBytes(bytes)).toBe(bytes);
    expect(keyBytes(null)).toBeNull();
    expect(keyBytes(undefined)).toBeNull();
  });

  it('rejects values with no JSON form with a ValidationError', () => {
    expect(() => jsonValue(undefined)).toThrow(/no JSON form/);
    expect(() => jsonValue(10n)).toThrow(/cannot be encoded as JSON/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => jsonValue(cyclic)).toThrowError(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('reports stored bytes that are not JSON or not UTF-8 with the topic, partition and offset', () => {
    const notJson = (() => {
      try {
        decodeJson(record(utf8('{oops')));
      } catch (error) {
        return error;
      }
    })();
    expect(isMeridianError(notJson) && notJson.code).toBe('INVALID_ARGUMENT');
    expect((notJson as Error).message).toMatch(/topic 'orders' partition 3 offset 42 is not JSON/);
    expect(isMeridianError(notJson) && notJson.details).toEqual({
      topic: 'orders',
      partition: 3,
      offset: 42,
    });
    const badUtf8 = new Uint8Array([0xff, 0xfe]);
    expect(() => decodeJson(record(badUtf8))).toThrow(/not valid UTF-8/);
    expect(() => decodeString(record(badUtf8))).toThrow(/offset 42 is not valid UTF-8/);
    expect(() => decodeKey(record(null, badUtf8))).toThrow(/key at topic 'orders'/);
    expect(() => fromUtf8(badUtf8)).toThrow(/not valid UTF-8/);
  });

  it('rejects keys that are neither strings nor bytes', () => {
    expect(() => keyBytes(42 as unknown as string)).toThrow(/current value is a number/);
  });
});
