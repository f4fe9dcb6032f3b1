// The shared input checks accept exactly Kafka's valid names and the documented option ranges,
// and fill in the documented defaults.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  normalizeConsumerOptions,
  normalizePollTimeoutMs,
  normalizeReadOptions,
  normalizeTopicConfig,
  validateGroupName,
  validateOffset,
  validateTopicName,
} from './validation.ts';

describe('validation', () => {
  it("accepts topic names of 1..249 characters from [a-zA-Z0-9._-] except '.' and '..'", () => {
    const nameChar = fc.constantFrom(...'abcXYZ019._-'.split(''));
    fc.assert(
      fc.property(fc.array(nameChar, { minLength: 1, maxLength: 249 }), (chars) => {
        const name = chars.join('');
        if (name === '.' || name === '..') expect(() => validateTopicName(name)).toThrow();
        else expect(validateTopicName(name)).toBe(name);
      }),
    );
    for (const bad of ['', 'a'.repeat(250), 'with space', 'slash/name', 'ünïcode', '.', '..', 7, null]) {
      expect(() => validateTopicName(bad)).toThrowError(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
    }
  });

  it('fills in the documented topic defaults and checks every bound', () => {
    expect(normalizeTopicConfig('t', { partitions: 3 })).toEqual({
      name: 't',
      partitions: 3,
      retentionMs: 604_800_000,
      retentionBytes: null,
      cleanupPolicy: 'delete',
    });
    expect(
      normalizeTopicConfig('t', { partitions: 1, retentionMs: null, cleanupPolicy: 'compact' }),
    ).toMatchObject({ retentionMs: null, cleanupPolicy: 'compact' });
    expect(() => normalizeTopicConfig('t', { partitions: 0 })).toThrow(
      "Cannot create topic 't' as 'partitions' must be an integer in [1, 1024]: current value is 0",
    );
    expect(() => normalizeTopicConfig('t', { partitions: 1025 })).toThrow(/current value is 1025/);
    expect(() => normalizeTopicConfig('t', { partitions: 1, retentionMs: 0 })).toThrow(/'retentionMs'/);
    expect(() => normalizeTopicConfig('t', { partitions: 1, retentionBytes: -1 })).toThrow(
      /'retentionBytes'/,
    );
    expect(() => normalizeTopicConfig('t', { partitions: 1, cleanupPolicy: 'shred' as 'delete' })).toThrow(
      /'cleanupPolicy' must be 'delete' or 'compact'/,
    );
  });

  it('checks offsets, group names and read/poll/consumer options', () => {
    expect(() => validateOffset(-1)).toThrow(
      "'offset' must be an integer in [0, 9007199254740991]: current value is -1",
    );
    expect(() => validateOffset(1.5)).toThrow(/current value is 1.5/);
    expect(() => validateGroupName('')).toThrow(/consumer group name/);
    expect(validateGroupName('billing:v2')).toBe('billing:v2');
    expect(normalizeReadOptions(undefined)).toEqual({ maxRecords: 500, maxBytes: 1_048_576 });
    expect(() => normalizeReadOptions({ maxRecords: 10_001 })).toThrow(/'maxRecords'/);
    expect(normalizePollTimeoutMs({})).toBe(1000);
    expect(() => normalizePollTimeoutMs({ timeoutMs: -1 })).toThrow(/'timeoutMs'/);
    expect(normalizeConsumerOptions({ group: 'g', topics: ['a', 'a', 'b'] })).toEqual({
      group: 'g',
      topics: ['a', 'b'],
      autoOffsetReset: 'earliest',
      maxPollRecords: 500,
    });
    expect(() => normalizeConsumerOptions({ group: 'g', topics: [] })).toThrow(/'topics'/);
    expect(() =>
      normalizeConsumerOptions({ group: 'g', topics: ['a'], autoOffsetReset: 'middle' as 'latest' }),
    ).toThrow(/'autoOffsetReset'/);
    expect(() =>
      normalizeConsumerOptions({ group: 'g', topics: ['a'], onAssignment: 'log' as unknown as () => void }),
    ).toThrow(/'onAssignment' must be a function/);
  });
});
