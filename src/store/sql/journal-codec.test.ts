import { describe, expect, it } from 'vitest';
import { SchemaMismatchError } from '../schema-mismatch-error.ts';
import type { JournalEntry } from '../types.ts';
import { decodeJournal, encodeJournal, foldedJournalVersion } from './journal-codec.ts';

const entry = (sequence: number, change: Partial<JournalEntry> = {}): JournalEntry => ({
  sagaId: 'ord-1',
  sequence,
  kind: 'step',
  name: `step-${sequence}`,
  status: 'completed',
  result: { sequence },
  error: null,
  attempts: 1,
  at: 1_796_591_792_171 + sequence * 40,
  ...change,
});

describe('folded journal codec', () => {
  it('gives back every kind, status, result and time it was given, in order', () => {
    const entries = [
      entry(0, { kind: 'event', name: '$start', result: { traceparent: '00-ab-cd-01' } }),
      entry(1, { kind: 'sleep', result: null, at: 1 }),
      entry(2, { kind: 'compensation', status: 'failed', error: 'declined: ü', attempts: 5 }),
      entry(3, { result: [1, 'two', { three: null }] }),
    ];
    expect(decodeJournal('ord-1', encodeJournal('ord-1', entries))).toEqual(entries);
    expect(decodeJournal('ord-1', encodeJournal('ord-1', []))).toEqual([]);
  });

  it('is smaller than the entries as JSON text', () => {
    const entries = Array.from({ length: 8 }, (_, sequence) => entry(sequence));
    expect(encodeJournal('ord-1', entries).length).toBeLessThan(JSON.stringify(entries).length / 3);
  });

  it('reads values folded in formats 1 and 2 (written before) as well as format 3', () => {
    // Format 1: the dictionary alone, as the version before migration 10 wrote it.
    const version1 = Buffer.from('AYsmYERiklItTK2huaWZqaWhuaWRoblhbCwA', 'base64');
    expect(decodeJournal('ord-1', version1)).toEqual([
      { ...entry(0), kind: 'event', name: '$start', result: { traceparent: '00-ab' }, at: 1_796_591_792_171 },
    ]);
    const entries = [entry(0, { result: { orderId: 'ord-1' } })];
    // Format 2: the dictionary followed by the saga's id, as written until 2026-12-07.
    const version2 = Buffer.from('AouGKEot0DUAmZNflJJa5JmiZKUEllWqhSk2NLc0M7U0NLc0MjQ3jI0FAA==', 'base64');
    expect(decodeJournal('ord-1', version2)).toEqual(entries);
    const version3 = encodeJournal('ord-1', entries);
    expect(version3[0]).toBe(3);
    expect(decodeJournal('ord-1', version3)).toEqual(entries);
    expect(version3.length).toBeLessThanOrEqual(version2.length);
  });

  it('gives back ids that JSON escapes or that occur inside other text, and text holding U+0001', () => {
    for (const sagaId of ['o', 'a"b', 'ü-1', '1', 'step']) {
      const entries = [
        entry(0, { sagaId, result: { id: sagaId, nested: [sagaId, `x${sagaId}y`, 12, 'step-1'] } }),
        entry(1, { sagaId, error: `failed for ${sagaId} \u0001 \u0001` }),
      ];
      expect(decodeJournal(sagaId, encodeJournal(sagaId, entries))).toEqual(entries);
    }
  });

  it('refuses bytes of another version or damaged with a SchemaMismatchError naming the saga', () => {
    const bytes = encodeJournal('ord-1', [entry(0)]);
    const other = Uint8Array.from(bytes);
    other[0] = foldedJournalVersion + 1;
    expect(() => decodeJournal('ord-1', other)).toThrow(SchemaMismatchError);
    expect(() => decodeJournal('ord-1', bytes.subarray(0, 4))).toThrow(/saga 'ord-1'/);
    const notEntries = encodeJournal('ord-1', [entry(0)]);
    notEntries[1] = (notEntries[1] ?? 0) ^ 0xff;
    expect(() => decodeJournal('ord-1', notEntries)).toThrow(SchemaMismatchError);
  });
});
