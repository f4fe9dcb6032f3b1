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

describe('packed text', () => {
  it('gives back the text it packed, with its context, for any text', () => {
    const texts = [orderState, `ünïcödé 🚀 ${'x'.repeat(minPackedBytes)}`, 'a'.repeat(1 << 20)];
    for (const text of texts) {
      const packed = packText(text, 'Order"ord-01a24de8346f32e6bd59f585"');
      expect(packed).not.toBeNull();
      expect(unpackText(packed!, 'Order"ord-01a24de8346f32e6bd59f585"', 'entity')).toBe(text);
    }
  });

  it('leaves short texts and texts that do not get smaller plain', () => {
    expect(packText('x'.repeat(minPackedBytes - 1), '')).toBeNull();
    // Printable characters drawn from hashes of a counter: fixed, and too varied for DEFLATE's
    // tables to pay for themselves in 130 of them.
    const bytes = Buffer.concat(
      Array.from({ length: 5 }, (_, index) => createHash('sha256').update(String(index)).digest()),
    );
    const random = String.fromCharCode(...[...bytes.subarray(0, 130)].map((byte) => 0x21 + (byte % 94)));
    expect(packText(random, '')).toBeNull();
  });

  it('stores a JSON record that repeats its key in under half its text', () => {
    const packed = packText(orderState, 'Order"ord-01a24de8346f32e6bd59f585"');
    expect(packed!.length).toBeLessThan(orderState.length / 2);
  });

  it('refuses bytes of another version, damaged ones, or read with another context with a SchemaMismatchError naming the value', () => {
    const packed = packText(orderState, 'ctx')!;
    const other = Uint8Array.from(packed);
    other[0] = packedTextVersion + 1;
    expect(() => unpackText(other, 'ctx', "entity 'Order/o1'")).toThrow(SchemaMismatchError);
    expect(() => unpackText(other, 'ctx', "entity 'Order/o1'")).toThrow(/entity 'Order\/o1'/);
    expect(() => unpackText(packed.subarray(0, 3), 'ctx', 'entity')).toThrow(SchemaMismatchError);
  });
});
