import { describe, expect, it } from 'vitest';
import { ValidationError } from '../errors.ts';
import { requireId, requireInteger, requireLimit, toHeadersText, toJsonText } from './limits.ts';

describe('store input validation', () => {
  it('names the field, the rule and the value in every message', () => {
    expect(() => requireId('id', 42)).toThrow("'id' must be a non-empty string: current value is 42");
    expect(() => requireInteger('limit', 2.5, 1, 10)).toThrow(
      "'limit' must be an integer: current value is 2.5",
    );
    expect(() => requireLimit('limit', 0)).toThrow("'limit' must be >= 1: current value is 0");
    expect(requireLimit('limit', undefined, 100)).toBe(100);
    expect(() => toHeadersText('headers', { a: 1 })).toThrow(
      "'headers.a' must be a string: current value is 1",
    );
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, n) => [`h${n}`, 'v']));
    expect(() => toHeadersText('headers', many)).toThrow(
      "'headers' must hold at most 64 headers: current value has 65",
    );
  });

  it('refuses JSON that would not read back as written', () => {
    const refused = [
      { value: { a: Number.POSITIVE_INFINITY }, reason: 'Infinity' },
      { value: { a: undefined }, reason: 'undefined' },
      { value: [() => 1], reason: 'function' },
      { value: { big: 1n }, reason: 'BigInt' },
    ];
    for (const { value, reason } of refused) {
      let error: unknown;
      try {
        toJsonText('state', value as never);
      } catch (caught) {
        error = caught;
      }
      expect(error, reason).toBeInstanceOf(ValidationError);
      expect((error as Error).message).toContain("'state' must be JSON-serialisable");
    }
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => toJsonText('state', cyclic as never)).toThrow(ValidationError);
    expect(toJsonText('state', { a: [1, 'x', null, true] })).toBe('{"a":[1,"x",null,true]}');
  });
});
