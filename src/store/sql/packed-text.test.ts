import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SchemaMismatchError } from '../schema-mismatch-error.ts';
import { minPackedBytes, packedTextVersion, packText, unpackText } from './packed-text.ts';

const orderState = JSON.stringify({
  orderId: 'ord-01a24de8346f32e6bd59f585',
  customerId: 'customer-628',
  total: 6,
  items: [{ sku: 'sku-00053', qty: 2, price: 3 }],
  placedAt: 1_796_603_393_528,
  status: 'confirmed',
  reason: null,
  failure: null,
  chargeId: 'ch_00000001',
});

const orderId = 'ord-01a24de8346f32e6bd59f585';

/** What format version 1 (the code before 2026-12-07) wrote for `orderState` as an Order entity and as a saga's record. */
const version1 = {
  entity:
    'AasGSacWeYICBK9CkCuLS/JzoWphHF0zI1DgQ71ihuz74uxSJSsQqWtgYGBqrKSjVAgKCiN4WBjXxuooFeQkJkNC0NDc0szMwNjY0tjUyAIpGJA9jBoxIC+XFqXCuKAUkZ4KcV5GvAEEGCrVAgA=',
  saga: 'AatWyi9KSS3yBIUEPnUgW0qLS/JzoWphHF0zI1CoQ/1ghuzt4uxSJSsQqWtgYGBqrKSjVAgKAyN4IBjXxuooFeQkJkOCztDc0szMwNjY0tjUyALJ/8g+RY0RkF9Li1JhXFBSSE+FOC8j3gACDMHpID9byQoUIrUA',
};

describe('packed text', () => {
  it('gives back the text it packed, with its context, for any text', () => {
    const texts = [orderState, `ünïcödé 🚀 ${'x'.repeat(minPackedBytes)}`, 'a'.repeat(1 << 20)];
    for (const text of texts) {
      const packed = packText(text, 'Order', orderId);
      expect(packed).not.toBeNull();
      expect(unpackText(packed!, 'Order', orderId, 'entity')).toBe(text);
    }
  });

  it('leaves short texts and texts that do not get smaller plain', () => {
    expect(packText('x'.repeat(minPackedBytes - 1), '', '')).toBeNull();
    // Printable characters drawn from hashes of a counter: fixed, and too varied for DEFLATE's
    // tables to pay for themselves in 130 of them.
    const bytes = Buffer.concat(
      Array.from({ length: 5 }, (_, index) => createHash('sha256').update(String(index)).digest()),
    );
    const random = String.fromCharCode(...[...bytes.subarray(0, 130)].map((byte) => 0x21 + (byte % 94)));
    expect(packText(random, '', '')).toBeNull();
  });

  it('stores a JSON record that repeats its key in under half its text', () => {
    const packed = packText(orderState, 'Order', orderId);
    expect(packed!.length).toBeLessThan(orderState.length / 2);
    // The id as one byte instead of a back-reference: no larger than version 1 (the fixture below).
    expect(packed!.length).toBeLessThanOrEqual(Buffer.from(version1.entity, 'base64').length);
  });

  it('refuses bytes of another version, damaged ones, or read with another context with a SchemaMismatchError naming the value', () => {
    const packed = packText(orderState, 'Order', 'o1')!;
    const other = Uint8Array.from(packed);
    other[0] = packedTextVersion + 1;
    expect(() => unpackText(other, 'Order', 'o1', "entity 'Order/o1'")).toThrow(SchemaMismatchError);
    expect(() => unpackText(other, 'Order', 'o1', "entity 'Order/o1'")).toThrow(/entity 'Order\/o1'/);
    expect(() => unpackText(packed.subarray(0, 3), 'Order', 'o1', 'entity')).toThrow(SchemaMismatchError);
    // Still decodes after a damaged value: the dictionary's zlib stream was not left half-used.
    expect(unpackText(packed, 'Order', 'o1', 'entity')).toBe(orderState);
  });

  it('reads values of format version 1 (one dictionary per row), as Meridian wrote them before 2026-12-07', () => {
    expect(unpackText(Buffer.from(version1.entity, 'base64'), 'Order', orderId, 'entity')).toBe(orderState);
    const saga = unpackText(Buffer.from(version1.saga, 'base64'), '', orderId, 'saga');
    expect(saga).toBe(`${orderState}\u0000{"ok":true}`);
  });

  it('gives back a text that repeats its key anywhere, or holds the placeholder itself (written in version 1)', () => {
    const key = 'ab';
    const texts = [
      `${'ab'.repeat(40)}aab|abab|${key}${'x'.repeat(minPackedBytes)}`,
      `{"note":"\u0001 raw"}${'ab,'.repeat(60)}`,
      `${'y'.repeat(minPackedBytes)}\u0001ab\u0001`,
    ];
    for (const text of texts) {
      const packed = packText(text, 'Note', key)!;
      expect(packed[0]).toBe(text.includes('\u0001') ? 1 : packedTextVersion);
      expect(unpackText(packed, 'Note', key, 'note')).toBe(text);
      // In version 2 the key is not in the packed bytes: read with another, it comes back in its place.
      if (packed[0] === packedTextVersion) {
        expect(unpackText(packed, 'Note', 'zz', 'note')).toBe(text.replaceAll(key, 'zz'));
      }
    }
    const unkeyed = packText(`${'k'.repeat(minPackedBytes)}\u0001`, '', '')!;
    expect(unpackText(unkeyed, '', '', 'response')).toBe(`${'k'.repeat(minPackedBytes)}\u0001`);
  });
});
