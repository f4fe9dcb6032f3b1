// The built-in invariants over a small history and final state: a duplicated effect, a lost
// acknowledged one, a stuck saga and an app's own violation are each reported with the
// operations involved; an indeterminate operation may be absent; a failed one is not counted.
import { describe, expect, it } from 'vitest';
import { History } from './history.ts';
import { checkInvariants, type Invariants } from './invariants.ts';
import { registerModel } from './linearizability.ts';

interface Final {
  effects: Record<string, number>;
  sagas: Array<{ id: string; status: string }>;
}

const invariants: Invariants<Final> = {
  effects: {
    id: (operation) => (operation.kind === 'put' ? (operation.input as { id: string }).id : undefined),
    counts: (final) => new Map(Object.entries(final.effects)),
  },
  sagas: {
    terminalWithinMs: 1000,
    list: (final) =>
      final.sagas.map((saga) => ({ ...saga, terminal: saga.status === 'done', effectId: saga.id })),
  },
  linearizable: { model: registerModel(0), kinds: ['write', 'read'] },
  custom: [{ name: 'no-negative', check: (final) => (final.effects.neg === -1 ? ['neg is -1'] : []) }],
};

function run(final: Final) {
  const history = new History(() => 0);
  const put = (id: string, status: 'ok' | 'info' | 'fail') =>
    history.complete(history.invoke(0, { kind: 'put', input: { id } }), { status });
  put('a', 'ok');
  put('b', 'ok');
  put('c', 'info');
  put('d', 'fail');
  history.complete(history.invoke(1, { kind: 'put', input: { id: 'a' } }, 0), { status: 'ok' });
  return checkInvariants(invariants, history.operations, final);
}

describe('checkInvariants', () => {
  it('holds on a history whose effects all exist once and whose sagas ended', () => {
    const outcome = run({ effects: { a: 1, b: 1 }, sagas: [{ id: 'a', status: 'done' }] });
    expect(outcome.violations).toEqual([]);
    expect(outcome.results.map((result) => [result.invariant, result.outcome])).toEqual([
      ['exactly-once', 'holds'],
      ['no-lost-write', 'holds'],
      ['saga-terminal', 'holds'],
      ['linearizable', 'holds'],
      ['no-negative', 'holds'],
    ]);
  });

  it('reports a duplicated effect, a lost one, a stuck saga and the app’s own violation', () => {
    const outcome = run({ effects: { a: 2, c: 1, d: 1, neg: -1 }, sagas: [{ id: 'a', status: 'running' }] });
    expect(outcome.violations).toEqual([
      {
        invariant: 'exactly-once',
        message: 'effect a exists 2 times (asked for by 2 deliveries)',
        operations: [0, 4],
      },
      {
        invariant: 'no-lost-write',
        message: 'effect b was acknowledged (operation 1) but is not in the final state',
        operations: [1],
      },
      {
        invariant: 'saga-terminal',
        message: "saga a is still 'running' 1000 ms after the faults were healed",
        operations: [0, 4],
      },
      { invariant: 'no-negative', message: 'neg is -1', operations: [] },
    ]);
  });
});
