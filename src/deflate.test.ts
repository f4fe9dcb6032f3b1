import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { deflateRaw, inflateRaw, PresetDictionary, reusesZlibStreams } from './deflate.ts';

const dictionary = Buffer.from('{"traceparent":"00-","meridian-entity":"","type":"');

/** Seeded JSON-like text of about `bytes` bytes: records that repeat their field names. */
function records(bytes: number, seed: number): Buffer {
  let state = seed;
  const next = () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state;
  };
  const parts: string[] = [];
  let length = 0;
  while (length < bytes) {
    const part = JSON.stringify({ type: 'order.placed', id: `ord-${next().toString(16)}`, qty: next() % 7 });
    parts.push(part);
    length += part.length + 1;
  }
  return Buffer.from(parts.join(','));
}

describe('deflateRaw / inflateRaw', () => {
  it('pack as small as zlib with its full window', () => {
    for (const [index, bytes] of [60, 300, 1_000, 5_000, 40_000, 300_000].entries()) {
      const text = records(bytes, index + 1);
      const packed = deflateRaw(text, dictionary);
      expect(packed.length).toBe(deflateRawSync(text, { dictionary }).length);
      expect(inflateRaw(packed, dictionary).equals(text)).toBe(true);
    }
  });

  it('reach back through the whole value and dictionary, as zlib with its full window does', () => {
    // Matches only far back: noise, then the dictionary's head and the noise's head again.
    const noise = (bytes: number) =>
      Buffer.from(
        records(bytes * 4, bytes)
          .toString('base64')
          .slice(0, bytes),
      );
    for (const preset of [dictionary, Buffer.concat([dictionary, noise(300)])]) {
      for (let bytes = 0; bytes < 2_500; bytes += 31) {
        const head = noise(bytes);
        const text = Buffer.concat([head, preset.subarray(0, 24), head.subarray(0, 24)]);
        expect(deflateRaw(text, preset).length).toBe(deflateRawSync(text, { dictionary: preset }).length);
      }
    }
  });

  it('read what zlib packed with its defaults, and zlib reads what they pack', () => {
    const text = records(20_000, 7);
    expect(inflateRaw(deflateRawSync(text, { dictionary }), dictionary).equals(text)).toBe(true);
    expect(inflateRawSync(deflateRaw(text, dictionary), { dictionary }).equals(text)).toBe(true);
    expect(inflateRaw(deflateRaw('', dictionary), dictionary).length).toBe(0);
  });

  it('refuse a cut value with a zlib error; raw DEFLATE has no check of its dictionary', () => {
    const text = records(2_000, 3);
    const packed = deflateRaw(text, dictionary);
    expect(() => inflateRaw(packed.subarray(0, packed.length - 3), dictionary)).toThrow(/unexpected end/);
    // What the callers' format versions are for: another dictionary decodes to other bytes.
    const other = Buffer.alloc(dictionary.length, 'x');
    expect(inflateRaw(packed, other).equals(text)).toBe(false);
  });
});

describe('PresetDictionary', () => {
  it('reuses its zlib streams on the pinned Node (else every call builds one, as zlib does)', () => {
    expect(reusesZlibStreams).toBe(true);
  });

  it('packs byte for byte what deflateRaw packs, value after value on the same streams', () => {
    const preset = new PresetDictionary(dictionary);
    for (let round = 0; round < 2; round += 1) {
      for (const [index, bytes] of [0, 60, 300, 1_000, 5_000, 40_000, 100_000, 300_000].entries()) {
        const text = records(bytes, index + 1);
        const packed = preset.deflate(text);
        expect(packed.equals(deflateRaw(text, dictionary))).toBe(true);
        expect(preset.inflate(packed).equals(text)).toBe(true);
        expect(preset.deflate(text.toString('latin1')).equals(packed)).toBe(true);
      }
    }
  });

  it('throws zlib error on a damaged value and reads the next one', () => {
    const preset = new PresetDictionary(dictionary);
    const text = records(2_000, 5);
    const packed = preset.deflate(text);
    expect(() => preset.inflate(packed.subarray(0, packed.length - 3))).toThrow(/unexpected end/);
    expect(() => preset.inflate(Buffer.from([0xff, 0xff, 0xff]))).toThrow(/invalid block type/);
    expect(preset.inflate(packed).equals(text)).toBe(true);
    expect(inflateRawSync(preset.deflate(text), { dictionary }).equals(text)).toBe(true);
  });
});
