// The call order on its own, against hand-made journals: which call an entry belongs to, and
// when it is handed over. (concurrency.test.ts and concurrency.property.test.ts check it through
// whole sagas on both shapes.)
import { describe, expect, it } from 'vitest';
import type { JournalEntry, JournalEntryKind } from '../store/types.ts';
import { yieldToEventLoop } from './group-commit.ts';
import { CallOrder, untag } from './saga-calls.ts';

function entry(
  sequence: number,
  kind: JournalEntryKind,
  name: string,
  result: JournalEntry['result'],
): JournalEntry {
  return { sagaId: 's', sequence, kind, name, status: 'completed', result, error: null, attempts: 1, at: 0 };
}

function order(journal: JournalEntry[], mismatches: string[] = []) {
  return new CallOrder(journal, 0, {
    yield: yieldToEventLoop,
    mismatch: (held, asked) => {
      const message = `asked ${asked?.name ?? 'nothing'}, held ${held.name}`;
      mismatches.push(message);
      return new Error(message);
    },
    stalled: () => false,
    cancelled: () => new Error('no cancellation expected'),
  });
}

describe('saga call order', () => {
  it('gives an entry tagged with a call index to that call only, whoever asks first', async () => {
    // Two routed sends of one command: both requests journaled, then the second one's reply
    // arrived first. Each reply must reach its own send.
    const journal = [
      entry(0, 'event', '$request:step:Counter.add#0', { requestId: 'r0' }),
      entry(1, 'event', '$request:step:Counter.add#1', { requestId: 'r1' }),
      entry(2, 'step', 'Counter.add#1', 'reply to 1'),
      entry(3, 'step', 'Counter.add#0', 'reply to 0'),
    ];
    const calls = order(journal);
    const first = calls.begin('send 0');
    const second = calls.begin('send 1');
    const replies = await Promise.all(
      [first, second].map(async (call) => {
        await calls.next(call, 'event', '$request:step:Counter.add');
        return (await calls.next(call, 'step', 'Counter.add'))?.result;
      }),
    );
    expect(replies).toEqual(['reply to 0', 'reply to 1']);
  });

  it('gives an untagged entry to the first call that asks for its kind and name', async () => {
    const journal = [entry(0, 'step', 'Counter.add', 1), entry(1, 'step', 'Counter.add', 2)];
    const calls = order(journal);
    const a = calls.begin('a');
    const b = calls.begin('b');
    const results = await Promise.all([
      calls.next(a, 'step', 'Counter.add'),
      calls.next(b, 'step', 'Counter.add'),
    ]);
    expect(results.map((found) => found?.result)).toEqual([1, 2]);
  });

  it('hands entries over in journal order, letting the code run to its next calls between two', async () => {
    const journal = [entry(0, 'step', 'x#1', 'x'), entry(1, 'step', 'y#0', 'y')];
    const calls = order(journal);
    const seen: string[] = [];
    const y = calls.begin('y');
    const x = calls.begin('x');
    await Promise.all([
      calls.next(y, 'step', 'y').then(() => seen.push('after y')),
      calls.next(x, 'step', 'x').then(async () => {
        await Promise.resolve();
        await Promise.resolve();
        seen.push('after x, two hops later');
      }),
    ]);
    expect(seen).toEqual(['after x, two hops later', 'after y']);
  });

  it('runs a call the journal has no entry for only after the replay, and names a mismatch', async () => {
    const mismatches: string[] = [];
    const calls = order([entry(0, 'step', 'a', 1), entry(1, 'step', 'b', 2)], mismatches);
    const a = calls.begin('a');
    expect((await calls.next(a, 'step', 'a'))?.result).toBe(1);
    calls.end(a);
    const other = calls.begin('other');
    await expect(calls.next(other, 'step', 'other')).rejects.toThrow('asked other, held b');
    expect(mismatches).toEqual(['asked other, held b']);
  });

  it('appends live entries densely, tagging those written while other calls are in flight', async () => {
    const journal = [entry(0, 'event', '$start', null)];
    const calls = new CallOrder(journal, 1, {
      yield: yieldToEventLoop,
      mismatch: () => new Error('none expected'),
      stalled: () => false,
      cancelled: () => new Error('no cancellation expected'),
    });
    const a = calls.begin('a');
    const b = calls.begin('b');
    const write = (call: typeof a, result: string) =>
      calls.append(call, 'step-name', async (sequence, name) => ({
        entry: entry(sequence, 'step', name, result),
        value: sequence,
      }));
    const sequences = await Promise.all([write(b, 'b'), write(a, 'a')]);
    expect(sequences).toEqual([1, 2]);
    expect(journal.map((written) => written.name)).toEqual(['$start', 'step-name#1', 'step-name#0']);
    calls.end(a);
    expect(await write(b, 'b alone')).toBe(3);
    expect(journal[3]!.name).toBe('step-name');
    expect(untag('step-name#12')).toEqual({ name: 'step-name', call: 12 });
  });
});
